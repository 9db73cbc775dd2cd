# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where masters and replicas go: failure-domain aware placement.

A node's failure domain is its zone when it has one, else its host. Replicas are assigned with a
max-flow over (free node -> master) edges so that anti-affinity is found whenever it exists,
which a greedy pass (redis-cli's) misses on uneven inputs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ansible_collections.hashslot.redis.plugins.module_utils.topology import SlotRange, split_slots_evenly


@dataclass(frozen=True)
class NodeSpec:
    host: str
    port: int = 6379
    zone: Optional[str] = None

    @property
    def address(self) -> str:
        return f'[{self.host}]:{self.port}' if ':' in self.host else f'{self.host}:{self.port}'

    @property
    def domain(self) -> str:
        return f'zone {self.zone}' if self.zone else f'host {self.host}'


@dataclass
class Layout:
    masters: List[str]
    slots: Dict[str, List[SlotRange]]
    replicas: Dict[str, str]
    warnings: List[str] = field(default_factory=list)

    def replicas_of(self, master: str) -> List[str]:
        return [replica for replica, owner in self.replicas.items() if owner == master]


class _FlowNetwork:
    """Edmonds-Karp max flow on a small graph; node keys are any hashable."""

    def __init__(self) -> None:
        self.capacity: Dict[object, Dict[object, int]] = {}

    def add_edge(self, source: object, target: object, capacity: int) -> None:
        self.capacity.setdefault(source, {})
        self.capacity.setdefault(target, {})
        self.capacity[source][target] = self.capacity[source].get(target, 0) + capacity
        self.capacity[target].setdefault(source, 0)

    def max_flow(self, source: object, sink: object) -> Dict[object, Dict[object, int]]:
        flow: Dict[object, Dict[object, int]] = {node: {} for node in self.capacity}
        if source not in self.capacity or sink not in self.capacity:
            return flow
        while True:
            parents: Dict[object, object] = {source: source}
            queue = deque([source])
            while queue and sink not in parents:
                current = queue.popleft()
                for neighbour, capacity in self.capacity[current].items():
                    if neighbour not in parents and capacity - flow[current].get(neighbour, 0) > 0:
                        parents[neighbour] = current
                        queue.append(neighbour)
            if sink not in parents:
                return flow
            bottleneck = None
            node = sink
            while node != source:
                parent = parents[node]
                residual = self.capacity[parent][node] - flow[parent].get(node, 0)
                bottleneck = residual if bottleneck is None else min(bottleneck, residual)
                node = parent
            node = sink
            while node != source:
                parent = parents[node]
                flow[parent][node] = flow[parent].get(node, 0) + bottleneck
                flow[node][parent] = flow[node].get(parent, 0) - bottleneck
                node = parent


def _master_bounds(counts: Dict[str, int], total: int, masters: int, replicas: int) -> Dict[str, int]:
    """Most masters a domain may take and still leave every master replicas from other domains.

    A domain d with c_d nodes and m_d masters needs r * m_d replicas from the non-masters outside
    it: (total - c_d) - (masters - m_d) >= r * m_d, i.e. (r - 1) * m_d <= total - c_d - masters.
    """
    bounds: Dict[str, int] = {}
    for domain, count in counts.items():
        room = total - count - masters
        if replicas >= 2 and room >= 0:
            bounds[domain] = min(count, room // (replicas - 1))
        else:
            bounds[domain] = count
    return bounds


def choose_masters(nodes: Sequence[NodeSpec], master_count: int, replicas: int,
                   fixed_masters: Iterable[str] = (), excluded: Iterable[str] = ()) -> List[str]:
    """Pick master addresses spread over failure domains, then over hosts inside a domain."""
    fixed = list(fixed_masters)
    excluded_set = set(excluded) | set(fixed)
    counts: Dict[str, int] = {}
    for node in nodes:
        counts[node.domain] = counts.get(node.domain, 0) + 1
    bounds = _master_bounds(counts, len(nodes), master_count, replicas)
    by_address = {node.address: node for node in nodes}
    taken: Dict[str, int] = {domain: 0 for domain in counts}
    host_taken: Dict[str, int] = {}
    for address in fixed:
        node = by_address[address]
        taken[node.domain] += 1
        host_taken[node.host] = host_taken.get(node.host, 0) + 1
    candidates: Dict[str, List[NodeSpec]] = {domain: [] for domain in counts}
    for node in nodes:
        if node.address not in excluded_set:
            candidates[node.domain].append(node)
    chosen = list(fixed)
    for respect_bounds in (True, False):
        while len(chosen) < master_count:
            open_domains = [domain for domain in counts
                            if candidates[domain] and (not respect_bounds or taken[domain] < bounds[domain])]
            if not open_domains:
                break
            domain = min(open_domains, key=lambda name: (taken[name], -counts[name], name))
            pick = min(candidates[domain], key=lambda node: host_taken.get(node.host, 0))
            candidates[domain].remove(pick)
            chosen.append(pick.address)
            taken[domain] += 1
            host_taken[pick.host] = host_taken.get(pick.host, 0) + 1
    order = {node.address: index for index, node in enumerate(nodes)}
    return sorted(chosen, key=lambda address: order[address])


def _assign_with_flow(masters: List[str], free: List[NodeSpec], demand: Dict[str, int], by_address: Dict[str, NodeSpec],
                      sibling_domains: Dict[str, set], spread_siblings: bool) -> Dict[str, str]:
    network = _FlowNetwork()
    source, sink = ('source',), ('sink',)
    # add_edge sums capacities, so the (master, domain) -> master edge is added once, not once per node of the domain.
    domain_slots = set()
    for node in free:
        network.add_edge(source, ('node', node.address), 1)
        for master in masters:
            master_domain = by_address[master].domain
            if node.domain == master_domain:
                continue
            if spread_siblings and node.domain in sibling_domains[master]:
                continue
            network.add_edge(('node', node.address), ('slot', master, node.domain), 1)
            if (master, node.domain) not in domain_slots:
                domain_slots.add((master, node.domain))
                network.add_edge(('slot', master, node.domain), ('master', master), 1 if spread_siblings else len(free))
    for master in masters:
        if demand[master] > 0:
            network.add_edge(('master', master), sink, demand[master])
    flow = network.max_flow(source, sink)
    assignment: Dict[str, str] = {}
    for node in free:
        for target, amount in flow.get(('node', node.address), {}).items():
            if amount > 0:
                assignment[node.address] = target[1]
    return assignment


def plan_layout(nodes: Sequence[NodeSpec], replicas: int, fixed_masters: Iterable[str] = (),
                fixed_replicas: Optional[Dict[str, str]] = None, master_count: Optional[int] = None) -> Layout:
    """Masters, their slot ranges and each replica's master for `nodes`.

    fixed_masters: addresses that already own slots and stay masters.
    fixed_replicas: replica address -> master address already in place; kept as they are.
    """
    fixed_replicas = dict(fixed_replicas or {})
    fixed_master_list = list(dict.fromkeys(fixed_masters))
    if master_count is None:
        master_count = max(len(nodes) // (replicas + 1), len(fixed_master_list))
    by_address = {node.address: node for node in nodes}
    masters = choose_masters(nodes, master_count, replicas, fixed_master_list, excluded=fixed_replicas)
    even_split = split_slots_evenly(len(masters))
    layout = Layout(masters=masters, slots={master: [even_split[index]] for index, master in enumerate(masters)}, replicas=dict(fixed_replicas))

    free = [node for node in nodes if node.address not in masters and node.address not in fixed_replicas]
    sibling_domains: Dict[str, set] = {master: set() for master in masters}
    have: Dict[str, int] = {master: 0 for master in masters}
    for replica, master in fixed_replicas.items():
        if master in have:
            have[master] += 1
            sibling_domains[master].add(by_address[replica].domain)
    demand = {master: max(0, replicas - have[master]) for master in masters}

    assignment: Dict[str, str] = {}
    for spread_siblings in (True, False):
        assignment = _assign_with_flow(masters, free, demand, by_address, sibling_domains, spread_siblings)
        if len(assignment) == sum(demand.values()):
            break
    for replica, master in assignment.items():
        have[master] += 1
    remaining = [node for node in free if node.address not in assignment]

    def preference(node: NodeSpec, master: str) -> Tuple:
        master_node = by_address[master]
        siblings = [by_address[replica].domain for replica, owner in {**layout.replicas, **assignment}.items() if owner == master]
        # A sibling's domain weighs more than the master's host, which only matters for a host that spans zones.
        return (node.domain == master_node.domain, node.domain in siblings, node.host == master_node.host, have[master], masters.index(master))

    # Replicas still missing (anti-affinity impossible for them), then extra nodes, fewest replicas first.
    for node in list(remaining):
        needy = [master for master in masters if have[master] < replicas]
        pool = needy or masters
        master = min(pool, key=lambda candidate: preference(node, candidate))
        assignment[node.address] = master
        have[master] += 1
    layout.replicas.update(assignment)

    for replica, master in sorted(layout.replicas.items()):
        if by_address[replica].domain == by_address[master].domain:
            layout.warnings.append(
                f'replica {replica} shares {by_address[master].domain} with its master {master}: '
                'the nodes given do not allow every replica a failure domain of its own')
    return layout
