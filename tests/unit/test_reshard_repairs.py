# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""plan_repairs after failovers: a migration whose source or target was taken over by its replica is finished or
cancelled with the node that stands for it now, never refused for a peer that is merely no longer a master."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import pytest

from ansible_collections.hashslot.redis.plugins.module_utils.cluster import ClusterError, NodeState
from ansible_collections.hashslot.redis.plugins.module_utils.cluster_reshard import ClusterSnapshot, plan_repairs
from ansible_collections.hashslot.redis.plugins.module_utils.reshard_plan import SlotMove
from ansible_collections.hashslot.redis.plugins.module_utils.topology import ClusterView

SLOT = 100
IDS = {name: name * 40 for name in 'STRUVW'}


@dataclass
class Node:
    name: str
    port: int
    slots: str = ''
    epoch: int = 0
    master: Optional[str] = None
    flags: str = ''
    marks: str = ''
    keys: Dict[int, int] = field(default_factory=dict)
    reachable: bool = True

    @property
    def id(self) -> str:
        return IDS[self.name]


class FakeClient:
    def __init__(self, node: Node):
        self.node = node
        self.address = f'127.0.0.1:{node.port}'

    def pipeline(self, commands):
        return [self.node.keys.get(command[2], 0) for command in commands]


def line(node: Node, me: bool, slots: Optional[str] = None) -> str:
    role = 'slave' if node.master else 'master'
    flags = ','.join(flag for flag in ('myself' if me else '', role, node.flags) if flag)
    master = IDS[node.master] if node.master else '-'
    parts = [node.id, f'127.0.0.1:{node.port}@{node.port + 10000}', flags, master, '0', '0', str(node.epoch), 'connected']
    owned = node.slots if slots is None else slots
    if owned:
        parts.extend(owned.split())
    if me and node.marks:
        parts.extend(node.marks.format(**IDS).split())
    return ' '.join(parts)


def snapshot_of(nodes: List[Node], stale: Optional[Dict[str, Dict[str, str]]] = None) -> ClusterSnapshot:
    """A snapshot as ClusterSnapshot reads it, without servers: every reachable node's own view. `stale` gives, per
    observer, the slots it still believes another node owns (a node importing a slot ignores its newer owner)."""
    states = {}
    for observer in nodes:
        if not observer.reachable:
            continue
        override = (stale or {}).get(observer.name, {})
        text = '\n'.join(line(node, node is observer, override.get(node.name)) for node in nodes)
        view = ClusterView.parse(f'127.0.0.1:{observer.port}', text)
        states[observer.name] = NodeState(address=view.observer, client=FakeClient(observer), node_id=observer.id, view=view,
                                          cluster_state='ok', keys=sum(observer.keys.values()), version=(7, 0, 15), server_name='redis')
    snapshot = ClusterSnapshot.__new__(ClusterSnapshot)
    snapshot.seed = next(iter(states.values()))
    snapshot.view = snapshot.seed.view
    snapshot.masters = {state.node_id: state for state in states.values() if state.myself.is_master}
    snapshot.owners = ClusterSnapshot._claimed_owners(list(states.values()))
    snapshot.states = states
    return snapshot


def names(moves: List[SlotMove]) -> List[Tuple[str, str, Tuple[int, ...]]]:
    by_id = {node_id: name for name, node_id in IDS.items()}
    return [(by_id[move.source], by_id[move.target], tuple(move.slots)) for move in moves]


def test_source_taken_over_and_back_as_replica_finishes_with_its_successor():
    # S migrated half of slot 100 to T, died; its replica R took slots 0-5460 with epoch 7; S came back as R's replica.
    nodes = [
        Node('R', 7001, '0-5460', 7, keys={SLOT: 20}), Node('S', 7000, '', 1, master='R'),
        Node('T', 7002, '5461-10922', 2, marks='[100-<-{S}]', keys={SLOT: 20}), Node('U', 7003, '10923-16383', 3),
    ]
    # T imports slot 100 and so ignored R's claim of it; it dropped S's slots when S turned replica: it sees no owner.
    forward, stable, reassign = plan_repairs(snapshot_of(nodes, stale={'T': {'R': '0-99 101-5460'}}))
    assert names(forward) == [('R', 'T', (SLOT,))] and stable == []
    # Before it imports again T learns who owns the slot, or it would refuse the keys (CLUSTERDOWN Hash slot not served).
    assert reassign == [(IDS['T'], SLOT, IDS['R'])]


def test_source_taken_over_and_still_down_finishes_with_the_owner_by_epoch():
    # S still down (master, fail, no slots); T imports slot 100 and so still believes S owns it: the epochs say R.
    nodes = [
        Node('R', 7001, '0-5460', 7, keys={SLOT: 20}), Node('S', 7000, '', 1, flags='fail', reachable=False),
        Node('T', 7002, '5461-10922', 2, marks='[100-<-{S}]', keys={SLOT: 20}), Node('U', 7003, '10923-16383', 3),
    ]
    snapshot = snapshot_of(nodes, stale={'T': {'R': '0-99 101-5460', 'S': '100'}})
    assert snapshot.owners[SLOT] == IDS['R']
    assert snapshot.unsettled() is None
    forward, stable, reassign = plan_repairs(snapshot)
    assert names(forward) == [('R', 'T', (SLOT,))] and stable == [] and reassign == [(IDS['T'], SLOT, IDS['R'])]


def test_successor_carrying_the_migrating_mark_matches_an_importer_naming_the_old_source():
    # Valkey 8 replicates MIGRATING to replicas: the promoted R migrates slot 100 to T, which imports it from S.
    nodes = [
        Node('R', 7001, '0-5460', 7, marks='[100->-{T}]', keys={SLOT: 5}), Node('S', 7000, '', 1, master='R'),
        Node('T', 7002, '5461-10922', 2, marks='[100-<-{S}]'), Node('U', 7003, '10923-16383', 3),
    ]
    forward, stable, reassign = plan_repairs(snapshot_of(nodes))
    assert names(forward) == [('R', 'T', (SLOT,))] and stable == []


@pytest.mark.parametrize('back', [True, False])
def test_target_taken_over_finishes_with_the_master_holding_its_keys(back):
    # S migrated half of slot 100 to T, which died; T's replica V took T's slots and holds the keys T had received.
    target = Node('T', 7002, '', 2, master='V') if back else Node('T', 7002, '', 2, flags='fail', reachable=False)
    nodes = [
        Node('S', 7000, '0-5460', 1, marks='[100->-{T}]', keys={SLOT: 20}), target,
        Node('V', 7004, '5461-10922', 8, keys={SLOT: 20}), Node('U', 7003, '10923-16383', 3),
    ]
    forward, stable, reassign = plan_repairs(snapshot_of(nodes))
    assert names(forward) == [('S', 'V', (SLOT,))] and stable == [] and reassign == []


def test_failed_target_with_no_keys_anywhere_else_is_cancelled_on_the_source():
    nodes = [
        Node('S', 7000, '0-5460', 1, marks='[100->-{T}]', keys={SLOT: 40}), Node('T', 7002, '', 2, flags='fail', reachable=False),
        Node('V', 7004, '5461-10922', 8), Node('U', 7003, '10923-16383', 3),
    ]
    forward, stable, reassign = plan_repairs(snapshot_of(nodes))
    assert forward == [] and stable == [(IDS['S'], SLOT)]


def test_failed_target_whose_keys_are_on_two_masters_is_refused():
    nodes = [
        Node('S', 7000, '0-5460', 1, marks='[100->-{T}]', keys={SLOT: 20}), Node('T', 7002, '', 2, flags='fail', reachable=False),
        Node('V', 7004, '5461-10922', 8, keys={SLOT: 10}), Node('U', 7003, '10923-16383', 3, keys={SLOT: 10}),
    ]
    with pytest.raises(ClusterError, match='slot 100: .* several masters'):
        plan_repairs(snapshot_of(nodes))


def test_contradicting_marks_between_live_masters_are_refused_naming_the_fix():
    nodes = [
        Node('S', 7000, '0-5460', 1, marks='[100->-{T}]', keys={SLOT: 20}), Node('T', 7002, '5461-10922', 2),
        Node('U', 7003, '10923-16383', 3, marks='[100-<-{S}]'),
    ]
    with pytest.raises(ClusterError, match='refusing to guess. Close one side with CLUSTER SETSLOT'):
        plan_repairs(snapshot_of(nodes))


def test_importer_whose_source_vanished_and_which_owns_the_slot_is_refused():
    nodes = [
        Node('S', 7000, '', 1, flags='fail', reachable=False), Node('T', 7002, '0-16383', 2, marks='[100-<-{S}]', keys={SLOT: 3}),
    ]
    with pytest.raises(ClusterError, match='imports it from .* taken over by none'):
        plan_repairs(snapshot_of(nodes))


def test_a_master_still_claiming_a_slot_lost_to_a_higher_epoch_is_unsettled():
    # A drain stopped between the target's SETSLOT NODE (epoch bumped to 9) and the source's: S still claims 5460.
    nodes = [Node('S', 7000, '5460', 1), Node('T', 7002, '0-16383', 9)]
    views = {'S': {'T': '0-5459 5461-16383'}, 'T': {'S': ''}}
    snapshot = snapshot_of(nodes, stale=views)
    assert snapshot.unsettled() == '127.0.0.1:7000 still claims slot 5460, which 127.0.0.1:7002 owns with a higher config epoch'
    # The same claim by a node importing the slot is ignored by that node for good: an open slot, not unsettled.
    nodes[0].marks = '[5460-<-{T}]'
    assert snapshot_of(nodes, stale=views).unsettled() is None


def test_target_that_froze_and_claimed_the_slot_back_is_finished_and_its_replica_keys_are_orphans():
    # S migrated slot 100 to T, which froze with the SETSLOT NODE unread; T's replica V took T's slots (epoch 8) with the
    # keys T had received; let go, T ran the SETSLOT NODE and owns slot 100 with a new epoch (9). S still migrates it.
    nodes = [
        Node('S', 7000, '0-99 101-5460', 1, marks='[100->-{T}]'), Node('T', 7002, '100', 9, keys={SLOT: 2}),
        Node('V', 7004, '5461-10922', 8, keys={SLOT: 2}), Node('U', 7003, '10923-16383', 3),
    ]
    snapshot = snapshot_of(nodes)
    forward, stable, reassign = plan_repairs(snapshot)
    assert names(forward) == [('S', 'T', (SLOT,))] and stable == [] and reassign == []
    assert snapshot.orphans(snapshot.owners) == [(IDS['V'], SLOT, 2)]


def test_target_back_as_a_master_without_the_keys_is_cancelled_and_its_replica_keys_are_orphans():
    # The same, but T claimed other slots back, not slot 100, and holds none of its keys: S keeps the slot.
    nodes = [
        Node('S', 7000, '0-5460', 1, marks='[100->-{T}]', keys={SLOT: 18}), Node('T', 7002, '101', 9),
        Node('V', 7004, '5461-10922', 8, keys={SLOT: 2}), Node('U', 7003, '10923-16383', 3),
    ]
    snapshot = snapshot_of(nodes, stale={'S': {'S': '0-100 102-5460'}})
    forward, stable, reassign = plan_repairs(snapshot)
    assert forward == [] and stable == [(IDS['S'], SLOT)]
    assert snapshot.orphans(snapshot.owners) == [(IDS['V'], SLOT, 2)]


def test_keys_outside_a_migration_the_target_is_still_importing_are_refused():
    nodes = [
        Node('S', 7000, '0-5460', 1, marks='[100->-{T}]', keys={SLOT: 18}), Node('T', 7002, '5461-10922', 2, marks='[100-<-{S}]', keys={SLOT: 1}),
        Node('V', 7004, '10923-16383', 3, keys={SLOT: 2}),
    ]
    with pytest.raises(ClusterError, match='keys also on 127.0.0.1:7004'):
        plan_repairs(snapshot_of(nodes))
