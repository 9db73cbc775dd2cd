# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The layout a cluster description asks for, from whatever the cluster is now.

One planner for forming, growing and shrinking: the masters are the nodes that own slots plus new ones chosen by
`placement.choose_masters`; every other node replicates the master `assign_replicas` gives it. Both choices are
canonical: a run cut short at any step leaves a state from which the same description plans the same layout
(empty masters it joined are preferred again; replicas already attached are a part of the one best assignment,
which is found again around them). So the cluster a description gives does not depend on the way there.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from ansible_collections.hashslot.redis.plugins.module_utils.cluster import (
    ClusterError, NodeState, describe_cluster, discover, layout_of_view, read_each, read_node, wait_for_agreement,
)
from ansible_collections.hashslot.redis.plugins.module_utils.cluster_create import create_cluster, validate_specs
from ansible_collections.hashslot.redis.plugins.module_utils.cluster_failover import promote_replica
from ansible_collections.hashslot.redis.plugins.module_utils.cluster_health import ghost_nodes
from ansible_collections.hashslot.redis.plugins.module_utils.cluster_membership import ensure_absent, meet_members
from ansible_collections.hashslot.redis.plugins.module_utils.cluster_reshard import reshard
from ansible_collections.hashslot.redis.plugins.module_utils.placement import NodeSpec, _FlowNetwork, _master_bounds, plan_layout
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import NodeError, NodePool, format_address, resolve_ip, split_address
from ansible_collections.hashslot.redis.plugins.module_utils.reshard_plan import describe_moves, plan_drain, plan_rebalance
from ansible_collections.hashslot.redis.plugins.module_utils.slot_migration import MigrationSettings
from ansible_collections.hashslot.redis.plugins.module_utils.topology import (
    SLOT_COUNT, ClusterNode, ClusterView, SlotRange, parse_slot_ranges, ranges_to_slots, render_layout, slots_to_ranges,
)

MIN_MASTERS = 3
ROLES = ('master', 'replica')
JOIN_ROLES = ('auto', 'replica')


@dataclass(frozen=True)
class WantedNode:
    """A node of the description; `spec.address` is the address the cluster knows it by."""
    spec: NodeSpec
    role: Optional[str] = None
    weight: Optional[float] = None

    @property
    def address(self) -> str:
        return self.spec.address


@dataclass(frozen=True)
class Member:
    """What planning needs to know of a node the cluster has now."""
    address: str
    host: str
    port: int
    master: Optional[str] = None
    slots: Tuple[SlotRange, ...] = ()
    zone: Optional[str] = None

    @property
    def slot_count(self) -> int:
        return sum(end - start + 1 for start, end in self.slots)


@dataclass
class Target:
    masters: List[str]
    replicas: Dict[str, str]
    joins: List[str]
    replicate: List[Tuple[str, str]]
    rehome: List[Tuple[str, str]]
    leaving: List[str]
    weights: Dict[str, float]
    specs: Dict[str, NodeSpec]
    problems: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    def replicas_of(self, master: str) -> List[str]:
        return [replica for replica, owner in self.replicas.items() if owner == master]


def _domains_on(master: str, replicas: Dict[str, str], by_address: Dict[str, NodeSpec]) -> Set[str]:
    return {by_address[replica].domain for replica, owner in replicas.items() if owner == master}


def spread_score(masters: Sequence[str], replicas: Dict[str, str], by_address: Dict[str, NodeSpec], wanted: int) -> int:
    """How many of the wanted replicas sit in a failure domain of their own: per master, the distinct domains among
    its replicas other than its own, at most `wanted`. It does not depend on the order the replicas came in."""
    score = 0
    for master in masters:
        foreign = _domains_on(master, replicas, by_address) - {by_address[master].domain}
        score += min(wanted, len(foreign))
    return score


def _spread_gain(masters: Sequence[str], free: Sequence[str], replicas: Dict[str, str], by_address: Dict[str, NodeSpec], wanted: int) -> int:
    """The most `spread_score` can still grow by placing the `free` nodes (a max flow: node -> (master, domain) -> master)."""
    network = _FlowNetwork()
    source, sink = ('source',), ('sink',)
    room = {}
    taken = {}
    for master in masters:
        taken[master] = _domains_on(master, replicas, by_address) - {by_address[master].domain}
        room[master] = wanted - len(taken[master])
    linked = set()
    for address in free:
        domain = by_address[address].domain
        network.add_edge(source, ('node', address), 1)
        for master in masters:
            if room[master] <= 0 or domain == by_address[master].domain or domain in taken[master]:
                continue
            network.add_edge(('node', address), ('slot', master, domain), 1)
            if (master, domain) not in linked:
                linked.add((master, domain))
                network.add_edge(('slot', master, domain), ('master', master), 1)
    for master in masters:
        if room[master] > 0:
            network.add_edge(('master', master), sink, room[master])
    flow = network.max_flow(source, sink)
    return sum(amount for amount in flow.get(source, {}).values() if amount > 0)


class _CostFlow:
    """Min-cost flow, one unit at a time along a cheapest path (Bellman-Ford on the residual graph): small graphs."""

    def __init__(self) -> None:
        self.edges: Dict[object, List[List]] = {}

    def add_edge(self, source: object, target: object, capacity: int, cost: int) -> List:
        """The edge; its flow is edge[3][1] (what its reverse edge can send back)."""
        forward: List = [target, capacity, cost, None]
        backward: List = [source, 0, -cost, forward]
        forward[3] = backward
        self.edges.setdefault(source, []).append(forward)
        self.edges.setdefault(target, []).append(backward)
        return forward

    def send(self, source: object, sink: object, units: int) -> None:
        for dummy in range(units):
            distance: Dict[object, int] = {source: 0}
            via: Dict[object, List] = {}
            changed = True
            while changed:
                changed = False
                for node, edges in self.edges.items():
                    if node not in distance:
                        continue
                    for edge in edges:
                        if edge[1] > 0 and distance[node] + edge[2] < distance.get(edge[0], distance[node] + edge[2] + 1):
                            distance[edge[0]] = distance[node] + edge[2]
                            via[edge[0]] = edge
                            changed = True
            if sink not in distance:
                return
            node = sink
            while node != source:
                edge = via[node]
                edge[1] -= 1
                edge[3][1] += 1
                node = edge[3][0]


def _jitter(*parts: str) -> int:
    """A fixed pseudo-random cost below 100000: it breaks every tie the same way, whatever the run."""
    return int(hashlib.sha256('\0'.join(parts).encode()).hexdigest()[:8], 16) % 100000


def pick_masters(specs: Dict[str, NodeSpec], fixed: Sequence[str], eligible: Sequence[str], count: int, replicas: int) -> List[str]:
    """The masters: `fixed` plus new ones from `eligible` up to `count`, spread over failure domains first, then over
    hosts (the sums of squared masters per domain and per host as small as they can be, within the bounds that leave
    every master replicas from other domains).

    The choice is the one best set for the whole description (ties broken by a fixed jitter, then by the nodes' order),
    not a sequence of picks: with any part of it already in place (masters that got slots before a run stopped), the
    rest is chosen again.
    """
    order = list(specs)
    need = count - len(fixed)
    if need <= 0 or not eligible:
        return [address for address in order if address in fixed]
    domain_sizes = Counter(spec.domain for spec in specs.values())
    bounds = _master_bounds(dict(domain_sizes), len(order), count, replicas)
    taken_domains = Counter(specs[address].domain for address in fixed)
    taken_hosts = Counter(specs[address].host for address in fixed)
    groups: Dict[Tuple[str, str], List[str]] = {}
    for address in order:
        if address in eligible:
            groups.setdefault((specs[address].domain, specs[address].host), []).append(address)
    flow = _CostFlow()
    source, sink = ('source',), ('sink',)
    group_edges = {}
    for domain in sorted({domain for domain, dummy in groups}):
        size = sum(len(members) for (group_domain, dummy), members in groups.items() if group_domain == domain)
        for index in range(size):
            taken = taken_domains[domain] + index
            flow.add_edge(source, ('domain', domain), 1, 10 ** 18 * (taken >= bounds.get(domain, taken + 1)) + 10 ** 12 * (2 * taken + 1))
    for (domain, host), members in sorted(groups.items()):
        group_edges[(domain, host)] = flow.add_edge(('domain', domain), ('group', domain, host), len(members), _jitter(domain, host))
        flow.add_edge(('group', domain, host), ('host', host), len(members), 0)
    for host in sorted({host for dummy, host in groups}):
        size = sum(len(members) for (dummy, group_host), members in groups.items() if group_host == host)
        for index in range(size):
            flow.add_edge(('host', host), sink, 1, 10 ** 6 * (2 * (taken_hosts[host] + index) + 1))
    flow.send(source, sink, min(need, len(eligible)))
    chosen = set(fixed)
    for (domain, host), members in groups.items():
        chosen.update(members[:group_edges[(domain, host)][3][1]])
    return [address for address in order if address in chosen]


def assign_replicas(masters: Sequence[str], nodes: Sequence[str], current: Dict[str, str], by_address: Dict[str, NodeSpec],
                    wanted: int) -> Dict[str, str]:
    """Each node's master: the nodes in their given order, each keeping its `current` master, else taking the one it
    prefers, among the masters that keep the best reachable spread (`spread_score`) and give every master `wanted`
    replicas while nodes last.

    A node's choice depends only on the nodes before it and on its own current master, never on where later nodes
    are, and the best spread is reckoned with every node free. So the assignment is one and the same whatever part of
    it is already in place: a run stopped after attaching some replicas is completed by the same choices.
    """
    if not masters:
        return {}
    replicas: Dict[str, str] = {}
    have = {master: 0 for master in masters}
    best = _spread_gain(masters, nodes, {}, by_address, wanted)
    remaining = list(nodes)
    for address in nodes:
        remaining.remove(address)
        node = by_address[address]

        def preference(master: str) -> Tuple:
            master_node = by_address[master]
            siblings = _domains_on(master, replicas, by_address)
            return (node.domain == master_node.domain, node.domain in siblings, node.host == master_node.host,
                    have[master] >= wanted, have[master], masters.index(master))
        options = sorted(masters, key=preference)
        if current.get(address) in have:
            options.remove(current[address])
            options.insert(0, current[address])
        chosen = None
        for master in options:
            replicas[address] = master
            have[master] += 1
            deficit = sum(max(0, wanted - count) for count in have.values())
            if (deficit <= len(remaining) or have[master] <= wanted) and \
                    spread_score(masters, replicas, by_address, wanted) + _spread_gain(masters, remaining, replicas, by_address, wanted) >= best:
                chosen = master
                break
            del replicas[address]
            have[master] -= 1
        if chosen is None:
            chosen = min(masters, key=lambda name: (have[name], masters.index(name)))
            replicas[address] = chosen
            have[chosen] += 1
    return replicas


def plan_target(wanted: Sequence[WantedNode], replicas: int, members: Dict[str, Member], leaving: Iterable[str] = (),
                join_role: str = 'auto', allow_bare_masters: bool = False) -> Target:
    """The masters, each replica's master and the steps that lead there, for the description `wanted` of a formed
    cluster whose nodes are `members` (address -> Member); the `leaving` members drain their slots and go."""
    leaving_set = set(leaving)
    wanted_by = {node.address: node for node in wanted}
    specs: Dict[str, NodeSpec] = {node.address: node.spec for node in wanted}
    warnings: List[str] = []
    problems: List[str] = []
    for address, member in members.items():
        if address not in specs and address not in leaving_set:
            # A member the description does not name stays as it is (prune removes it).
            specs[address] = NodeSpec(member.host, member.port, member.zone)
    order = list(specs)
    # A master described with weight 0 gives its slots away and becomes a replica, like an empty master.
    emptied = [address for address in order if address in members and members[address].slots
               and address in wanted_by and wanted_by[address].weight == 0]
    fixed_masters = [address for address in order if address in members and members[address].slots and address not in emptied]
    fixed_replicas = {address: members[address].master for address in order
                      if address in members and members[address].master in fixed_masters}
    empty_masters = [address for address in order if address in members and not members[address].slots and not members[address].master]
    candidates = [address for address in order
                  if address not in fixed_masters and address not in fixed_replicas
                  and (address not in members or address in empty_masters or address in emptied)]
    for address in order:
        hint = wanted_by[address].role if address in wanted_by else None
        if hint == 'replica' and address in fixed_masters:
            warnings.append(f'{address}: owns {members[address].slot_count} slots, so it stays a master although role=replica; '
                            'drain it (hashslot.redis.redis_cluster_reshard action=drain) to make it a replica')
        if hint == 'master' and address in fixed_replicas:
            warnings.append(f'{address}: is a replica of {fixed_replicas[address]}, so it stays one although role=master; '
                            'promote it with hashslot.redis.redis_failover')
    forced = [address for address in candidates if address in wanted_by and wanted_by[address].role == 'master']
    eligible = [address for address in candidates
                if not (address in wanted_by and (wanted_by[address].role or wanted_by[address].weight == 0))]
    if join_role == 'replica':
        eligible = []
    master_count = max(len(order) // (replicas + 1), len(fixed_masters) + len(forced))
    masters = pick_masters(specs, fixed_masters + forced, eligible, master_count, replicas)
    if len(masters) < MIN_MASTERS:
        problems.append(f'the description leaves {len(masters)} master(s) ({", ".join(masters) or "none"}); a cluster needs at least {MIN_MASTERS}')
    current = {address: members[address].master for address in order if address in members and members[address].master in masters}
    final = assign_replicas(masters, [address for address in order if address not in masters], current, specs, replicas)

    for master in masters:
        count = sum(1 for owner in final.values() if owner == master)
        had = sum(1 for member in members.values() if member.master == master)
        if replicas and count == 0:
            if had:
                (warnings if allow_bare_masters else problems).append(
                    f'{master}: would be left without a replica (its replicas leave and no node is left to take their place); '
                    'keep one of them, add a node, or allow it (allow_master_without_replica)')
            else:
                warnings.append(f'{master}: has no replica and the description has no node left to give it one')
        elif count < replicas:
            warnings.append(f'{master}: gets {count} of the {replicas} replica(s) asked for: the description has too few nodes')
        elif any(specs[replica].domain == specs[master].domain for replica in final if final[replica] == master):
            warnings.append(f'{master}: has a replica in its own failure domain ({specs[master].domain}): the nodes given do not allow '
                            'every replica a domain of its own')

    joins_masters = [address for address in masters if address not in members]
    joins_replicas = [address for address in order if address not in members and address not in masters]
    replicate: List[Tuple[str, str]] = []
    rehome: List[Tuple[str, str]] = []
    for address in order:
        if address not in final:
            continue
        current = members[address].master if address in members else None
        if current == final[address]:
            continue
        # After the drain: the replicas of masters that leave, and masters that give their slots away.
        (rehome if current in leaving_set or current in emptied or address in emptied else replicate).append((address, final[address]))
    weights = {address: float(wanted_by[address].weight) for address in masters
               if address in wanted_by and wanted_by[address].weight is not None}
    weights.update({address: 0.0 for address in emptied})
    for address in sorted(leaving_set):
        if address in members and members[address].slots:
            weights[address] = 0.0
    return Target(masters=masters, replicas=final, joins=joins_masters + joins_replicas, replicate=replicate, rehome=rehome,
                  # Replicas before masters: a master is forgotten once no replica follows it, and its own may be leaving too.
                  leaving=sorted((address for address in leaving_set if address in members), key=lambda address: (not members[address].master, address)),
                  weights=weights, specs=specs,
                  problems=problems, warnings=warnings)


def layout_entries(target: Target, slots: Dict[str, Sequence[SlotRange]]) -> List[Dict]:
    """The planned layout as render_layout entries; `slots` gives the masters' slots after the rebalance."""
    entries = []
    for address, spec in target.specs.items():
        if address in target.masters:
            entries.append(dict(address=address, role='master', slots=list(slots.get(address, [])), zone=spec.zone))
        elif address in target.replicas:
            entries.append(dict(address=address, role='replica', master_address=target.replicas[address], zone=spec.zone))
    return entries


# ---------------------------------------------------------------------------------------------------------------------
# Reading the nodes and carrying the plan out


def wanted_nodes(nodes: Sequence[Dict]) -> List[WantedNode]:
    """The module's `nodes` option, each node named by the address the cluster knows it by; bad items are refused."""
    wanted: List[WantedNode] = []
    seen: Dict[str, int] = {}
    for index, item in enumerate(nodes):
        role = item.get('role')
        if role not in (None,) + ROLES:
            raise ClusterError(f"{item.get('host')}:{item.get('port')}: role must be master or replica, got {role}")
        weight = item.get('weight')
        if weight is not None and float(weight) < 0:
            raise ClusterError(f"{item['host']}:{item['port']}: weight must be 0 or more, got {weight}")
        try:
            host = resolve_ip(item['host'])
        except NodeError as exc:
            raise ClusterError(str(exc)) from exc
        spec = NodeSpec(host, int(item['port']), item.get('zone') or None)
        if spec.address in seen:
            raise ClusterError(f'{spec.address}: listed twice in nodes (items {seen[spec.address] + 1} and {index + 1}); list every node once')
        seen[spec.address] = index
        wanted.append(WantedNode(spec, role, None if weight is None else float(weight)))
    return wanted


def _probe(pool: NodePool, wanted: Sequence[WantedNode]) -> Tuple[Dict[str, NodeState], Dict[str, str]]:
    """Every node of the description read in one round trip: the states, and why the others did not answer."""
    states: Dict[str, NodeState] = {}
    unreachable: Dict[str, str] = {}
    clients = {}
    for node in wanted:
        try:
            clients[node.address] = pool.get(node.spec.host, node.spec.port)
        except NodeError as exc:
            unreachable[node.address] = exc.reason
    read, errors = read_each(clients.values(), with_config=True)
    for node in wanted:
        client = clients.get(node.address)
        if client is None:
            continue
        if client.address in read:
            states[node.address] = read[client.address]
            continue
        error = errors[client.address]
        if error.state:
            raise ClusterError(str(error)) from error
        unreachable[node.address] = error.reason
    return states, unreachable


def _formed_seed(states: Dict[str, NodeState]) -> Optional[NodeState]:
    """A listed node whose view has masters owning every slot; refused when two such views are different clusters."""
    # A ghost (no address any more) is still listed as a master owning its slots until its replica takes them over.
    formed = [state for state in states.values() if sum(node.slot_count for node in state.view.masters()) >= SLOT_COUNT]
    if not formed:
        return None
    seed = max(formed, key=lambda state: len(state.view.members()))
    for state in formed:
        if state.node_id not in seed.view.nodes and seed.node_id not in state.view.nodes:
            raise ClusterError(f'{state.address} and {seed.address}: belong to two different formed clusters; '
                               'describe one cluster at a time')
    return seed


def _members(view: ClusterView, zones: Dict[str, Optional[str]], heirs: Dict[str, ClusterNode]) -> Dict[str, Member]:
    """The members as plan_target sees them; a ghost's heir is taken for the master it is about to become."""
    members: Dict[str, Member] = {}
    for node in view.members():
        if 'noaddr' in node.flags:
            continue
        master = view.nodes.get(node.master_id) if node.master_id else None
        if master is not None and master.id in heirs:
            heir = heirs[master.id]
            if heir.id == node.id:
                members[node.address] = Member(node.address, node.host, node.port, slots=tuple(master.slots), zone=zones.get(node.address))
                continue
            master = heir
        master_address = master.address if master is not None and 'noaddr' not in master.flags else None
        members[node.address] = Member(node.address, node.host, node.port, master=master_address if node.is_replica else None,
                                       slots=tuple(node.slots), zone=zones.get(node.address))
    return members


def _check_joining(address: str, state: NodeState, seed: NodeState) -> None:
    if len(state.view.members()) > 1:
        others = sorted(node.address for node in state.view.members() if not node.is_myself)
        raise ClusterError(f'{address}: already knows other nodes ({", ".join(others[:5])}) but is not a member of the cluster '
                           f'{seed.address} belongs to; CLUSTER RESET it if it is meant to join, or leave it out of nodes')
    if state.myself.slots:
        raise ClusterError(f'{address}: owns {state.myself.slot_count} slots of its own; a node joining a cluster must own none')
    if state.keys:
        raise ClusterError(f'{address}: holds {state.keys} keys; a node joining a cluster must be empty (FLUSHALL it if the data is not needed)')


def _simulated_moves(target: Target, members: Dict[str, Member], threshold: float, rebalance: bool) -> List[Dict]:
    owned = {address: ranges_to_slots(members[address].slots) if address in members else [] for address in target.masters}
    for address in [address for address, weight in target.weights.items() if weight == 0 and address in members] + target.leaving:
        if members[address].slots:
            owned[address] = ranges_to_slots(members[address].slots)
    weights = {address: target.weights.get(address, 1.0) for address in owned}
    if rebalance:
        moves = plan_rebalance(owned, weights, threshold) or []
    else:
        moves = []
        for address in [address for address, weight in target.weights.items() if weight == 0]:
            if owned.get(address):
                moves += plan_drain(owned, address, weights)
    return describe_moves(moves, {address: address for address in owned})


def _replicate(pool: NodePool, pairs: Sequence[Tuple[str, str]], seed: NodeState) -> None:
    view = read_node(seed.client).view
    for replica, master in pairs:
        host, port = split_address(master)
        master_node = view.by_address(host, port)
        if master_node is None:
            raise ClusterError(f'{master}: is not a member yet, so {replica} cannot replicate it; run again')
        host, port = split_address(replica)
        pool.get(host, port).call('CLUSTER', 'REPLICATE', master_node.id)


def _replicas_in_place(pool: NodePool, target: Target, seed: NodeState, wait_timeout: float,
                       deferred: Sequence[Tuple[str, str]] = ()) -> List[Tuple[str, str, str]]:
    """After the moves: every replica of the plan follows the master the plan gave it (the re-homed ones and the
    `deferred` replicas of the new masters included).

    Redis and Valkey move replicas on their own while slots move: a replica whose master is seen to lose its last
    slot (a new master's first slots, contested by a stale claim of their source) follows the claimant, and replica
    migration takes one to an orphaned master. What each replica says of itself is read, and each one elsewhere is
    sent back; the result names those the cluster had moved (replica, where it was, where the plan puts it)."""
    moved: List[Tuple[str, str, str]] = []
    planned_rehome = set(target.rehome) | set(deferred)
    for attempt in range(3):
        clients = [pool.get(*split_address(address)) for address in target.replicas]
        states, errors = read_each(clients)
        if errors:
            raise next(iter(errors.values()))
        pairs = []
        for address, client in zip(target.replicas, clients):
            state = states[client.address]
            master = state.view.nodes.get(state.myself.master_id) if state.myself.is_replica else None
            if master is None or master.address != target.replicas[address]:
                pairs.append((address, target.replicas[address]))
                if (address, target.replicas[address]) not in planned_rehome:
                    moved.append((address, master.address if master is not None else 'none', target.replicas[address]))
        if not pairs:
            break
        if attempt == 2:
            raise ClusterError('the replicas keep leaving the masters the plan gives them: ' +
                               ', '.join(f'{replica} -> {master}' for replica, master in pairs))
        _replicate(pool, pairs, seed)
        planned_rehome.update(pairs)
        wait_for_agreement([seed.client] + [client for client in clients if client.address != seed.address], wait_timeout)
    return moved


def converge(pool: NodePool, nodes: Sequence[Dict], replicas: int, settings: MigrationSettings, remove: Sequence[str] = (),
             prune: bool = False, join_role: str = 'auto', rebalance: bool = True, threshold: float = 2.0, method: str = 'auto',
             wait_timeout: float = 120.0, check_mode: bool = False, allow_master_without_replica: bool = False) -> Dict:
    """Make the cluster match the description; the result says what was (or, in check mode, would be) done."""
    started = time.monotonic()
    if replicas < 0:
        raise ClusterError(f'replicas must be 0 or more, got {replicas}')
    if join_role not in JOIN_ROLES:
        raise ClusterError(f'join_role must be one of {", ".join(JOIN_ROLES)}, got {join_role}')
    wanted = wanted_nodes(nodes)
    removed = []
    for text in remove:
        try:
            host, port = split_address(text)
            removed.append(format_address(resolve_ip(host), port))
        except (ValueError, NodeError) as exc:
            raise ClusterError(f'remove: {text}: {exc}') from exc
    both = sorted(set(removed) & {node.address for node in wanted})
    if both:
        raise ClusterError(f'{", ".join(both)}: both in nodes and in remove; a node either stays or leaves')
    states, unreachable = _probe(pool, wanted)
    warnings: List[str] = []
    if unreachable:
        listing = '; '.join(f'{address}: {reason}' for address, reason in unreachable.items())
        if not check_mode:
            raise ClusterError(f'cannot reach {len(unreachable)} node(s) of the description, no node was changed: {listing}')
        warnings.append(f'check mode: {listing}; the plan takes them for new, empty nodes')
    seed = _formed_seed(states)
    if seed is None:
        return _create(pool, wanted, replicas, states, unreachable, warnings, wait_timeout, check_mode, started)

    seed, member_states, member_unreachable = discover(pool, seed.myself.host, seed.myself.port)
    zones = {node.address: node.spec.zone for node in wanted}
    ghosts = ghost_nodes(seed.view)
    heirs: Dict[str, ClusterNode] = {}
    for ghost in ghosts:
        if ghost['slot_count'] and not ghost['replica']:
            raise ClusterError(ghost['detail'])
        if ghost['replica']:
            heirs[ghost['node']] = next(node for node in seed.view.members() if node.address == ghost['replica'])
    members = _members(seed.view, zones, heirs)
    wanted_addresses = {node.address for node in wanted}
    for address in sorted(set(members) & wanted_addresses & set(member_unreachable)):
        raise ClusterError(f'{address}: member of the cluster but unreachable ({member_unreachable[address]}); bring it back, or list it in '
                           'remove to take it out of the cluster')
    for node in wanted:
        if node.address not in members and node.address in states:
            _check_joining(node.address, states[node.address], seed)
    leaving = [address for address in removed if address in members]
    if prune:
        leaving += [address for address in members if address not in wanted_addresses and address not in leaving]
    target = plan_target(wanted, replicas, members, leaving, join_role, allow_master_without_replica)
    warnings += target.warnings
    if target.problems:
        raise ClusterError('; '.join(target.problems) + '; no node was changed')
    if not any(address not in target.leaving for address in members if address in wanted_addresses):
        raise ClusterError('no node of the description is a member of the cluster that stays; list at least one')
    if seed.address in target.leaving:
        seed = next(member_states[address] for address in members if address in wanted_addresses and address in member_states)

    steps: List[Dict] = []
    for ghost in ghosts:
        if ghost['replica']:
            steps.append(dict(step='takeover', node=ghost['replica'], ghost=ghost['node'], slot_count=ghost['slot_count']))
        steps.append(dict(step='forget', node=ghost['node'], reason='no address any more'))
    steps += [dict(step='join', node=address, role='master' if address in target.masters else 'replica') for address in target.joins]
    # A replica of a master that gets its first slots in this run attaches after the moves: attached to an empty
    # master, Redis and Valkey send it to another master while the first slots arrive (a stale claim of a source seen to
    # take the master's last slot back, then replica migration), as Redis 8.0 did in the scale scenario.
    early = [(replica, master) for replica, master in target.replicate if master in members and members[master].slots]
    late = [pair for pair in target.replicate if pair not in early]
    steps += [dict(step='replicate', node=replica, master=master) for replica, master in early]
    moves = _simulated_moves(target, members, threshold, rebalance)
    if moves:
        planned = [dict(source=move['source'], target=move['target'], slot_count=move['slot_count']) for move in moves]
        steps.append(dict(step='rebalance' if rebalance else 'drain', moves=planned))
    steps += [dict(step='replicate', node=replica, master=master) for replica, master in late + target.rehome]
    steps += [dict(step='forget', node=address, reason='removed', role='replica' if members[address].master else 'master')
              for address in target.leaving]
    after_slots = _slots_after(target, members, moves)
    before = render_layout(layout_of_view(seed.view, zones))
    result: Dict = dict(changed=bool(steps), steps=steps, masters=target.masters, warnings=warnings, method=method, not_serving=sorted(unreachable),
                        diff=dict(before=before, after=render_layout(layout_entries(target, after_slots))))
    if check_mode:
        result['duration'] = round(time.monotonic() - started, 3)
        return result

    try:
        for ghost in ghosts:
            if ghost['replica']:
                host, port = split_address(ghost['replica'])
                promote_replica(pool, host, port, 'takeover', wait_timeout, False)
            ensure_absent(pool, dict(host=seed.myself.host, port=seed.myself.port), None, wait_timeout, False, node_id=ghost['node'])
        if ghosts:
            seed, member_states, member_unreachable = discover(pool, seed.myself.host, seed.myself.port)
        live = [state for address, state in member_states.items()]
        if target.joins:
            meet_members(seed, [states[address] for address in target.joins], live, wait_timeout)
        if early:
            _replicate(pool, early, seed)
        everyone = [state.client for state in live] + [states[address].client for address in target.joins]
        if target.joins or early:
            wait_for_agreement(everyone, wait_timeout)
        moved = None
        if rebalance:
            # The nodes that become replicas after the moves are empty masters until then: they get no slot.
            moved = reshard(pool, seed.myself.host, seed.myself.port, 'rebalance', settings, weights=target.weights, threshold=threshold,
                            use_empty_masters=True, wait_timeout=wait_timeout, method=method, spare=[replica for replica, dummy in late])
        else:
            for address in [address for address, weight in target.weights.items() if weight == 0]:
                host, port = split_address(address)
                moved = reshard(pool, seed.myself.host, seed.myself.port, 'drain', settings, weights=target.weights,
                                source=dict(host=host, port=port), wait_timeout=wait_timeout, method=method)
        if moved is not None:
            result['changed'] = result['changed'] or moved['changed']
            result.update(moves=moved['moves'], moved_slots=moved.get('moved_slots', 0), moved_keys=moved.get('moved_keys', 0),
                          method=moved.get('method', method))
        for replica, was, master in _replicas_in_place(pool, target, seed, wait_timeout, late):
            warnings.append(f'{replica}: the cluster moved it to {was} while the slots moved (replica migration); put back under {master}')
            result['changed'] = True
        for address in target.leaving:
            host, port = split_address(address)
            ensure_absent(pool, dict(host=seed.myself.host, port=seed.myself.port), dict(host=host, port=port), wait_timeout, False)
        final = wait_for_agreement([states[node.address].client for node in wanted], wait_timeout)
    except (ClusterError, NodeError) as exc:
        raise ClusterError(f'{exc}; the run stopped part-way: run it again to complete it (the plan is made again from what it left)',
                           changed=True) from exc
    view = next(iter(final.values())).view
    result['cluster'] = describe_cluster(view, zones)
    result['diff']['after'] = render_layout(layout_of_view(view, zones))
    result['duration'] = round(time.monotonic() - started, 3)
    return result


def _slots_after(target: Target, members: Dict[str, Member], moves: Sequence[Dict]) -> Dict[str, List[SlotRange]]:
    owned = {address: set(ranges_to_slots(members[address].slots)) if address in members else set() for address in target.masters}
    for move in moves:
        slots = set(ranges_to_slots(parse_slot_ranges(move['slots'])))
        owned.setdefault(move['source'], set()).difference_update(slots)
        owned.setdefault(move['target'], set()).update(slots)
    return {address: slots_to_ranges(sorted(slots)) for address, slots in owned.items()}


def _create(pool: NodePool, wanted: Sequence[WantedNode], replicas: int, states: Dict[str, NodeState], unreachable: Dict[str, str],
            warnings: List[str], wait_timeout: float, check_mode: bool, started: float) -> Dict:
    """No formed cluster yet: the nodes form one (a creation cut short is completed)."""
    specs = [node.spec for node in wanted]
    if unreachable:
        validate_specs(specs, replicas)
        layout = plan_layout(specs, replicas)
        steps = [dict(step='create', nodes=len(specs), masters=len(layout.masters))]
        return dict(changed=True, steps=steps, masters=layout.masters, warnings=warnings + list(layout.warnings), not_serving=sorted(unreachable),
                    diff=dict(before='', after=''), duration=round(time.monotonic() - started, 3))
    created = create_cluster(pool, specs, replicas, wait_timeout, check_mode)
    # The action list grows with the square of the nodes (a MEET per pair: 4005 at 90 nodes); counts say the same.
    steps = [dict(step='create', nodes=len(specs), actions=dict(Counter(action['action'] for action in created['actions'])))] if created['actions'] else []
    result = dict(changed=created['changed'], steps=steps, warnings=warnings + created.pop('warnings', []), diff=created['diff'], not_serving=[],
                  cluster=created.get('cluster', []), duration=round(time.monotonic() - started, 3))
    result['masters'] = [entry['address'] for entry in result['cluster'] if entry.get('role') == 'master']
    return result
