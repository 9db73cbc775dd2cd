# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""validate_specs and plan_create on node states built from CLUSTER NODES text, no server involved."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Dict, List, Optional, Sequence

import pytest

from ansible_collections.hashslot.redis.plugins.module_utils.cluster import ClusterError, NodeState
from ansible_collections.hashslot.redis.plugins.module_utils.cluster_create import plan_create, validate_specs
from ansible_collections.hashslot.redis.plugins.module_utils.placement import NodeSpec
from ansible_collections.hashslot.redis.plugins.module_utils.topology import (
    SLOT_COUNT, ClusterView, SlotRange, format_ranges, parse_slot_ranges, ranges_to_slots, split_slots_evenly,
)

SIX_NODES_THREE_ZONES = [NodeSpec(f'10.0.0.{index}', 7000, 'abc'[(index - 1) % 3]) for index in range(1, 7)]


def node_id_of(address: str) -> str:
    """A stable 40-hex id per address, as Redis ids look."""
    return hashlib.sha1(address.encode()).hexdigest()


def node_state(spec: NodeSpec, known: Sequence[NodeSpec] = (), replica_of: Optional[Dict[str, str]] = None,
               slots: Optional[Dict[str, List[SlotRange]]] = None, epochs: Optional[Dict[str, int]] = None,
               handshaking: Sequence[NodeSpec] = ()) -> NodeState:
    """What `spec` would answer: its own line, one line a known peer, and MEETs still in handshake.

    replica_of: replica address -> master address; slots and epochs by address (default none, 0).
    """
    replica_of = replica_of or {}
    slots = slots or {}
    epochs = epochs or {}
    lines = []
    for peer in [spec, *known]:
        is_myself = peer == spec
        master = replica_of.get(peer.address)
        flags = ('myself,' if is_myself else '') + ('slave' if master else 'master')
        # A node that has met nobody does not know its own IP yet and prints ':port@cport'.
        host = '' if is_myself and not known else peer.host
        pong = 0 if is_myself else 1795318377000
        fields = [node_id_of(peer.address), f'{host}:{peer.port}@{peer.port + 10000}', flags, node_id_of(master) if master else '-',
                  '0', str(pong), str(epochs.get(peer.address, 0)), 'connected', *format_ranges(slots.get(peer.address, []))]
        lines.append(' '.join(fields))
    for peer in handshaking:
        # Until the handshake completes the peer is listed under a random id of its own.
        lines.append(f'{node_id_of("handshake " + peer.address)} {peer.host}:{peer.port}@{peer.port + 10000} handshake - 0 0 0 disconnected')
    view = ClusterView.parse(spec.address, '\n'.join(lines) + '\n')
    return NodeState(address=spec.address, client=None, node_id=view.myself.id, view=view, cluster_state='fail', keys=0,
                     version=(7, 0, 15), server_name='redis')


def fresh_states(specs: Sequence[NodeSpec]) -> Dict[str, NodeState]:
    return {spec.address: node_state(spec) for spec in specs}


def formed_states(specs: Sequence[NodeSpec], replica_of: Dict[str, str], slots: Dict[str, List[SlotRange]]) -> Dict[str, NodeState]:
    epochs = {spec.address: index for index, spec in enumerate(specs, 1)}
    return {spec.address: node_state(spec, [peer for peer in specs if peer != spec], replica_of, slots, epochs) for spec in specs}


def actions_of_kind(actions: List[Dict], kind: str) -> List[Dict]:
    return [action for action in actions if action['action'] == kind]


def slots_after(states: Dict[str, NodeState], actions: List[Dict]) -> Dict[str, List[int]]:
    """Who owns which slot once the planned ADDSLOTS ran, by address."""
    owned = {address: ranges_to_slots(state.myself.slots) for address, state in states.items()}
    for action in actions_of_kind(actions, 'addslots'):
        owned[action['node']] += ranges_to_slots(parse_slot_ranges(action['slots']))
    return owned


def assert_every_slot_has_one_owner(owned: Dict[str, List[int]]) -> None:
    counts = Counter(slot for slots in owned.values() for slot in slots)
    assert set(counts) == set(range(SLOT_COUNT))
    assert set(counts.values()) == {1}


# ---------------------------------------------------------------------------------------------
# validate_specs

def test_validate_accepts_enough_distinct_nodes():
    validate_specs(SIX_NODES_THREE_ZONES, 1)
    validate_specs(SIX_NODES_THREE_ZONES[:3], 0)


def test_validate_names_a_node_listed_twice_and_where():
    specs = SIX_NODES_THREE_ZONES[:3] + [NodeSpec('10.0.0.1', 7000, 'c')] + SIX_NODES_THREE_ZONES[3:]
    with pytest.raises(ClusterError) as raised:
        validate_specs(specs, 1)
    assert str(raised.value) == '10.0.0.1:7000: listed twice in nodes (items 1 and 4); list every node once'
    assert raised.value.changed is False


def test_validate_names_an_ipv6_node_listed_twice():
    specs = [NodeSpec('::1', 7000), NodeSpec('::1', 7001), NodeSpec('::1', 7002), NodeSpec('::1', 7001)]
    with pytest.raises(ClusterError, match=r'^\[::1\]:7001: listed twice in nodes \(items 2 and 4\)'):
        validate_specs(specs, 0)


def test_validate_same_port_on_other_hosts_is_not_a_duplicate():
    validate_specs([NodeSpec(f'10.0.0.{index}', 7000) for index in range(1, 4)], 0)


def test_validate_too_few_nodes_says_how_many_are_needed():
    with pytest.raises(ClusterError) as raised:
        validate_specs(SIX_NODES_THREE_ZONES[:5], 1)
    message = str(raised.value)
    assert 'too few nodes: 5 nodes with replicas=1 make 2 masters' in message
    assert 'at least 3' in message
    assert 'give at least 6 nodes or lower replicas' in message


def test_validate_too_few_nodes_without_replicas():
    with pytest.raises(ClusterError, match='2 nodes with replicas=0 make 2 masters.*give at least 3 nodes'):
        validate_specs(SIX_NODES_THREE_ZONES[:2], 0)


def test_validate_refuses_negative_replicas():
    with pytest.raises(ClusterError, match='replicas must be 0 or more, got -1'):
        validate_specs(SIX_NODES_THREE_ZONES, -1)


def test_validate_reports_a_duplicate_before_counting_nodes():
    # Both problems at once: the duplicate is the one the operator must fix first.
    with pytest.raises(ClusterError, match='listed twice'):
        validate_specs([NodeSpec('10.0.0.1', 7000), NodeSpec('10.0.0.1', 7000)], 1)


# ---------------------------------------------------------------------------------------------
# plan_create from fresh nodes

def test_fresh_nodes_get_the_whole_plan():
    specs = SIX_NODES_THREE_ZONES
    states = fresh_states(specs)
    layout, actions = plan_create(specs, 1, states)
    assert len(layout.masters) == 3
    assert layout.warnings == []

    # What check mode shows reads in the order it is applied.
    kinds = [action['action'] for action in actions]
    assert kinds == sorted(kinds, key=['addslots', 'set_config_epoch', 'meet', 'replicate'].index)

    addslots = actions_of_kind(actions, 'addslots')
    assert [action['node'] for action in addslots] == layout.masters
    assert [parse_slot_ranges(action['slots']) for action in addslots] == [[slot_range] for slot_range in split_slots_evenly(3)]
    assert_every_slot_has_one_owner(slots_after(states, actions))

    epochs = actions_of_kind(actions, 'set_config_epoch')
    assert sorted(action['node'] for action in epochs) == sorted(spec.address for spec in specs)
    assert sorted(action['epoch'] for action in epochs) == [1, 2, 3, 4, 5, 6]

    meets = actions_of_kind(actions, 'meet')
    met_pairs = [frozenset((action['node'], action['peer'])) for action in meets]
    assert len(met_pairs) == len(set(met_pairs)) == 15
    assert all(len(pair) == 2 for pair in met_pairs)

    replicates = actions_of_kind(actions, 'replicate')
    assert {action['node']: action['master'] for action in replicates} == layout.replicas
    assert set(layout.replicas) == {spec.address for spec in specs} - set(layout.masters)
    for action in replicates:
        assert action['master_id'] == node_id_of(action['master'])
        assert states[action['master']].node_id == action['master_id']


def test_fresh_nodes_without_replicas_only_get_slots_epochs_and_meets():
    specs = [NodeSpec('10.0.0.1', port) for port in (7000, 7001, 7002)]
    layout, actions = plan_create(specs, 0, fresh_states(specs))
    assert layout.masters == [spec.address for spec in specs]
    assert Counter(action['action'] for action in actions) == Counter(addslots=3, set_config_epoch=3, meet=3)


# ---------------------------------------------------------------------------------------------
# plan_create on clusters that are formed, or half formed by an interrupted run

def reference_layout(specs: Sequence[NodeSpec], replicas: int):
    """The layout a first run on fresh nodes plans; an interrupted run leaves part of it in place."""
    layout, dummy = plan_create(specs, replicas, fresh_states(specs))
    return layout


def test_formed_cluster_needs_no_action():
    specs = SIX_NODES_THREE_ZONES
    planned = reference_layout(specs, 1)
    states = formed_states(specs, planned.replicas, planned.slots)
    layout, actions = plan_create(specs, 1, states)
    assert actions == []
    assert layout.masters == planned.masters
    assert layout.replicas == planned.replicas
    assert layout.warnings == []


def test_formed_cluster_laid_out_by_someone_else_needs_no_action():
    # redis-cli's own choice (slots 0-5460, replicas shifted by one) is kept as it is.
    specs = SIX_NODES_THREE_ZONES
    masters = [spec.address for spec in specs[:3]]
    slots = {masters[0]: [(0, 5460)], masters[1]: [(5461, 10922)], masters[2]: [(10923, 16383)]}
    replica_of = {specs[3].address: masters[1], specs[4].address: masters[2], specs[5].address: masters[0]}
    layout, actions = plan_create(specs, 1, formed_states(specs, replica_of, slots))
    assert actions == []
    assert sorted(layout.masters) == sorted(masters)
    assert layout.replicas == replica_of


def test_half_formed_cluster_gets_only_the_missing_actions():
    specs = SIX_NODES_THREE_ZONES
    planned = reference_layout(specs, 1)
    first_master, second_master, third_master = planned.masters
    by_address = {spec.address: spec for spec in specs}
    # The first run assigned the first master its slots and epoch, then met the second master
    # before it stopped; a replica's MEET to the third master is still in handshake.
    replica = next(iter(planned.replicas))
    states = fresh_states(specs)
    states[first_master] = node_state(by_address[first_master], [by_address[second_master]], slots={first_master: planned.slots[first_master]},
                                      epochs={first_master: 1})
    states[second_master] = node_state(by_address[second_master], [by_address[first_master]], slots={first_master: planned.slots[first_master]},
                                       epochs={first_master: 1})
    states[replica] = node_state(by_address[replica], handshaking=[by_address[third_master]])

    layout, actions = plan_create(specs, 1, states)
    assert layout.masters == planned.masters
    assert layout.replicas == planned.replicas

    addslots = actions_of_kind(actions, 'addslots')
    assert {action['node']: parse_slot_ranges(action['slots']) for action in addslots} == {
        second_master: planned.slots[second_master], third_master: planned.slots[third_master]}
    assert_every_slot_has_one_owner(slots_after(states, actions))

    # Only a node that knows nobody else may take SET-CONFIG-EPOCH, and the epochs must not repeat the one in place.
    epochs = actions_of_kind(actions, 'set_config_epoch')
    isolated = {spec.address for spec in specs} - {first_master, second_master}
    assert {action['node'] for action in epochs} == isolated
    assert sorted(action['epoch'] for action in epochs) == [2, 3, 4, 5]

    met_pairs = {frozenset((action['node'], action['peer'])) for action in actions_of_kind(actions, 'meet')}
    assert frozenset((first_master, second_master)) not in met_pairs
    # A handshake that has not completed is no membership: that MEET is sent again.
    assert frozenset((replica, third_master)) in met_pairs
    assert len(met_pairs) == 14

    replicates = actions_of_kind(actions, 'replicate')
    assert {action['node']: action['master'] for action in replicates} == planned.replicas


def test_half_formed_cluster_with_a_replica_attached_keeps_it():
    specs = SIX_NODES_THREE_ZONES
    planned = reference_layout(specs, 1)
    replica, master = sorted(planned.replicas.items())[0]
    by_address = {spec.address: spec for spec in specs}
    states = fresh_states(specs)
    master_slots = {master: planned.slots[master]}
    states[master] = node_state(by_address[master], [by_address[replica]], replica_of={replica: master}, slots=master_slots, epochs={master: 1})
    states[replica] = node_state(by_address[replica], [by_address[master]], replica_of={replica: master}, slots=master_slots, epochs={master: 1})

    layout, actions = plan_create(specs, 1, states)
    assert layout.replicas == planned.replicas
    assert replica not in {action['node'] for action in actions_of_kind(actions, 'replicate')}
    assert len(actions_of_kind(actions, 'replicate')) == 2
    assert master not in {action['node'] for action in actions_of_kind(actions, 'addslots')}
    assert_every_slot_has_one_owner(slots_after(states, actions))


def test_all_slots_assigned_but_replicas_missing():
    specs = SIX_NODES_THREE_ZONES
    planned = reference_layout(specs, 1)
    masters = [spec for spec in specs if spec.address in planned.masters]
    states = fresh_states(specs)
    for spec in masters:
        others = [peer for peer in masters if peer != spec]
        states[spec.address] = node_state(spec, others, slots=planned.slots, epochs={peer.address: index for index, peer in enumerate(masters, 1)})
    layout, actions = plan_create(specs, 1, states)
    assert layout.masters == planned.masters
    assert actions_of_kind(actions, 'addslots') == []
    # Epochs 1-3 are taken by the masters; the fresh replicas continue from there.
    assert sorted(action['epoch'] for action in actions_of_kind(actions, 'set_config_epoch')) == [4, 5, 6]
    assert {action['node']: action['master'] for action in actions_of_kind(actions, 'replicate')} == planned.replicas
    assert len(actions_of_kind(actions, 'meet')) == 15 - 3


def test_all_slots_on_too_few_masters_is_refused():
    specs = SIX_NODES_THREE_ZONES
    owner = specs[0]
    states = fresh_states(specs)
    states[owner.address] = node_state(owner, slots={owner.address: [(0, SLOT_COUNT - 1)]})
    with pytest.raises(ClusterError, match=r'^10\.0\.0\.1:7000: already owns every slot with 1 master\(s\)'):
        plan_create(specs, 1, states)


def test_half_formed_cluster_resumed_with_the_nodes_listed_in_another_order():
    # The inventory order is not stable (groups, dict order): the second run may list the nodes
    # differently. The master that already owns its share must keep exactly that share.
    specs = SIX_NODES_THREE_ZONES
    planned = reference_layout(specs, 1)
    first_master = planned.masters[0]
    by_address = {spec.address: spec for spec in specs}
    states = fresh_states(specs)
    states[first_master] = node_state(by_address[first_master], slots={first_master: planned.slots[first_master]}, epochs={first_master: 1})

    layout, actions = plan_create(list(reversed(specs)), 1, states)
    owned = slots_after(states, actions)
    assert_every_slot_has_one_owner(owned)
    shares = sorted(len(owned[master]) for master in layout.masters)
    assert shares[-1] - shares[0] <= 1, {master: format_ranges(parse_slot_ranges(map(str, owned[master]))) for master in layout.masters}
