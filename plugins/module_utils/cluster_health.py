# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster's health as redis-cli --cluster check sees it, and more: a list of problems."""

from __future__ import annotations

import datetime
import time
from typing import Dict, List, Optional

from ansible_collections.hashslot.redis.plugins.module_utils.cluster import NodeState, describe_cluster, discover
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import NodeError, NodePool
from ansible_collections.hashslot.redis.plugins.module_utils.topology import ClusterNode, ClusterView, format_ranges, slots_to_ranges


# Every kind of problem find_problems reports.
PROBLEM_KINDS = ('node_unreachable', 'node_failed', 'node_pfail', 'link_down', 'open_slot', 'uncovered_slots',
                 'config_disagreement', 'cluster_state', 'master_without_replica', 'replica_same_domain', 'ghost_node',
                 'certificate_expiring', 'certificate_expired', 'orphaned_keys')
# The kinds a member that is down (or cut off) causes: what a failover away from a dead master leaves until the
# master is back or forgotten.
NODE_DOWN_KINDS = ('node_unreachable', 'node_failed', 'node_pfail', 'link_down', 'master_without_replica', 'config_disagreement',
                   'cluster_state')


def failure_domain(node: ClusterNode, zones: Dict[str, str]) -> str:
    zone = zones.get(node.address) or zones.get(node.id)
    return f'zone {zone}' if zone else f'host {node.host}'


def find_problems(seed: NodeState, states: Dict[str, NodeState], unreachable: Dict[str, str], zones: Dict[str, str]) -> List[Dict]:
    view: ClusterView = seed.view
    problems: List[Dict] = []

    def add(kind: str, node: str, detail: str) -> None:
        problems.append(dict(kind=kind, node=node, detail=detail))

    for address, reason in sorted(unreachable.items()):
        add('node_unreachable', address, reason)
    for ghost in ghost_nodes(view):
        problems.append(ghost)
    flagged: Dict[str, Dict[str, List[str]]] = {}
    for observer, state in states.items():
        for node in state.view.members():
            for flag in ('fail', 'fail?'):
                if flag in node.flags:
                    flagged.setdefault(node.address, {}).setdefault(flag, []).append(observer)
            if node.link_state != 'connected' and not node.is_myself:
                flagged.setdefault(node.address, {}).setdefault('disconnected', []).append(observer)
    for address, flags in sorted(flagged.items()):
        if 'fail' in flags:
            add('node_failed', address, f'flagged fail by {len(flags["fail"])} node(s)')
        elif 'fail?' in flags:
            add('node_pfail', address, f'flagged fail? (not answering pings) by {len(flags["fail?"])} node(s)')
        elif 'disconnected' in flags:
            add('link_down', address, f'cluster bus link down as seen from {", ".join(sorted(flags["disconnected"])[:3])}')
    for address, state in sorted(states.items()):
        myself = state.myself
        for slot, peer in sorted(myself.migrating.items()):
            add('open_slot', address, f'slot {slot} is migrating to {_name(view, peer)}')
        for slot, peer in sorted(myself.importing.items()):
            add('open_slot', address, f'slot {slot} is importing from {_name(view, peer)}')
    uncovered = view.uncovered_slots()
    if uncovered:
        add('uncovered_slots', seed.address, f'{len(uncovered)} slot(s) have no owner: {", ".join(format_ranges(slots_to_ranges(uncovered))[:10])}')
    reference = view.fingerprint()
    for address, state in sorted(states.items()):
        if address != seed.address and state.view.fingerprint() != reference:
            add('config_disagreement', address, f'its slot map or replica roles differ from {seed.address}\'s')
        if state.cluster_state != 'ok':
            add('cluster_state', address, f'reports cluster_state:{state.cluster_state}')
    for master in sorted(view.masters(), key=lambda node: node.address):
        if not master.slots or master.failed:
            continue
        replicas = [node for node in view.replicas_of(master.id) if not node.failed]
        if not replicas:
            add('master_without_replica', master.address, f'owns {master.slot_count} slots and has no working replica: losing it loses those slots')
        for replica in replicas:
            if failure_domain(replica, zones) == failure_domain(master, zones):
                add('replica_same_domain', replica.address, f'replica of {master.address} in the same {failure_domain(master, zones)}')
    return problems


def ghost_nodes(view: ClusterView) -> List[Dict]:
    """Nodes the cluster still lists without an address (`noaddr`): a server that came back at the same address with
    another node id (restarted with an empty data directory) left its old id so. Nobody pings such a node, so it is
    never flagged fail: a master among them keeps its slots, which nobody serves, and its replica is never promoted.

    Each is a `ghost_node` problem whose `node` is the id, with `slot_count` and, for a master that still owns slots,
    `replica` (the address of a replica that can take them over), so that the redis_cluster role can act on it.
    """
    ghosts = []
    for node in sorted(view.nodes.values(), key=lambda item: item.id):
        if 'noaddr' not in node.flags or node.is_myself:
            continue
        heirs = sorted(replica.address for replica in view.replicas_of(node.id) if not replica.failed)
        entry = dict(kind='ghost_node', node=node.id, slot_count=node.slot_count, replica=heirs[0] if heirs and node.slots else None)
        if node.slots:
            remedy = (f'promote its replica {heirs[0]} (hashslot.redis.redis_failover mode=takeover), then forget it' if heirs
                      else 'no replica can take them over: restore them from a backup')
            entry['detail'] = (f'{node.role} {node.id} has no address any more (its server came back with another node id: '
                               f'an empty data directory?) and still owns {node.slot_count} slots, which nobody serves; {remedy}')
        else:
            entry['detail'] = (f'{node.role} {node.id} has no address any more (its server came back with another node id, or '
                               f'left); forget it: hashslot.redis.redis_cluster_node state=absent node_id={node.id}')
        ghosts.append(entry)
    return ghosts


def _name(view: ClusterView, node_id: str) -> str:
    node = view.nodes.get(node_id)
    return node.address if node else node_id


# CLUSTER SLOT-STATS (key-count per slot of the node's own shard, in one reply) exists since Valkey 8.0.
SLOT_STATS_SINCE = (8, 0, 0)


def holds_only_own_keys(state: NodeState) -> bool:
    """Whether every key of the master is in a slot its shard owns: DBSIZE equal to the key-counts CLUSTER SLOT-STATS
    gives for those slots, both read in one transaction. One command instead of one COUNTKEYSINSLOT per slot of the
    other masters (about 11,000 of them each). False when it cannot tell (Redis, Valkey before 8, an error)."""
    if state.server_name != 'valkey' or tuple(state.version) < SLOT_STATS_SINCE:
        return False
    replies = state.client.pipeline([('MULTI',), ('DBSIZE',), ('CLUSTER', 'SLOT-STATS', 'SLOTSRANGE', 0, 16383), ('EXEC',)])
    done = replies[-1]
    if not isinstance(done, (list, tuple)) or len(done) != 2 or isinstance(done[0], Exception) or isinstance(done[1], Exception):
        return False
    owned = 0
    for entry in done[1]:
        stats = entry[1]
        fields = stats if isinstance(stats, dict) else dict(zip(stats[0::2], stats[1::2]))
        owned += int(fields.get('key-count', 0))
    return owned == int(done[0])


def keys_outside(state: NodeState, owners: List[Optional[str]]) -> Dict[int, int]:
    """Slot -> keys for each slot in which a master holds keys while another master owns it, outside a migration open
    on it: copies a failover in the middle of a migration left (the target's replica received keys, then the frozen
    target claimed the slot back). Clients never read them. Slots without an owner are not counted."""
    if holds_only_own_keys(state):
        return {}
    open_slots = set(state.myself.importing) | set(state.myself.migrating)
    slots = [slot for slot, owner in enumerate(owners) if owner not in (state.node_id, None) and slot not in open_slots]
    replies = state.client.pipeline([('CLUSTER', 'COUNTKEYSINSLOT', slot) for slot in slots])
    return {slot: reply for slot, reply in zip(slots, replies) if isinstance(reply, int) and reply}


def orphaned_keys(seed: NodeState, states: Dict[str, NodeState]) -> List[Dict]:
    """An `orphaned_keys` problem per master holding keys of slots other masters own (keys_outside)."""
    owners = seed.view.slot_owners()
    problems: List[Dict] = []
    seen = set()
    for state in [seed] + list(states.values()):
        if state.node_id in seen or not state.myself.is_master:
            continue
        seen.add(state.node_id)
        try:
            held = keys_outside(state, owners)
        except NodeError:
            continue
        if held:
            ranges = format_ranges(slots_to_ranges(sorted(held)))
            problems.append(dict(kind='orphaned_keys', node=state.address, keys=sum(held.values()), slots=ranges,
                                 detail=f'{sum(held.values())} key(s) in {len(held)} slot(s) other masters own ({", ".join(ranges[:5])}), '
                                        'left by a migration whose target was failed over; clients never read them: '
                                        'hashslot.redis.redis_cluster_reshard action=fix removes them'))
    return problems


def certificate_problem(address: str, expires: datetime.datetime, now: datetime.datetime, expiry_days: int) -> Optional[Dict]:
    """`certificate_expired`, or `certificate_expiring` when the certificate a node serves ends within `expiry_days`."""
    days_left = (expires - now).total_seconds() / 86400
    if days_left >= expiry_days and days_left > 0:
        return None
    when = expires.strftime('%Y-%m-%d %H:%M UTC')
    renew = ('site.yml renews the certificates it generates within redis_server_tls_renew_days of their end, and the '
             'servers reload them without a restart')
    if days_left <= 0:
        return dict(kind='certificate_expired', node=address, expires=expires.strftime('%Y-%m-%dT%H:%M:%SZ'),
                    detail=f'the TLS certificate it serves expired on {when}: clients and nodes that verify it refuse it; {renew}')
    return dict(kind='certificate_expiring', node=address, expires=expires.strftime('%Y-%m-%dT%H:%M:%SZ'),
                detail=f'the TLS certificate it serves expires on {when}, in {days_left:.1f} day(s) '
                       f'(certificate_expiry_days {expiry_days}); {renew}')


def inspect_cluster(pool: NodePool, host: str, port: int, zones: Optional[Dict[str, str]] = None, expiry_days: int = 30) -> Dict:
    started = time.monotonic()
    now = datetime.datetime.now(datetime.timezone.utc)
    zones = dict(zones or {})
    seed, states, unreachable = discover(pool, host, port)
    problems = find_problems(seed, states, unreachable, zones) + orphaned_keys(seed, states)
    nodes = describe_cluster(seed.view, zones)
    for entry in nodes:
        state = states.get(entry['address']) or (seed if entry['id'] == seed.node_id else None)
        if state is None:
            continue
        expires = state.client.served_certificate_expiry()
        if expires is not None:
            entry['certificate_expires'] = expires.strftime('%Y-%m-%dT%H:%M:%SZ')
            problem = certificate_problem(entry['address'], expires, now, expiry_days)
            if problem:
                problems.append(problem)
        try:
            replication = state.client.info('replication')
        except NodeError:
            continue
        offset = replication.get('slave_repl_offset') if entry['role'] == 'replica' else replication.get('master_repl_offset')
        entry['replication_offset'] = int(offset) if offset and offset.lstrip('-').isdigit() else None
        if entry['role'] == 'replica':
            entry['master_link_status'] = replication.get('master_link_status')
        entry['version'] = '.'.join(str(part) for part in state.version)
        entry['server'] = state.server_name
        if state.executable:
            entry['executable'] = state.executable
    masters = [node for node in nodes if node['role'] == 'master' and node['slot_count']]
    return dict(
        changed=False,
        cluster_state=seed.cluster_state,
        nodes=nodes,
        masters=len(masters),
        replicas=len([node for node in nodes if node['role'] == 'replica']),
        problems=problems,
        healthy=not problems,
        duration=round(time.monotonic() - started, 3),
    )
