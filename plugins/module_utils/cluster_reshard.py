# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""redis_cluster_reshard's engine: finish open slots first, then rebalance, move, drain or fix."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from ansible_collections.hashslot.redis.plugins.module_utils.atomic_migration import (
    AtomicJob, choose_method, in_flight, run_jobs, wait_in_flight,
)
from ansible_collections.hashslot.redis.plugins.module_utils.cluster import (
    ClusterError, NodeState, discover, layout_of_view, wait_for_agreement,
)
from ansible_collections.hashslot.redis.plugins.module_utils.cluster_health import keys_outside
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import NodeError, NodePool, resolve_ip
from ansible_collections.hashslot.redis.plugins.module_utils.reshard_plan import (
    SlotMove, describe_moves, merge_moves, plan_drain, plan_move, plan_rebalance,
)
from ansible_collections.hashslot.redis.plugins.module_utils.slot_migration import MigrationSettings, NodeEndpoint, run_moves
from ansible_collections.hashslot.redis.plugins.module_utils.topology import (
    SLOT_COUNT, ClusterNode, ClusterView, format_ranges, parse_slot_ranges, ranges_to_slots, render_layout, slots_to_ranges,
)

ACTIONS = ('rebalance', 'move', 'drain', 'fix')


def _highest_epoch_claims(claims: Iterable[Tuple[int, str, Sequence[Tuple[int, int]]]]) -> List[Tuple[int, Optional[str]]]:
    """For each slot, (config epoch, node id) of the claim with the highest epoch among (epoch, node id, slot ranges);
    (-1, None) where nothing claims it."""
    best: List[Tuple[int, Optional[str]]] = [(-1, None)] * SLOT_COUNT
    for epoch, node_id, ranges in claims:
        for start, end in ranges:
            for slot in range(start, end + 1):
                if epoch > best[slot][0]:
                    best[slot] = (epoch, node_id)
    return best


class ClusterSnapshot:
    """Every master's own view, read before planning; an unreachable master stops the run."""

    def __init__(self, pool: NodePool, host: str, port: int):
        self.seed, states, unreachable = discover(pool, host, port)
        self.view: ClusterView = self.seed.view
        self.masters: Dict[str, NodeState] = {}
        for state in [self.seed] + list(states.values()):
            if state.myself.is_master and state.node_id not in self.masters:
                self.masters[state.node_id] = state
        self.owners = self._claimed_owners([self.seed] + list(self.masters.values()))
        owning = set(self.owners)
        # A node that answered and calls itself a replica is no master, whatever the seed's view still says.
        answered = {state.node_id for state in [self.seed] + list(states.values())}
        down = [node for node in self.view.masters()
                if node.id not in self.masters and node.id not in answered and (node.id in owning or not node.failed)]
        if down:
            details = '; '.join(f'{node.address}: {unreachable.get(node.address, "not readable")}' for node in down)
            # A master with slots and a replica may be taken over within the node timeout: that is worth waiting for.
            raise ClusterError(f'cannot reshard while a master is unreachable, nothing was changed ({details}); '
                               'fail over or remove it first',
                               waitable=all(node.id in owning and self.view.replicas_of(node.id) for node in down))
        self.states = states

    @staticmethod
    def _claimed_owners(states: Sequence[NodeState]) -> List[Optional[str]]:
        """Each slot's owner as the cluster decides it: of the owners the nodes' views name, the one with the highest
        config epoch. A node importing a slot ignores a newer owner of it, so one view alone may be out of date."""
        claims = ((node.config_epoch, node.id, node.slots) for state in states for node in state.view.nodes.values())
        return [owner for dummy, owner in _highest_epoch_claims(claims)]

    def unsettled(self) -> Optional[str]:
        """Why the masters' own claims still contradict each other, or None.

        Each master announces its slots with its config epoch and the highest epoch wins. A master that still claims a
        slot another master took with a higher epoch (a run stopped between the target's SETSLOT NODE and the
        source's; a failover) is about to learn it has lost it, and a master that lost its last slot turns into a
        replica of the node that took it. A plan made before that would send SETSLOT to a node that is no longer a
        master. Not settling: a claim the loser ignores because it imports the slot (an open slot, repaired later).
        """
        for owner in set(self.owners):
            if owner is not None and owner not in self.masters:
                return f'{self.name(owner)} owns slots in the cluster\'s view but does not call itself a master'
        best = _highest_epoch_claims((state.myself.config_epoch, node_id, state.myself.slots) for node_id, state in self.masters.items())
        for node_id, state in self.masters.items():
            for slot in ranges_to_slots(state.myself.slots):
                winner = best[slot][1]
                if winner != node_id and slot not in state.myself.importing:
                    return (f'{self.name(node_id)} still claims slot {slot}, which {self.name(winner)} owns with a higher '
                            'config epoch')
        return None

    def successor(self, node_id: str) -> Optional[str]:
        """The reachable master that stands for `node_id` now: itself, or the master it replicates since a failover."""
        if node_id in self.masters:
            return node_id
        node = self.view.nodes.get(node_id)
        if node is not None and node.is_replica and node.master_id in self.masters:
            return node.master_id
        return None

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

    def orphans(self, owners: Sequence[Optional[str]]) -> List[Tuple[str, int, int]]:
        """(node, slot, keys) for each slot in which a master holds keys while another master owns it, outside any
        migration open on that master (see remove_orphans). Slots without an owner are fix's coverage repair."""
        # Each master on its own connection, at the same time: the count waits mostly on the servers.
        with ThreadPoolExecutor(max_workers=max(1, len(self.masters))) as executor:
            held = dict(zip(self.masters, executor.map(lambda state: keys_outside(state, list(owners)), self.masters.values())))
        return [(node_id, slot, count) for node_id in self.masters for slot, count in sorted(held[node_id].items())]


def settled_snapshot(pool: NodePool, host: str, port: int, timeout: float) -> ClusterSnapshot:
    """A snapshot once the cluster has settled: a master being taken over by its replica, or claims of slots that
    gossip is about to resolve, are waited out for up to `timeout` seconds, then refused naming what did not settle."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            snapshot = ClusterSnapshot(pool, host, port)
            reason = snapshot.unsettled()
        except ClusterError as exc:
            if not exc.waitable or time.monotonic() >= deadline:
                raise
            reason = None
            snapshot = None
        if snapshot is not None and reason is None:
            return snapshot
        if time.monotonic() >= deadline:
            raise ClusterError(f'the cluster did not settle within {timeout:g}s, nothing was changed: {reason}')
        # Connections to nodes that died or changed role are opened again on the next read.
        pool.close()
        time.sleep(0.25)


class RepairPlan(NamedTuple):
    forward: List[SlotMove]
    stable: List[Tuple[str, int]]
    # (target, slot, source): the target learns the slot's owner before it imports again. A node importing a slot
    # ignores newer owners of it, and forgets the owner that turned into a replica: it would refuse the keys
    # (CLUSTERDOWN Hash slot not served).
    reassign: List[Tuple[str, int, str]]


def plan_repairs(snapshot: ClusterSnapshot) -> RepairPlan:
    """Finish or cancel every open slot, deterministically; refuse what would need a guess.

    A mark names its peer by node id; a peer that is no longer a master was taken over by its replica, and its
    successor stands in for it: the master it now replicates, else, for a source, the slot's owner by the cluster's
    epochs, else, for a target, the only other master holding keys of the slot (the keys its replica received).
    Forward (complete the move) when the target holds keys of the slot, already owns it, or both sides are marked;
    cancel (SETSLOT STABLE on every marked node) when the target has none. A target that failed with no successor
    holding keys is cancelled too: the source still holds every key.
    """
    migrating: Dict[int, Dict[str, str]] = {}
    importing: Dict[int, Dict[str, str]] = {}
    for node_id, state in snapshot.masters.items():
        for slot, peer in state.myself.migrating.items():
            migrating.setdefault(slot, {})[node_id] = peer
        for slot, peer in state.myself.importing.items():
            importing.setdefault(slot, {})[node_id] = peer
    owners = snapshot.owners
    forward: List[SlotMove] = []
    stable: List[Tuple[str, int]] = []
    reassign: List[Tuple[str, int, str]] = []
    for slot in sorted(set(migrating) | set(importing)):
        mig = migrating.get(slot, {})
        imp = importing.get(slot, {})
        if len(mig) > 1 or len(imp) > 1:
            raise ClusterError(f'slot {slot}: open on several nodes ({", ".join(snapshot.name(node) for node in list(mig) + list(imp))}); '
                               'this needs an operator: close all but one migration with CLUSTER SETSLOT STABLE')
        marked = list(mig) + [node_id for node_id in imp if node_id not in mig]
        source, target = _open_pair(snapshot, slot, mig, imp, owners[slot])
        if target is None:
            # The target failed and nothing stands for it with keys of the slot: every key is still on the source.
            stable.extend((node_id, slot) for node_id in marked)
            continue
        holders = [node_id for node_id in snapshot.masters if node_id not in (source, target) and snapshot.key_counts(node_id, [slot])[0]]
        target_keys = snapshot.key_counts(target, [slot])[0]
        target_sees = snapshot.masters[target].view.slot_owners()[slot]
        # Keys on a master outside the migration: a target that froze, whose replica took over with the keys it had
        # received, and which, let go, claimed the batch's slots back with the SETSLOT NODE left in its socket. The
        # replica's keys are orphans, repaired against the slot's owner once the slot is closed: finished when the
        # target owns it, cancelled when the target neither holds nor imports any key of it.
        target_owns = target_sees == target or owners[slot] == target
        if holders and not target_owns and (imp or target_keys):
            raise ClusterError(f'slot {slot}: keys also on {", ".join(snapshot.name(node) for node in holders)}, outside the open migration; refusing to guess')
        if holders and not target_owns:
            stable.extend((node_id, slot) for node_id in marked)
            continue
        if (mig and imp) or target_keys or target_owns:
            forward.append(SlotMove(source, target, (slot,)))
            if target_sees not in (source, target):
                reassign.append((target, slot, source))
        else:
            stable.extend((node_id, slot) for node_id in marked)
    return RepairPlan(merge_moves(forward), stable, reassign)


def _open_pair(snapshot: ClusterSnapshot, slot: int, mig: Dict[str, str], imp: Dict[str, str],
               owner: Optional[str]) -> Tuple[str, Optional[str]]:
    """(source, target) of one open slot, each a reachable master; target None: cancel. Refuses contradictions."""
    mig_node, mig_peer = next(iter(mig.items()), (None, None))
    imp_node, imp_peer = next(iter(imp.items()), (None, None))
    source = mig_node
    if source is None:
        source = snapshot.successor(imp_peer)
        if source is None and owner in snapshot.masters and owner != imp_node:
            source = owner
    target = imp_node if imp_node is not None else snapshot.successor(mig_peer)
    if mig_node is not None and imp_node is not None:
        if snapshot.successor(mig_peer) != imp_node or snapshot.successor(imp_peer) not in (mig_node, None):
            raise ClusterError(f'slot {slot}: {snapshot.name(mig_node)} migrates it to {snapshot.name(mig_peer)} but '
                               f'{snapshot.name(imp_node)} imports it from {snapshot.name(imp_peer)}; refusing to guess. '
                               'Close one side with CLUSTER SETSLOT <slot> STABLE, then run action=fix')
    if source is None:
        raise ClusterError(f'slot {slot}: {snapshot.name(imp_node)} imports it from {snapshot.name(imp_peer)}, which is not a '
                           'reachable master and was taken over by none; bring it back, or close the slot with '
                           f'CLUSTER SETSLOT {slot} STABLE on {snapshot.name(imp_node)} once its keys are where they belong')
    if target is None:
        holders = sorted(node_id for node_id in snapshot.masters if node_id != source and snapshot.key_counts(node_id, [slot])[0])
        if len(holders) > 1:
            raise ClusterError(f'slot {slot}: {snapshot.name(source)} migrates it to {snapshot.name(mig_peer)}, which is not a '
                               f'reachable master, and keys of it are on several masters ({", ".join(snapshot.name(node) for node in holders)}); '
                               'refusing to guess')
        if holders:
            target = holders[0]
        elif mig_peer in snapshot.view.nodes and not snapshot.view.nodes[mig_peer].failed:
            # Not failed, only unreachable from here: it may hold keys of the slot.
            # A frozen target just let go is neither flagged failed nor readable for a moment: worth waiting for.
            raise ClusterError(f'slot {slot}: {snapshot.name(source)} migrates it to {snapshot.name(mig_peer)}, which is not '
                               'reachable; bring it back or fail it over, then run again', waitable=True)
    return source, target


def _owned_after(snapshot: ClusterSnapshot, forward: Sequence[SlotMove]) -> Tuple[List[Optional[str]], Dict[str, List[int]]]:
    owners = list(snapshot.owners)
    for move in forward:
        for slot in move.slots:
            owners[slot] = move.target
    owned: Dict[str, List[int]] = {node_id: [] for node_id in snapshot.masters}
    for slot, owner in enumerate(owners):
        if owner in owned:
            owned[owner].append(slot)
    return owners, owned


def _weights(snapshot: ClusterSnapshot, owned: Dict[str, List[int]], weights: Dict[str, float], use_empty_masters: bool,
             spare: Sequence[str] = ()) -> Dict[str, float]:
    """The masters that take part in a rebalance and their weights; the `spare` nodes (host:port), when they are empty
    masters, take no part (a node about to become a replica)."""
    resolved = {snapshot.resolve(key): float(value) for key, value in (weights or {}).items()}
    for key in spare:
        try:
            node_id = snapshot.resolve(key)
        except ClusterError:
            continue
        if node_id in snapshot.masters and not owned.get(node_id):
            resolved[node_id] = 0.0
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


def remove_orphans(snapshot: ClusterSnapshot, orphans: Sequence[Tuple[str, int, int]], owners: Sequence[Optional[str]]) -> Tuple[int, int]:
    """Clear the keys a master holds in slots another master owns (orphans): (removed, moved).

    A migration whose target froze (SIGSTOP, a hung host) leaves them: the target's replica received the keys and took
    over, and the frozen target, let go, ran the SETSLOT NODE still in its socket and claimed the slot with a new
    epoch; the replica keeps copies nobody reads. A master answers for a slot it does not own only while it imports it,
    so the holder imports the slot for the repair (then STABLE again) and each key is compared with the owner's (DUMP):
    a copy equal to the owner's is deleted, a key the owner lacks is restored on it (with its TTL) and deleted from the
    holder, and a different value stops the repair naming the keys, for an operator to choose.
    """
    removed = moved = 0
    for node_id, slot, dummy in orphans:
        owner_id = owners[slot]
        holder, owner = snapshot.masters[node_id].client, snapshot.masters[owner_id].client
        where = f'slot {slot}: {holder.address} holds keys of it while {owner.address} owns it'
        reply = holder.pipeline([('CLUSTER', 'SETSLOT', slot, 'IMPORTING', owner_id)])[0]
        if isinstance(reply, Exception):
            raise ClusterError(f'{where}; CLUSTER SETSLOT {slot} IMPORTING on it failed: {reply}', changed=bool(removed or moved))
        try:
            while True:
                keys = holder.pipeline([('CLUSTER', 'GETKEYSINSLOT', slot, 100)], decode=False)[0]
                if isinstance(keys, Exception):
                    raise ClusterError(f'{where}; CLUSTER GETKEYSINSLOT failed: {keys}', changed=True)
                if not keys:
                    break
                asked = holder.pipeline([command for key in keys for command in (('ASKING',), ('DUMP', key), ('ASKING',), ('PTTL', key))],
                                        decode=False)
                copies, ttls = asked[1::4], asked[3::4]
                theirs = owner.pipeline([('DUMP', key) for key in keys], decode=False)
                failed = [reply for reply in list(copies) + list(ttls) + list(theirs) if isinstance(reply, Exception)]
                if failed:
                    raise ClusterError(f'{where}; reading its keys failed: {failed[0]}', changed=True)
                conflicts = [key for key, mine, other in zip(keys, copies, theirs) if other is not None and mine is not None and mine != other]
                if conflicts:
                    names = ', '.join(repr(key.decode('utf-8', 'replace')) for key in conflicts[:5])
                    raise ClusterError(f'{where}; {len(conflicts)} of them differ from the owner\'s ({names}): the owner\'s are the ones '
                                       f'clients read; inspect them, then delete the copies on {holder.address} (ASKING after CLUSTER '
                                       f'SETSLOT {slot} IMPORTING {owner_id}) or restore them on the owner, and run fix again',
                                       changed=bool(removed or moved))
                missing = [(key, copy, ttl) for key, copy, ttl, other in zip(keys, copies, ttls, theirs) if other is None and copy is not None]
                if missing:
                    restored = owner.pipeline([('RESTORE', key, max(int(ttl), 0), copy) for key, copy, ttl in missing], decode=False)
                    refused = [reply for reply in restored if isinstance(reply, Exception)]
                    if refused:
                        raise ClusterError(f'{where}; RESTORE on the owner failed: {refused[0]}', changed=True)
                    moved += len(missing)
                deleted = holder.pipeline([('ASKING',), ('DEL', *keys)])[1]
                if isinstance(deleted, Exception):
                    raise ClusterError(f'{where}; DEL of the copies failed: {deleted}', changed=True)
                removed += len(keys) - len(missing)
        finally:
            holder.pipeline([('CLUSTER', 'SETSLOT', slot, 'STABLE')])
    return removed, moved


def reshard(pool: NodePool, host: str, port: int, action: str, settings: MigrationSettings, weights: Optional[Dict[str, float]] = None,
            threshold: float = 2.0, use_empty_masters: bool = True, slots: Optional[List[str]] = None, target: Optional[Dict] = None,
            source: Optional[Dict] = None, wait_timeout: float = 60.0, check_mode: bool = False, method: str = 'auto',
            spare: Sequence[str] = ()) -> Dict:
    if action not in ACTIONS:
        raise ClusterError(f'action must be one of {", ".join(ACTIONS)}, got {action}')
    started = time.monotonic()
    deadline = started + wait_timeout
    # An atomic migration job outlives the run that started it: one still running (a run killed part-way) is waited
    # for before planning, so that the plan starts from the slots' real owners. A job that stops progressing ends it.
    stall_timeout = max(60.0, settings.migrate_timeout / 1000.0)
    waited: List[Dict[str, str]] = []
    while True:
        snapshot = settled_snapshot(pool, host, port, max(deadline - time.monotonic(), 0.0))
        running = in_flight(snapshot.masters)
        if running and not check_mode:
            waited += wait_in_flight(snapshot.masters, stall_timeout)
            deadline = time.monotonic() + wait_timeout
            pool.close()
            continue
        try:
            forward, stable, reassign = plan_repairs(snapshot)
            break
        except ClusterError as exc:
            if not exc.waitable or time.monotonic() >= deadline:
                raise
        pool.close()
        time.sleep(0.25)
    method = choose_method(method, snapshot.masters)
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
            moves = plan_rebalance(owned, _weights(snapshot, owned, weights, use_empty_masters, spare), threshold) or []
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
            if source_node.id in snapshot.masters and owned.get(source_node.id):
                participants = _weights(snapshot, owned, weights, use_empty_masters)
                participants[source_node.id] = 0.0
                moves = plan_drain(owned, source_node.id, participants)
            # Else it owns nothing: already drained. A master that gave its last slot away turns into a replica of the
            # node that took it (cluster-allow-replica-migration), as when a drain stopped part-way is run again.

    orphans = snapshot.orphans(owners)
    names = {node_id: snapshot.name(node_id) for node_id in snapshot.view.nodes}
    actions: List[Dict] = [dict(action='stable', node=names[node_id], slot=slot) for node_id, slot in stable]
    actions += [dict(action='finish_migration', **entry) for entry in describe_moves(forward, names)]
    actions += [dict(action='remove_orphans', node=names[node_id], slot=slot, keys=count, owner=names[owners[slot]])
                for node_id, slot, count in orphans]
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
    jobs = [AtomicJob(move.source, move.target, names[move.source], names[move.target], list(move.slots), entry['keys'])
            for entry, move in zip(planned_moves, moves)] if method == 'atomic' else []
    result: Dict = dict(changed=bool(actions), actions=actions, moves=planned_moves, method=method,
                        diff=dict(before=render_layout(before_entries), after=render_layout(after_entries)))
    if jobs:
        result['jobs'] = [dict(job.report(), state='planned') for job in jobs]
    if running:
        # Check mode only: a real run waits for these first, then plans again from what they left.
        result['in_flight'] = [dict(node=job['node'], name=job['name'], slots=job.get('slot_ranges', ''), state=job.get('state', ''),
                                    target=names.get(job.get('target_node', ''), job.get('target_node', ''))) for job in running]
    if waited:
        result['waited_for'] = [dict(node=job['node'], name=job['name'], slots=job.get('slot_ranges', '')) for job in waited]
    if check_mode or not actions:
        result.update(moved_slots=0, moved_keys=0, duration=round(time.monotonic() - started, 3))
        return result

    endpoints = snapshot.endpoints()
    try:
        for node_id, slot in stable:
            reply = snapshot.masters[node_id].client.pipeline([('CLUSTER', 'SETSLOT', slot, 'STABLE')])[0]
            if isinstance(reply, Exception):
                raise ClusterError(f'{names[node_id]}: CLUSTER SETSLOT {slot} STABLE failed: {reply}', changed=True)
        for node_id, slot, owner in reassign:
            reply = snapshot.masters[node_id].client.pipeline([('CLUSTER', 'SETSLOT', slot, 'NODE', owner)])[0]
            if isinstance(reply, Exception):
                raise ClusterError(f'{names[node_id]}: CLUSTER SETSLOT {slot} NODE {owner} failed: {reply}', changed=True)
        stats = run_moves(pool.options, forward, endpoints, settings) if forward else None
        removed, restored = remove_orphans(snapshot, orphans, owners)
        for node_id, assigned in assign:
            client = snapshot.masters[node_id].client
            for start, end in slots_to_ranges(assigned):
                client.call('CLUSTER', 'ADDSLOTSRANGE', start, end)
        move_stats = None
        if jobs:
            move_stats = run_jobs({node_id: state.client for node_id, state in snapshot.masters.items()}, jobs, stall_timeout)
            result['jobs'] = move_stats.jobs
        elif moves:
            move_stats = run_moves(pool.options, moves, endpoints, settings)
        members = [state.client for state in snapshot.masters.values()]
        final = wait_for_agreement(members, wait_timeout, require_ok=False)
    except NodeError as exc:
        raise ClusterError(f'{exc}; the run stopped part-way: run it again to finish the open slots', changed=True) from exc
    result['moved_slots'] = sum(item.moved_slots for item in (stats, move_stats) if item)
    result['moved_keys'] = sum(item.moved_keys for item in (stats, move_stats) if item)
    result['replaced_keys'] = sum(item.replaced_keys for item in (stats, move_stats) if item)
    if orphans:
        result.update(orphans_removed=removed, orphans_restored=restored)
    view = next(iter(final.values())).view
    result['diff']['after'] = render_layout(layout_of_view(view))
    result['duration'] = round(time.monotonic() - started, 3)
    return result
