# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""redis_cluster_reshard's engine: finish open slots first, then rebalance, move, drain or fix."""

from __future__ import annotations

import time
from typing import Dict, List, Optional, Sequence, Tuple

from ansible_collections.hashslot.redis.plugins.module_utils.cluster import (
    ClusterError, NodeState, discover, layout_of_view, wait_for_agreement,
)
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import NodeError, NodePool, resolve_ip
from ansible_collections.hashslot.redis.plugins.module_utils.reshard_plan import (
    SlotMove, describe_moves, merge_moves, plan_drain, plan_move, plan_rebalance,
)
from ansible_collections.hashslot.redis.plugins.module_utils.slot_migration import MigrationSettings, NodeEndpoint, run_moves
from ansible_collections.hashslot.redis.plugins.module_utils.topology import (
    ClusterNode, ClusterView, format_ranges, parse_slot_ranges, ranges_to_slots, render_layout, slots_to_ranges,
)

ACTIONS = ('rebalance', 'move', 'drain', 'fix')


class ClusterSnapshot:
    """Every master's own view, read before planning; an unreachable master stops the run."""

    def __init__(self, pool: NodePool, host: str, port: int):
        self.seed, states, unreachable = discover(pool, host, port)
        self.view: ClusterView = self.seed.view
        self.masters: Dict[str, NodeState] = {}
        for state in [self.seed] + list(states.values()):
            if state.myself.is_master and state.node_id not in self.masters:
                self.masters[state.node_id] = state
        down = [node.address for node in self.view.masters() if node.id not in self.masters and (node.slots or not node.failed)]
        if down:
            details = '; '.join(f'{address}: {unreachable.get(address, "not readable")}' for address in down)
            raise ClusterError(f'cannot reshard while a master is unreachable, nothing was changed ({details}); '
                               'fail over or remove it first')
        self.states = states

    def endpoint(self, node_id: str) -> NodeEndpoint:
        node = self.view.nodes[node_id]
        return NodeEndpoint(node_id, node.host, node.port)

    def endpoints(self) -> Dict[str, NodeEndpoint]:
        return {node_id: self.endpoint(node_id) for node_id in self.masters}

    def name(self, node_id: str) -> str:
        node = self.view.nodes.get(node_id)
        return node.address if node else node_id

    def find(self, host: str, port: int) -> ClusterNode:
        try:
            ip = resolve_ip(host)
        except NodeError:
            ip = host
        for node in self.view.members():
            if node.port == port and node.host in (host, ip):
                return node
        raise ClusterError(f'{host}:{port}: is not a member of the cluster that {self.seed.address} belongs to')

    def resolve(self, key: str) -> str:
        """A weights key ('host:port' or node id) -> node id."""
        if key in self.view.nodes:
            return key
        host, sep, port = key.rpartition(':')
        if sep and port.isdigit():
            return self.find(host.strip('[]'), int(port)).id
        raise ClusterError(f'weights: {key!r} is neither a node id nor host:port of a member')

    def key_counts(self, node_id: str, slots: Sequence[int]) -> List[int]:
        replies = self.masters[node_id].client.pipeline([('CLUSTER', 'COUNTKEYSINSLOT', slot) for slot in slots])
        return [reply if isinstance(reply, int) else 0 for reply in replies]


def plan_repairs(snapshot: ClusterSnapshot) -> Tuple[List[SlotMove], List[Tuple[str, int]]]:
    """Finish or cancel every open slot, deterministically; refuse what would need a guess.

    Forward (complete the move) when the target holds keys of the slot, already owns it, or both
    sides are marked; cancel (SETSLOT STABLE) when only one side is marked and the target has none.
    """
    migrating: Dict[int, Dict[str, str]] = {}
    importing: Dict[int, Dict[str, str]] = {}
    for node_id, state in snapshot.masters.items():
        for slot, peer in state.myself.migrating.items():
            migrating.setdefault(slot, {})[node_id] = peer
        for slot, peer in state.myself.importing.items():
            importing.setdefault(slot, {})[node_id] = peer
    forward: List[SlotMove] = []
    stable: List[Tuple[str, int]] = []
    for slot in sorted(set(migrating) | set(importing)):
        mig = migrating.get(slot, {})
        imp = importing.get(slot, {})
        if len(mig) > 1 or len(imp) > 1:
            raise ClusterError(f'slot {slot}: open on several nodes ({", ".join(snapshot.name(node) for node in list(mig) + list(imp))}); '
                               'this needs an operator: close all but one migration with CLUSTER SETSLOT STABLE')
        if mig:
            source, target = next(iter(mig.items()))
            if imp and next(iter(imp.items())) != (target, source):
                raise ClusterError(f'slot {slot}: {snapshot.name(source)} migrates it to {snapshot.name(target)} but '
                                   f'{snapshot.name(next(iter(imp)))} imports it from {snapshot.name(next(iter(imp.values())))}; refusing to guess')
        else:
            target, source = next(iter(imp.items()))
        for node_id in (source, target):
            if node_id not in snapshot.masters:
                raise ClusterError(f'slot {slot}: {snapshot.name(node_id)} is open on it but not a reachable master; refusing to guess')
        holders = [node_id for node_id in snapshot.masters if node_id not in (source, target) and snapshot.key_counts(node_id, [slot])[0]]
        if holders:
            raise ClusterError(f'slot {slot}: keys also on {", ".join(snapshot.name(node) for node in holders)}, outside the open migration; refusing to guess')
        target_keys = snapshot.key_counts(target, [slot])[0]
        target_owns = snapshot.masters[target].view.slot_owners()[slot] == target
        if (mig and imp) or target_keys or target_owns:
            forward.append(SlotMove(source, target, (slot,)))
        else:
            stable.append((source if mig else target, slot))
    return merge_moves(forward), stable


def _owned_after(snapshot: ClusterSnapshot, forward: Sequence[SlotMove]) -> Tuple[List[Optional[str]], Dict[str, List[int]]]:
    owners = snapshot.view.slot_owners()
    for move in forward:
        for slot in move.slots:
            owners[slot] = move.target
    owned: Dict[str, List[int]] = {node_id: [] for node_id in snapshot.masters}
    for slot, owner in enumerate(owners):
        if owner in owned:
            owned[owner].append(slot)
    return owners, owned


def _weights(snapshot: ClusterSnapshot, owned: Dict[str, List[int]], weights: Dict[str, float], use_empty_masters: bool) -> Dict[str, float]:
    resolved = {snapshot.resolve(key): float(value) for key, value in (weights or {}).items()}
    for node_id, value in resolved.items():
        if node_id not in snapshot.masters:
            raise ClusterError(f'weights: {snapshot.name(node_id)} is not a master')
        if value < 0:
            raise ClusterError(f'weights: {snapshot.name(node_id)} has a negative weight {value}')
    participants = {}
    for node_id in snapshot.masters:
        if owned.get(node_id) or use_empty_masters or node_id in resolved:
            participants[node_id] = resolved.get(node_id, 1.0)
    return participants


def plan_fix_coverage(snapshot: ClusterSnapshot, owners: List[Optional[str]]) -> List[Tuple[str, List[int]]]:
    """Owners for uncovered slots: the only master holding keys for it, else the owner of the nearest lower slot."""
    uncovered = [slot for slot, owner in enumerate(owners) if owner is None]
    if not uncovered:
        return []
    counts = {node_id: dict(zip(uncovered, snapshot.key_counts(node_id, uncovered))) for node_id in snapshot.masters}
    assignment: Dict[str, List[int]] = {}
    covered = [slot for slot, owner in enumerate(owners) if owner is not None]
    for slot in uncovered:
        holders = sorted(node_id for node_id in counts if counts[node_id][slot])
        if len(holders) > 1:
            raise ClusterError(f'slot {slot}: uncovered and keys on several masters ({", ".join(snapshot.name(node) for node in holders)}); refusing to guess')
        if holders:
            owner = holders[0]
        elif covered:
            lower = [candidate for candidate in covered if candidate < slot]
            owner = owners[lower[-1] if lower else covered[-1]]
        else:
            owner = min(snapshot.masters)
        assignment.setdefault(owner, []).append(slot)
    return sorted(assignment.items())


def reshard(pool: NodePool, host: str, port: int, action: str, settings: MigrationSettings, weights: Optional[Dict[str, float]] = None,
            threshold: float = 2.0, use_empty_masters: bool = True, slots: Optional[List[str]] = None, target: Optional[Dict] = None,
            source: Optional[Dict] = None, wait_timeout: float = 60.0, check_mode: bool = False) -> Dict:
    if action not in ACTIONS:
        raise ClusterError(f'action must be one of {", ".join(ACTIONS)}, got {action}')
    started = time.monotonic()
    snapshot = ClusterSnapshot(pool, host, port)
    forward, stable = plan_repairs(snapshot)
    owners, owned = _owned_after(snapshot, forward)
    assign: List[Tuple[str, List[int]]] = []
    moves: List[SlotMove] = []
    if action == 'fix':
        assign = plan_fix_coverage(snapshot, owners)
    else:
        uncovered = [slot for slot, owner in enumerate(owners) if owner is None]
        if uncovered:
            raise ClusterError(f'{len(uncovered)} slot(s) have no owner ({", ".join(format_ranges(slots_to_ranges(uncovered))[:5])}); run action=fix first')
        if action == 'rebalance':
            moves = plan_rebalance(owned, _weights(snapshot, owned, weights, use_empty_masters), threshold) or []
        elif action == 'move':
            if not slots or not target:
                raise ClusterError('action=move needs slots and target')
            wanted = ranges_to_slots(parse_slot_ranges(slots))
            target_node = snapshot.find(target['host'], target['port'])
            if target_node.id not in snapshot.masters:
                raise ClusterError(f'{target_node.address}: is not a master; slots can only move to a master')
            moves = plan_move(owners, wanted, target_node.id)
        elif action == 'drain':
            if not source:
                raise ClusterError('action=drain needs source')
            source_node = snapshot.find(source['host'], source['port'])
            if source_node.id not in snapshot.masters:
                raise ClusterError(f'{source_node.address}: is not a master; only a master owns slots to drain')
            participants = _weights(snapshot, owned, weights, use_empty_masters)
            participants[source_node.id] = 0.0
            moves = plan_drain(owned, source_node.id, participants) if owned.get(source_node.id) else []

    names = {node_id: snapshot.name(node_id) for node_id in snapshot.view.nodes}
    actions: List[Dict] = [dict(action='stable', node=names[node_id], slot=slot) for node_id, slot in stable]
    actions += [dict(action='finish_migration', **entry) for entry in describe_moves(forward, names)]
    actions += [dict(action='assign', node=names[node_id], slots=format_ranges(slots_to_ranges(assigned)), slot_count=len(assigned))
                for node_id, assigned in assign]
    planned_moves = describe_moves(moves, names)
    for entry, move in zip(planned_moves, moves):
        entry['keys'] = sum(snapshot.key_counts(move.source, list(move.slots)))
    actions += [dict(action='move', **entry) for entry in planned_moves]

    before_entries = layout_of_view(snapshot.view)
    after_owners = list(owners)
    for node_id, assigned in assign:
        for slot in assigned:
            after_owners[slot] = node_id
    for move in moves:
        for slot in move.slots:
            after_owners[slot] = move.target
    after_entries = [dict(entry, slots=slots_to_ranges([slot for slot, owner in enumerate(after_owners) if owner == node.id]) if node.is_master else [])
                     for entry, node in zip(before_entries, snapshot.view.members())]
    result: Dict = dict(changed=bool(actions), actions=actions, moves=planned_moves,
                        diff=dict(before=render_layout(before_entries), after=render_layout(after_entries)))
    if check_mode or not actions:
        result.update(moved_slots=0, moved_keys=0, duration=round(time.monotonic() - started, 3))
        return result

    endpoints = snapshot.endpoints()
    try:
        for node_id, slot in stable:
            reply = snapshot.masters[node_id].client.pipeline([('CLUSTER', 'SETSLOT', slot, 'STABLE')])[0]
            if isinstance(reply, Exception):
                raise ClusterError(f'{names[node_id]}: CLUSTER SETSLOT {slot} STABLE failed: {reply}', changed=True)
        stats = run_moves(pool.options, forward, endpoints, settings) if forward else None
        for node_id, assigned in assign:
            client = snapshot.masters[node_id].client
            for start, end in slots_to_ranges(assigned):
                client.call('CLUSTER', 'ADDSLOTSRANGE', start, end)
        move_stats = run_moves(pool.options, moves, endpoints, settings) if moves else None
        members = [state.client for state in snapshot.masters.values()]
        final = wait_for_agreement(members, wait_timeout, require_ok=False)
    except NodeError as exc:
        raise ClusterError(f'{exc}; the run stopped part-way: run it again to finish the open slots', changed=True) from exc
    result['moved_slots'] = sum(item.moved_slots for item in (stats, move_stats) if item)
    result['moved_keys'] = sum(item.moved_keys for item in (stats, move_stats) if item)
    result['replaced_keys'] = sum(item.replaced_keys for item in (stats, move_stats) if item)
    view = next(iter(final.values())).view
    result['diff']['after'] = render_layout(layout_of_view(view))
    result['duration'] = round(time.monotonic() - started, 3)
    return result
