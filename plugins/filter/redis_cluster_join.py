# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The redis_cluster role's decisions about a formed cluster, in Python rather than in Jinja: redis_ghost_nodes (the
nodes to take over and forget) and redis_join_split (which missing instances join as masters, which as replicas).

Each is documented in its own YAML file next to this one.
"""

from __future__ import annotations

import itertools
import math

from ansible.errors import AnsibleFilterError


def redis_ghost_nodes(views):
    """The ghost_node problems of every view (redis_cluster_info results, failed reads included), once per node id."""
    if not isinstance(views, list):
        raise AnsibleFilterError(f'redis_ghost_nodes expects a list of redis_cluster_info results, got {type(views).__name__}')
    ghosts = {}
    for view in views:
        for problem in (view or {}).get('problems') or []:
            if problem.get('kind') == 'ghost_node':
                ghosts.setdefault(problem['node'], problem)
    return [ghosts[node_id] for node_id in sorted(ghosts)]


def redis_join_split(missing, nodes, replicas, join_role='master'):
    """Which of the `missing` instances join as masters (new shards, given slots) and which as replicas.

    Every master that owns slots and has fewer than `replicas` working replicas (one lost its replica, or came back
    empty and was taken over) gets one of the missing instances first, in their order; the rest form new shards of
    a master and `replicas` replicas each. With join_role 'replica' all of them join as replicas.

    `master_of` names the master each of the first ones replicates (by host:port): the assignment with the fewest
    replicas in their master's zone, chosen over all of them at once (one at a time, the first could take the only
    master in another zone than the second's).
    """
    if not isinstance(missing, list) or not isinstance(nodes, list):
        raise AnsibleFilterError('redis_join_split expects the list of missing instances and the list of the cluster\'s nodes')
    replicas = int(replicas)
    if join_role != 'master':
        return {'masters': [], 'replicas': list(missing), 'master_of': {}}
    working = {node['id']: 0 for node in nodes
               if node.get('role') == 'master' and node.get('slot_count') and 'fail' not in (node.get('flags') or [])}
    for node in nodes:
        if node.get('role') == 'replica' and node.get('master_id') in working and 'fail' not in (node.get('flags') or []):
            working[node['master_id']] += 1
    by_id = {node['id']: node for node in nodes}
    openings = [by_id[node_id] for node_id, count in sorted(working.items()) for dummy in range(max(0, replicas - count))]
    fill, rest = list(missing[:len(openings)]), list(missing[len(openings):])
    masters = math.ceil(len(rest) / (replicas + 1))
    return {'masters': rest[:masters], 'replicas': fill + rest[masters:], 'master_of': _assign(fill, openings)}


def _assign(joining, openings):
    """host:port of each joining instance -> the master (host, port) it replicates: the pairing with the fewest
    replicas in their master's zone (every pairing tried while there are at most 5040, else in order)."""
    def zone(entry):
        return str(entry.get('zone') or entry.get('host') or '')

    def same(pairing):
        return sum(1 for instance, master in zip(joining, pairing) if zone(instance) == zone(master))
    small = math.perm(len(openings), len(joining)) <= 5040
    pairings = itertools.permutations(openings, len(joining)) if small else [openings[:len(joining)]]
    best = min(pairings, key=same, default=())
    return {f"{instance['host']}:{instance['port']}": {'host': master['host'], 'port': master['port']}
            for instance, master in zip(joining, best)}


class FilterModule:
    def filters(self):
        return {'redis_ghost_nodes': redis_ghost_nodes, 'redis_join_split': redis_join_split}
