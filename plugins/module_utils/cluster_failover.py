# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Promoting a replica with CLUSTER FAILOVER and verifying the result with ROLE on both sides."""

from __future__ import annotations

import time
from typing import Dict, List, Optional

from ansible_collections.hashslot.redis.plugins.module_utils.cluster import (
    ClusterError, NodeState, layout_of_view, read_node, wait_for_agreement, wait_until,
)
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import NodeError, NodePool
from ansible_collections.hashslot.redis.plugins.module_utils.topology import ClusterNode, render_layout

FAILOVER_MODES = ('default', 'force', 'takeover')
# Redis aborts a manual failover the master does not complete within 5 s (CLUSTER_MF_TIMEOUT);
# past that the command is issued again.
MANUAL_FAILOVER_RETRY = 6.0


def _failure_domain(node: Dict) -> str:
    return str(node.get('zone') or f"host {node.get('host')}")


def choose_replica(nodes: List[Dict], master: Dict, mode: str = 'default') -> Optional[Dict]:
    """The replica of `master` to promote, from redis_cluster_info's nodes, or None.

    In the default mode (the master hands over) only a replica whose link is up and that no node suspects, preferring
    another failure domain than the master's, then the most advanced replication offset. In force and takeover mode
    (the master is presumably down) any replica not flagged fail, the most advanced offset first, since writes the
    replica did not receive are lost.
    """
    domain = _failure_domain(master)
    candidates = []
    for replica in nodes:
        flags = replica.get('flags') or []
        if replica.get('master_id') != master.get('id') or 'fail' in flags:
            continue
        if mode == 'default' and (replica.get('master_link_status') != 'up' or 'fail?' in flags):
            continue
        other_domain = _failure_domain(replica) != domain
        offset = int(replica.get('replication_offset') or 0)
        candidates.append(((other_domain, offset) if mode == 'default' else (offset, other_domain), replica))
    # max() keeps the first of equals: the nodes' order (by host and port) breaks ties.
    return max(candidates, key=lambda candidate: candidate[0])[1] if candidates else None


def _role(state: NodeState) -> List:
    return state.client.call('ROLE')


def plan_failover(seed: NodeState, mode: str) -> Dict:
    """The single action, or an explanation of why the node cannot be promoted."""
    myself = seed.myself
    role = _role(seed)
    if role[0] == 'master':
        if myself.slots:
            return dict(actions=[], old_master=None)
        raise ClusterError(f'{seed.address}: is a master without slots, not a replica of any master; there is nothing to promote it over')
    master = seed.view.nodes.get(myself.master_id)
    master_address = master.address if master else f'{role[1]}:{role[2]}'
    link = seed.client.info('replication').get('master_link_status')
    if mode == 'default' and link != 'up':
        raise ClusterError(
            f'{seed.address}: its replication link to master {master_address} is {link}; a default failover needs the master to hand over. '
            'Use mode=force when the master is down (acknowledged writes it did not replicate are lost), or fix the link first')
    if mode == 'default' and master is not None and (master.failed or master.pfail):
        raise ClusterError(f'{seed.address}: its master {master_address} is flagged {",".join(master.flags)}; use mode=force to promote without it')
    return dict(actions=[dict(action='failover', node=seed.address, mode=mode, old_master=master_address)],
                old_master=master, master_address=master_address)


def _refuse_open_slots(pool: NodePool, master: ClusterNode, seed: NodeState) -> None:
    """A planned failover of a master with a slot open (a reshard running, or one stopped part-way) is refused: the
    replica does not inherit the MIGRATING marks on Redis, so the migration would be left for a repair."""
    try:
        state = read_node(pool.get(master.host, master.port))
    except NodeError as exc:
        raise ClusterError(f'cannot fail over {seed.address}: its master {master.address} cannot be read ({exc}); '
                           'a default failover needs it, use mode=force when it is down') from exc
    open_slots = [f'{slot} (migrating to {seed.view.nodes[peer].address if peer in seed.view.nodes else peer})'
                  for slot, peer in sorted(state.myself.migrating.items())]
    open_slots += [f'{slot} (importing from {seed.view.nodes[peer].address if peer in seed.view.nodes else peer})'
                   for slot, peer in sorted(state.myself.importing.items())]
    if open_slots:
        raise ClusterError(f'{seed.address}: its master {master.address} has slots open: {", ".join(open_slots[:5])}'
                           f'{" ..." if len(open_slots) > 5 else ""}; a reshard is running or stopped part-way. Let it finish, '
                           'or run hashslot.redis.redis_cluster_reshard with action=fix, then fail over; nothing was changed')


def _predicted(seed: NodeState, old_master_id: Optional[str]) -> List[Dict]:
    entries = layout_of_view(seed.view)
    myself = seed.myself
    old = seed.view.nodes.get(old_master_id) if old_master_id else None
    for entry in entries:
        if entry['address'] == myself.address:
            entry.update(role='master', slots=old.slots if old else [], master_address=None)
        elif old is not None and entry['address'] == old.address:
            entry.update(role='replica', slots=[], master_address=myself.address)
        elif old is not None and entry.get('master_address') == old.address:
            entry['master_address'] = myself.address
    return entries


def promote_replica(pool: NodePool, host: str, port: int, mode: str, timeout: float, check_mode: bool) -> Dict:
    if mode not in FAILOVER_MODES:
        raise ClusterError(f'mode must be one of {", ".join(FAILOVER_MODES)}, got {mode}')
    started = time.monotonic()
    try:
        seed = read_node(pool.get(host, port))
    except NodeError as exc:
        raise ClusterError(f'cannot fail over: {exc}') from exc
    plan = plan_failover(seed, mode)
    if plan['actions'] and mode == 'default' and plan['old_master'] is not None:
        _refuse_open_slots(pool, plan['old_master'], seed)
    before = render_layout(layout_of_view(seed.view))
    result: Dict = dict(changed=bool(plan['actions']), actions=plan['actions'], node=seed.address)
    if not plan['actions']:
        result.update(role='master', diff=dict(before=before, after=before), duration=round(time.monotonic() - started, 3))
        return result
    old_master = plan['old_master']
    result['diff'] = dict(before=before, after=render_layout(_predicted(seed, old_master.id if old_master else None)))
    if check_mode:
        result['duration'] = round(time.monotonic() - started, 3)
        return result

    command = ['CLUSTER', 'FAILOVER'] + ([mode.upper()] if mode != 'default' else [])
    issued = {'at': 0.0}

    def promoted() -> Optional[str]:
        role = _role(seed)
        if role[0] == 'master':
            return None
        if time.monotonic() - issued['at'] > MANUAL_FAILOVER_RETRY:
            seed.client.call(*command)
            issued['at'] = time.monotonic()
        return f'{seed.address} is still a replica (ROLE {role[0]}, link {role[3] if len(role) > 3 else "?"})'

    try:
        wait_until(promoted, timeout, f'{seed.address} to become master')
    except ClusterError as exc:
        raise ClusterError(str(exc), changed=True) from exc

    new_id = seed.node_id
    deadline = started + timeout

    old_state: Optional[NodeState] = None
    if old_master is not None:
        try:
            old_state = read_node(pool.get(old_master.host, old_master.port))
        except NodeError:
            old_state = None  # a dead master is expected in force and takeover modes
    if old_state is not None:
        def demoted() -> Optional[str]:
            role = _role(old_state)
            if role[0] == 'slave' and (role[1], int(role[2])) == (seed.myself.host or host, seed.myself.port or port):
                return None
            if role[0] in ('slave', 'replica') and read_node(old_state.client).myself.master_id == new_id:
                return None
            return f'old master {old_state.address} reports ROLE {role[0]}'
        wait_until(demoted, max(1.0, deadline - time.monotonic()), f'{old_state.address} to become a replica of {seed.address}')

    members = [seed.client]
    for node in read_node(seed.client).view.members():
        if node.is_myself or node.failed:
            continue
        try:
            members.append(pool.get(node.host, node.port))
        except NodeError:
            continue

    def new_master_everywhere(states: Dict[str, NodeState]) -> Optional[str]:
        for address, state in states.items():
            node = state.view.nodes.get(new_id)
            if node is None or not node.is_master or not node.slots:
                return f'{address} does not see {seed.address} as a master with slots yet'
        return None

    try:
        final = wait_for_agreement(members, max(1.0, deadline - time.monotonic()), require_ok=False, extra=new_master_everywhere)
    except ClusterError as exc:
        raise ClusterError(str(exc), changed=True) from exc
    view = final[seed.address].view
    result.update(role='master', diff=dict(before=before, after=render_layout(layout_of_view(view))),
                  old_master=plan['master_address'], duration=round(time.monotonic() - started, 3))
    return result
