# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Adding a node to a cluster (as an empty master or a replica) and removing one, dead or alive."""

from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ansible_collections.hashslot.redis.plugins.module_utils.cluster import (
    ClusterError, NodeState, discover, layout_of_view, read_node, read_views, wait_for_agreement, wait_until, wait_until_all_know,
)
from ansible_collections.hashslot.redis.plugins.module_utils.cluster_health import failure_domain
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import NodeError, NodePool, resolve_ip
from ansible_collections.hashslot.redis.plugins.module_utils.topology import ClusterNode, ClusterView, render_layout


def _live_members(seed: NodeState, states: Dict[str, NodeState], unreachable: Dict[str, str]) -> List[NodeState]:
    """Members that must take part; a member that is down but not yet flagged fail stops the run."""
    for address, reason in unreachable.items():
        node = next((member for member in seed.view.members() if member.address == address), None)
        if node is not None and not node.failed:
            raise ClusterError(f'{address}: cluster member is unreachable ({reason}) but not flagged fail; '
                               'membership changes need every live member: bring it back or wait until the cluster marks it failed')
    members = {seed.node_id: seed}
    for state in states.values():
        members.setdefault(state.node_id, state)
    return list(members.values())


def choose_master(view: ClusterView, node_host: str, node_zone: Optional[str], zones: Dict[str, str],
                  requested: Optional[Tuple[str, int]]) -> ClusterNode:
    """The requested master, else the one with fewest replicas, preferring another failure domain."""
    masters = [node for node in view.masters() if node.slots and not node.failed]
    if requested is not None:
        host, port = requested
        ip = resolve_ip(host)
        for node in view.masters():
            if node.port == port and node.host in (host, ip):
                return node
        raise ClusterError(f'{host}:{port}: is not a master of this cluster; name a master for the replica, or omit master to let the module choose')
    if not masters:
        raise ClusterError(f'{view.observer}: the cluster has no master that owns slots to replicate')
    own_domain = f'zone {node_zone}' if node_zone else f'host {node_host}'

    def preference(master: ClusterNode) -> Tuple:
        replicas = view.replicas_of(master.id)
        return (len(replicas), failure_domain(master, zones) == own_domain,
                sum(1 for replica in replicas if failure_domain(replica, zones) == own_domain), master.address)
    return min(masters, key=preference)


def meet_members(seed: NodeState, joining: Sequence[NodeState], members: Sequence[NodeState], timeout: float,
                 seed_ip: Optional[str] = None) -> None:
    """Each joining node meets the seed (gossip introduces the rest), then wait until every node knows every other."""
    seed_node = seed.myself
    bus = [seed_node.cport] if seed_node.cport and seed_node.cport != seed_node.port + 10000 else []
    for state in joining:
        state.client.call('CLUSTER', 'MEET', seed_ip or seed_node.host, seed_node.port, *bus)
    everyone = [state.client for state in members] + [state.client for state in joining]
    ids = {state.node_id for state in members} | {state.node_id for state in joining}
    what = f'every node to know {joining[0].address}' if len(joining) == 1 else f'{len(joining)} new nodes to meet every member'
    wait_until_all_know(everyone, ids, timeout, what)


def _find_member(view: ClusterView, host: str, port: int) -> Optional[ClusterNode]:
    try:
        ip = resolve_ip(host)
    except NodeError:
        ip = host
    for node in view.members():
        if node.port == port and node.host in (host, ip):
            return node
    return None


def ensure_present(pool: NodePool, cluster: Dict, node: Dict, role: str, master: Optional[Dict], zones: Dict[str, str],
                   wait_timeout: float, check_mode: bool) -> Dict:
    started = time.monotonic()
    seed, states, unreachable = discover(pool, cluster['host'], cluster['port'])
    members = _live_members(seed, states, unreachable)
    zones = dict(zones)
    try:
        target = read_node(pool.get(node['host'], node['port']))
    except NodeError as exc:
        raise ClusterError(f'cannot add the node: {exc}') from exc
    if node.get('zone'):
        zones[target.address] = node['zone']
    member = seed.view.nodes.get(target.node_id)
    actions: List[Dict] = []
    requested = (master['host'], master['port']) if master else None
    if member is not None and not member.in_handshake:
        if role == 'master':
            if member.is_replica:
                raise ClusterError(f'{target.address}: is a replica in the cluster; promote it with hashslot.redis.redis_failover, '
                                   'or remove it and add it again as a master')
        else:
            if member.is_master and member.slots:
                raise ClusterError(f'{target.address}: is a master that owns {member.slot_count} slots; drain it before making it a replica')
            current = seed.view.nodes.get(member.master_id) if member.is_replica else None
            if current is None or (requested is not None and choose_master(seed.view, node['host'], node.get('zone'), zones, requested).id != current.id):
                chosen = choose_master(seed.view, node['host'], node.get('zone'), zones, requested)
                actions.append(dict(action='replicate', node=target.address, master=chosen.address, master_id=chosen.id))
    else:
        if len(target.view.members()) > 1:
            others = [other.address for other in target.view.members() if not other.is_myself]
            raise ClusterError(f'{target.address}: already knows other nodes ({", ".join(sorted(others)[:5])}); '
                               'it belongs to another cluster: CLUSTER RESET it first if that is intended')
        if target.myself.slots:
            raise ClusterError(f'{target.address}: owns {target.myself.slot_count} slots of its own; a node joining a cluster must own none')
        if target.keys:
            raise ClusterError(f'{target.address}: holds {target.keys} keys; a node joining a cluster must be empty (FLUSHALL it if the data is not needed)')
        actions.append(dict(action='meet', node=target.address, peer=seed.address))
        if role == 'replica':
            chosen = choose_master(seed.view, node['host'], node.get('zone'), zones, requested)
            actions.append(dict(action='replicate', node=target.address, master=chosen.address, master_id=chosen.id))

    before_entries = layout_of_view(seed.view, zones)
    after_entries = [entry for entry in before_entries if entry['address'] != target.address]
    replicate = next((action for action in actions if action['action'] == 'replicate'), None)
    if replicate:
        after_entries.append(dict(address=target.address, role='replica', master_address=replicate['master'], zone=zones.get(target.address)))
    elif member is None:
        after_entries.append(dict(address=target.address, role='master', slots=[], zone=zones.get(target.address)))
    else:
        after_entries = before_entries
    result: Dict = dict(changed=bool(actions), actions=actions, node=target.address,
                        diff=dict(before=render_layout(before_entries), after=render_layout(after_entries)))
    if check_mode or not actions:
        result['duration'] = round(time.monotonic() - started, 3)
        return result

    try:
        if actions[0]['action'] == 'meet':
            meet_members(seed, [target], members, wait_timeout, seed_ip=seed.myself.host or resolve_ip(cluster['host']))
        if replicate:
            target.client.call('CLUSTER', 'REPLICATE', replicate['master_id'])

        def serving(states: Dict[str, NodeState]) -> Optional[str]:
            # A new master refuses keys (CLUSTERDOWN) for Redis's rejoin delay; return once it serves,
            # so a rebalance right after this task can move slots to it.
            state = states.get(target.address)
            if seed.cluster_state == 'ok' and state is not None and state.cluster_state != 'ok':
                return f'{target.address} reports cluster_state:{state.cluster_state}'
            return None
        final = wait_for_agreement([state.client for state in members] + [target.client], wait_timeout, require_ok=False, extra=serving)
    except (ClusterError, NodeError) as exc:
        raise ClusterError(f'{exc}; run the task again to complete it', changed=True) from exc
    result['diff']['after'] = render_layout(layout_of_view(final[target.address].view, zones))
    result['duration'] = round(time.monotonic() - started, 3)
    return result


def _find_by_id(view: ClusterView, node_id: str) -> Optional[ClusterNode]:
    """The node with this id (or a unique prefix of it, 8 characters at least), members and ghosts alike."""
    if node_id in view.nodes:
        return view.nodes[node_id]
    matches = [node for known, node in view.nodes.items() if len(node_id) >= 8 and known.startswith(node_id)]
    return matches[0] if len(matches) == 1 else None


def ensure_absent(pool: NodePool, cluster: Dict, node: Optional[Dict], wait_timeout: float, check_mode: bool,
                  drain: Optional[Callable[[bool], Dict]] = None, node_id: Optional[str] = None) -> Dict:
    """Remove `node`, or the node with id `node_id` (a node left without an address, which no address names);
    `drain(check_mode)` first empties a master that still owns slots."""
    started = time.monotonic()
    seed, states, unreachable = discover(pool, cluster['host'], cluster['port'])
    member = _find_by_id(seed.view, node_id) if node_id else _find_member(seed.view, node['host'], node['port'])
    before = render_layout(layout_of_view(seed.view))
    if member is None:
        return dict(changed=False, actions=[], node=node_id or f"{node['host']}:{node['port']}", diff=dict(before=before, after=before),
                    duration=round(time.monotonic() - started, 3))
    if 'noaddr' in member.flags:
        return _forget_ghost(seed, states, unreachable, member, before, wait_timeout, check_mode, started)
    drain_actions: List[Dict] = []
    if member.slots:
        if drain is None:
            raise ClusterError(f'{member.address}: owns {member.slot_count} slots; drain it first '
                               '(hashslot.redis.redis_cluster_reshard action=drain, or drain: true here) so no key is lost, then remove it')
        drain_actions = drain(check_mode)['actions']
        if not check_mode:
            seed, states, unreachable = discover(pool, cluster['host'], cluster['port'])
            member = _find_member(seed.view, node['host'], node['port'])
            if member is None or member.slots:
                raise ClusterError(f"{node['host']}:{node['port']}: still owns slots after the drain; run again", changed=True)
    replicas = seed.view.replicas_of(member.id)
    if replicas:
        raise ClusterError(f'{member.address}: has replicas ({", ".join(node.address for node in replicas)}); remove or re-point them first')
    live = _live_members(seed, states, {address: reason for address, reason in unreachable.items() if address != member.address})
    others = [state for state in live if state.node_id != member.id]
    if not others:
        raise ClusterError(f'{member.address}: is the only node the module could read; name another member as cluster')
    removed_state = next((state for state in states.values() if state.node_id == member.id), None)
    if removed_state is None and seed.node_id == member.id:
        removed_state = seed
    actions = drain_actions + [dict(action='forget', node=state.address, forget=member.address, forget_id=member.id) for state in others]
    if removed_state is not None:
        actions.append(dict(action='reset', node=member.address, hard=False))
    after = render_layout([entry for entry in layout_of_view(seed.view) if entry['address'] != member.address])
    result: Dict = dict(changed=True, actions=actions, node=member.address, diff=dict(before=before, after=after))
    if check_mode:
        result['duration'] = round(time.monotonic() - started, 3)
        return result
    _forget_everywhere(others, member.id, member.address, wait_timeout, reset=removed_state)
    result['duration'] = round(time.monotonic() - started, 3)
    return result


def _forget_everywhere(others: List[NodeState], node_id: str, label: str, wait_timeout: float, reset: Optional[NodeState] = None) -> None:
    """CLUSTER FORGET on every member first (each bans the id for 60 s, so no node re-learns it from gossip
    meanwhile), then CLUSTER RESET SOFT of the removed node when it answers, then wait until nobody knows it."""
    try:
        for state in others:
            reply = state.client.pipeline([('CLUSTER', 'FORGET', node_id)])[0]
            if isinstance(reply, Exception) and 'unknown node' not in str(reply).lower():
                raise ClusterError(f'{state.address}: CLUSTER FORGET {label} failed: {reply}', changed=True)
        if reset is not None:
            reset.client.call('CLUSTER', 'RESET', 'SOFT')

        def forgotten() -> Optional[str]:
            for address, state in read_views([state.client for state in others]).items():
                if node_id in state.view.nodes:
                    return f'{address} still knows {label}'
            return None
        wait_until(forgotten, min(wait_timeout, 50.0), f'every node to forget {label}')
    except (ClusterError, NodeError) as exc:
        raise ClusterError(f'{exc}; run the task again within 60 s to complete the removal', changed=True) from exc


def _forget_ghost(seed: NodeState, states: Dict[str, NodeState], unreachable: Dict[str, str], ghost: ClusterNode, before: str,
                  wait_timeout: float, check_mode: bool, started: float) -> Dict:
    """Forget a node the cluster lists without an address: no server answers for it, so it is only forgotten everywhere."""
    label = f'{ghost.id} (no address)'
    if ghost.slots:
        heirs = [replica.address for replica in seed.view.replicas_of(ghost.id) if not replica.failed]
        remedy = (f'promote its replica {heirs[0]} first (hashslot.redis.redis_failover mode=takeover)' if heirs
                  else 'no replica can take them over')
        raise ClusterError(f'{label}: still owns {ghost.slot_count} slots; forgetting it would leave them without an owner: {remedy}')
    replicas = seed.view.replicas_of(ghost.id)
    if replicas:
        raise ClusterError(f'{label}: has replicas ({", ".join(node.address for node in replicas)}); re-point them first')
    others = _live_members(seed, states, unreachable)
    actions = [dict(action='forget', node=state.address, forget=label, forget_id=ghost.id) for state in others]
    result: Dict = dict(changed=True, actions=actions, node=ghost.id, diff=dict(before=before, after=before))
    if check_mode:
        result['duration'] = round(time.monotonic() - started, 3)
        return result
    _forget_everywhere(others, ghost.id, label, wait_timeout)
    result['duration'] = round(time.monotonic() - started, 3)
    return result
