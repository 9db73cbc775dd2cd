# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Forming a cluster from a list of nodes: validate all, plan, apply, wait for agreement.

The plan is computed from the nodes' current state, so a run that was interrupted half-way
(slots assigned on some masters, some nodes met, some replicas not yet attached) is completed
by the next run instead of being refused.
"""

from __future__ import annotations

import time
from typing import Dict, List, Sequence

from ansible_collections.hashslot.redis.plugins.module_utils.cluster import (
    ClusterError, NodeState, describe_cluster, read_each, wait_for_agreement, wait_until_all_know,
)
from ansible_collections.hashslot.redis.plugins.module_utils.placement import NodeSpec, plan_layout
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import NodeClient, NodeError, NodePool, pipelines_at_once, resolve_ip
from ansible_collections.hashslot.redis.plugins.module_utils.topology import (
    SLOT_COUNT, SlotRange, format_ranges, parse_slot_ranges, ranges_to_slots, render_layout, slots_to_ranges,
)

MIN_MASTERS = 3


def _union_groups(states: Dict[str, NodeState]) -> List[List[str]]:
    """Listed nodes grouped by who knows whom."""
    by_id = {state.node_id: address for address, state in states.items()}
    parent = {address: address for address in states}

    def find(address: str) -> str:
        while parent[address] != address:
            parent[address] = parent[parent[address]]
            address = parent[address]
        return address

    for address, state in states.items():
        for node in state.view.members():
            other = by_id.get(node.id)
            if other is not None:
                parent[find(other)] = find(address)
    groups: Dict[str, List[str]] = {}
    for address in states:
        groups.setdefault(find(address), []).append(address)
    return list(groups.values())


def validate_specs(specs: Sequence[NodeSpec], replicas: int) -> None:
    if replicas < 0:
        raise ClusterError(f'replicas must be 0 or more, got {replicas}')
    seen: Dict[str, int] = {}
    for index, spec in enumerate(specs):
        if spec.address in seen:
            raise ClusterError(f'{spec.address}: listed twice in nodes (items {seen[spec.address] + 1} and {index + 1}); list every node once')
        seen[spec.address] = index
    masters = len(specs) // (replicas + 1)
    if masters < MIN_MASTERS:
        raise ClusterError(
            f'too few nodes: {len(specs)} nodes with replicas={replicas} make {masters} masters, and a cluster needs at least {MIN_MASTERS}; '
            f'give at least {MIN_MASTERS * (replicas + 1)} nodes or lower replicas')


def probe_all(pool: NodePool, specs: Sequence[NodeSpec], what: str = 'create the cluster') -> Dict[str, NodeState]:
    """Read every node before anything is written; one message lists every node that is unfit."""
    clients = []
    failed: Dict[str, NodeError] = {}
    for spec in specs:
        try:
            clients.append(pool.get(spec.host, spec.port))
        except NodeError as exc:
            failed[spec.address] = exc
    states, errors = read_each(clients, with_config=True)
    failed.update(errors)
    problems = [str(failed[spec.address]) for spec in specs if spec.address in failed]
    if problems:
        raise ClusterError(f'cannot {what}, no node was changed: ' + '; '.join(problems))
    seen_ids: Dict[str, str] = {}
    for address, state in states.items():
        if state.node_id in seen_ids:
            raise ClusterError(f'{address}: is the same node as {seen_ids[state.node_id]} (node id {state.node_id}); list every node once')
        seen_ids[state.node_id] = address
    listed_ids = set(seen_ids)
    for address, state in states.items():
        strangers = [node.address for node in state.view.members() if node.id not in listed_ids]
        if strangers:
            raise ClusterError(
                f'{address}: already in another cluster: it knows {len(strangers)} node(s) that are not listed ({", ".join(sorted(strangers)[:5])}); '
                'list them too, remove them with hashslot.redis.redis_cluster_node state=absent, or CLUSTER RESET this node')
        if state.is_fresh and state.keys:
            raise ClusterError(f'{address}: holds {state.keys} keys; a node joining a new cluster must be empty (FLUSHALL it if the data is not needed)')
    owners: Dict[int, str] = {}
    for address, state in states.items():
        for start, end in state.myself.slots:
            for slot in range(start, end + 1):
                if owners.setdefault(slot, address) != address:
                    raise ClusterError(f'{address}: claims slot {slot}, which {owners[slot]} also claims; the nodes belong to different clusters')
    return states


def _meet_endpoint(state: NodeState, spec: NodeSpec) -> List:
    """ip, port and bus port others must use to reach this node, honouring its announce settings."""
    config = state.config
    ip = config.get('cluster-announce-ip') or resolve_ip(spec.host)
    port = int(config.get('cluster-announce-port') or 0) or spec.port
    bus_port = int(config.get('cluster-announce-bus-port') or 0) or int(config.get('cluster-port') or 0)
    return [ip, port, bus_port] if bus_port else [ip, port]


def _uncovered_shares(layout, owned: Dict[int, str]) -> List:
    """Who takes the slots nobody owns yet: masters keep what they own, slotless masters split the rest evenly.

    On fresh nodes this is the even contiguous split; after an interrupted run it does not depend on the
    order the nodes are listed in, only on which slots are still uncovered.
    """
    uncovered = [slot for slot in range(SLOT_COUNT) if slot not in owned]
    if not uncovered:
        return []
    owners_of_slots = set(owned.values())
    takers = [master for master in layout.masters if master not in owners_of_slots]
    shares: List = []
    if takers:
        base, extra = divmod(len(uncovered), len(takers))
        start = 0
        for index, master in enumerate(takers):
            size = base + (1 if index < extra else 0)
            if size:
                shares.append((master, uncovered[start:start + size]))
            start += size
        return shares
    # Every master owns slots already: each uncovered slot goes to the master whose even share holds it.
    by_master: Dict[str, List[int]] = {}
    for slot in uncovered:
        master = next(name for name, ranges in layout.slots.items() if any(start <= slot <= end for start, end in ranges))
        by_master.setdefault(master, []).append(slot)
    return [(master, by_master[master]) for master in layout.masters if master in by_master]


def plan_create(specs: Sequence[NodeSpec], replicas: int, states: Dict[str, NodeState]):
    """The layout and the list of actions that bring `states` to a formed cluster."""
    by_id = {state.node_id: address for address, state in states.items()}
    owned: Dict[int, str] = {}
    fixed_masters: List[str] = []
    fixed_replicas: Dict[str, str] = {}
    for spec in specs:
        state = states[spec.address]
        if state.myself.slots:
            fixed_masters.append(spec.address)
            for start, end in state.myself.slots:
                for slot in range(start, end + 1):
                    owned[slot] = spec.address
        elif state.myself.is_replica and state.myself.master_id in by_id:
            fixed_replicas[spec.address] = by_id[state.myself.master_id]
    all_covered = len(owned) == SLOT_COUNT
    if all_covered and len(fixed_masters) < MIN_MASTERS:
        raise ClusterError(
            f'{fixed_masters[0]}: already owns every slot with {len(fixed_masters)} master(s); '
            f'create will not reshape a populated cluster to {MIN_MASTERS} masters, add masters and rebalance instead')
    layout = plan_layout(specs, replicas, fixed_masters=fixed_masters, fixed_replicas=fixed_replicas,
                         master_count=len(fixed_masters) if all_covered else None)

    actions: List[Dict] = []
    for master, wanted in _uncovered_shares(layout, owned):
        actions.append(dict(action='addslots', node=master, slots=format_ranges(slots_to_ranges(wanted))))
    return layout, actions + joining_actions(specs, layout, states)


def joining_actions(specs: Sequence[NodeSpec], layout, states: Dict[str, NodeState]) -> List[Dict]:
    """Once the masters own their slots: distinct config epochs for the fresh nodes, the meetings not made yet, and
    the replicas not attached yet (what both create and restore do)."""
    actions: List[Dict] = []
    # Distinct config epochs avoid the collision-resolution rounds a fresh cluster otherwise goes through.
    epoch = max([state.view.myself.config_epoch for state in states.values()] + [0])
    for spec in specs:
        state = states[spec.address]
        if len(state.view.members()) == 1 and state.myself.config_epoch == 0:
            epoch += 1
            actions.append(dict(action='set_config_epoch', node=spec.address, epoch=epoch))
    known = {address: {node.id for node in state.view.members()} for address, state in states.items()}
    addresses = [spec.address for spec in specs]
    for index, address in enumerate(addresses):
        for peer in addresses[index + 1:]:
            if states[peer].node_id not in known[address] and states[address].node_id not in known[peer]:
                actions.append(dict(action='meet', node=address, peer=peer))
    for replica, master in layout.replicas.items():
        current = states[replica].myself
        if current.is_replica and current.master_id == states[master].node_id:
            continue
        actions.append(dict(action='replicate', node=replica, master=master, master_id=states[master].node_id))
    return actions


def _planned_entries(layout, specs: Sequence[NodeSpec], states: Dict[str, NodeState], actions: List[Dict]) -> List[Dict]:
    added: Dict[str, List[SlotRange]] = {}
    for action in actions:
        if action['action'] == 'addslots':
            added[action['node']] = parse_slot_ranges(action['slots'])
    entries = []
    for spec in specs:
        address = spec.address
        if address in layout.masters:
            slots = slots_to_ranges(ranges_to_slots(states[address].myself.slots) + ranges_to_slots(added.get(address, [])))
            entries.append(dict(address=address, role='master', slots=slots, zone=spec.zone))
        else:
            entries.append(dict(address=address, role='replica', master_address=layout.replicas.get(address), zone=spec.zone))
    return entries


def _current_entries(specs: Sequence[NodeSpec], states: Dict[str, NodeState]) -> List[Dict]:
    by_id = {state.node_id: address for address, state in states.items()}
    entries = []
    for spec in specs:
        myself = states[spec.address].myself
        if myself.is_replica:
            entries.append(dict(address=spec.address, role='replica', master_address=by_id.get(myself.master_id, myself.master_id), zone=spec.zone))
        else:
            entries.append(dict(address=spec.address, role='master', slots=myself.slots, zone=spec.zone))
    return entries


def _apply(actions: List[Dict], specs: Sequence[NodeSpec], states: Dict[str, NodeState], wait_timeout: float) -> None:
    """Each step's commands go to all the nodes at once (one round trip for the lot, not one a node)."""
    spec_of = {spec.address: spec for spec in specs}
    clients = {address: state.client for address, state in states.items()}
    per_node: Dict[str, List] = {}
    for action in actions:
        if action['action'] == 'addslots':
            for text in action['slots']:
                start, dummy, end = text.partition('-')
                per_node.setdefault(action['node'], []).append(('CLUSTER', 'ADDSLOTSRANGE', start, end or start))
        elif action['action'] == 'set_config_epoch':
            per_node.setdefault(action['node'], []).append(('CLUSTER', 'SET-CONFIG-EPOCH', action['epoch']))
    _run_everywhere(clients, per_node)

    meets: Dict[str, List] = {}
    for action in actions:
        if action['action'] == 'meet':
            meets.setdefault(action['node'], []).append(('CLUSTER', 'MEET', *_meet_endpoint(states[action['peer']], spec_of[action['peer']])))
    _run_everywhere(clients, meets)

    replicates: Dict[str, List] = {}
    for action in actions:
        if action['action'] == 'replicate':
            replicates.setdefault(action['node'], []).append(('CLUSTER', 'REPLICATE', action['master_id']))
    if meets and replicates:
        # A replica must know its master before CLUSTER REPLICATE names it. That every node knows every other is
        # waited for with the agreement (every node lists the same members, itself among them): waiting for it here
        # too would hold the replicas back while the last handshakes end, most of a second at 90 nodes.
        wait_until_all_know([clients[address] for address in replicates], {action['master_id'] for action in actions if action['action'] == 'replicate'},
                            wait_timeout, 'the replicas to know their masters')
    _run_everywhere(clients, replicates)


def _run_everywhere(clients: Dict[str, NodeClient], per_node: Dict[str, List]) -> None:
    """Every node's commands, sent to all the nodes before any reply is read; the first node that failed raises."""
    addresses = list(per_node)
    outcomes = pipelines_at_once([(clients[address], per_node[address]) for address in addresses])
    for address, outcome in zip(addresses, outcomes):
        if isinstance(outcome, NodeError):
            raise outcome
        _check_replies(clients[address], per_node[address], outcome)


def _check_replies(client: NodeClient, commands: List, replies: List) -> None:
    for command, reply in zip(commands, replies):
        if isinstance(reply, Exception):
            if command[1] == 'ADDSLOTSRANGE' and 'unknown subcommand' in str(reply).lower():
                # Redis 6 has no ADDSLOTSRANGE; ADDSLOTS takes the slots one by one.
                start, end = int(command[2]), int(command[3])
                client.call('CLUSTER', 'ADDSLOTS', *range(start, end + 1))
                continue
            raise ClusterError(f'{client.address}: {" ".join(str(word) for word in command[:2])} failed: {reply}')


def create_cluster(pool: NodePool, specs: Sequence[NodeSpec], replicas: int, wait_timeout: float, check_mode: bool) -> Dict:
    started = time.monotonic()
    validate_specs(specs, replicas)
    states = probe_all(pool, specs)
    layout, actions = plan_create(specs, replicas, states)
    before = render_layout(_current_entries(specs, states))
    after = render_layout(_planned_entries(layout, specs, states, actions))
    result: Dict = dict(changed=bool(actions), actions=actions, warnings=list(layout.warnings),
                        diff=dict(before=before, after=after))
    if check_mode:
        result['cluster'] = _planned_entries(layout, specs, states, actions)
        result['duration'] = round(time.monotonic() - started, 3)
        return result
    try:
        _apply(actions, specs, states, wait_timeout)
        final = wait_for_agreement([state.client for state in states.values()], wait_timeout)
    except (ClusterError, NodeError) as exc:
        raise ClusterError(f'{exc}; the cluster is partly formed, run the task again to complete it', changed=bool(actions)) from exc
    reference = next(iter(final.values()))
    result['cluster'] = describe_cluster(reference.view, {spec.address: spec.zone for spec in specs if spec.zone})
    result['diff']['after'] = render_layout(_current_entries(specs, final))
    result['duration'] = round(time.monotonic() - started, 3)
    return result
