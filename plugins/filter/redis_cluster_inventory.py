# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The inventory as the redis_cluster role and the playbooks describe the cluster to hashslot.redis.redis_cluster, and
that module's plan as text: in Python rather than in Jinja. Each filter is documented in its own YAML file."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import format_address, split_address


def redis_instance_nodes(instances, address, zone=''):
    """One host's instances as cluster nodes: {host, port[, zone]}; an instance's announce_ip and zone win."""
    if instances is None:
        instances = [{'port': 6379}]
    if not isinstance(instances, list):
        raise AnsibleFilterError(f'redis_instance_nodes expects the list redis_server_instances, got {type(instances).__name__}')
    nodes = []
    for instance in instances:
        node = {'host': instance.get('announce_ip') or str(address).strip(), 'port': int(instance.get('port', 6379))}
        node_zone = instance.get('zone') or zone
        if node_zone:
            node['zone'] = node_zone
        nodes.append(node)
    return nodes


def redis_node_zones(nodes):
    """host:port (IPv6 in brackets) -> zone, for the nodes that have one."""
    return {format_address(node['host'], int(node['port'])): node['zone'] for node in nodes if node.get('zone')}


def redis_instance_map(hosts, hostvars):
    """Which inventory host and which item of its redis_server_instances serve each cluster address, from each host's
    redis_cluster_host_nodes (set by the redis_cluster role's nodes entry point) and redis_server_instances."""
    entries = []
    for host in hosts:
        variables = hostvars[host]
        nodes = variables.get('redis_cluster_host_nodes')
        if nodes is None:
            raise AnsibleFilterError(f'{host}: has no redis_cluster_host_nodes; include the redis_cluster role\'s nodes entry point first')
        instances = variables.get('redis_server_instances') or [{'port': 6379}]
        for node, instance in zip(nodes, instances):
            entries.append({'address': format_address(node['host'], int(node['port'])), 'node': {'host': node['host'], 'port': int(node['port'])},
                            'inventory_host': host, 'instance': instance, 'zone': node.get('zone', '')})
    return entries


def redis_nodes_except(nodes, addresses):
    """The nodes whose host:port is not among `addresses`."""
    leaving = set()
    for address in addresses or []:
        try:
            leaving.add(format_address(*split_address(str(address))))
        except ValueError as exc:
            raise AnsibleFilterError(str(exc)) from exc
    return [node for node in nodes if format_address(node['host'], int(node['port'])) not in leaving]


def redis_instances_at(instance_map, addresses, host=None):
    """The entries of redis_instance_map serving `addresses` (on inventory host `host` when given)."""
    wanted = set(addresses or [])
    return [entry for entry in instance_map if entry['address'] in wanted and (host is None or entry['inventory_host'] == host)]


def redis_cluster_plan_text(result):
    """redis_cluster's steps (or a check-mode plan) as lines for a person."""
    lines = []
    for step in result.get('steps') or []:
        kind = step['step']
        if kind == 'create':
            lines.append(f"form the cluster from {step['nodes']} instances")
        elif kind == 'join':
            lines.append(f"join {step['node']} as a {step['role']}")
        elif kind == 'replicate':
            lines.append(f"make {step['node']} a replica of {step['master']}")
        elif kind == 'takeover':
            lines.append(f"promote {step['node']} in place of {step['ghost']} (no address any more, {step['slot_count']} slots)")
        elif kind in ('rebalance', 'drain'):
            for move in step['moves']:
                lines.append(f"move the {move['slot_count']} slots of {move['source']} to {move['target']}")
        elif kind == 'forget':
            lines.append(f"remove {step.get('role', 'node')} {step['node']} ({step['reason']})")
    if not lines:
        lines.append('nothing to join, nothing to move: every instance of the inventory is a member as described')
    for address in result.get('not_serving') or []:
        lines.append(f'{address} does not answer yet (check mode started nothing): planned as a new, empty instance')
    return lines


def redis_moves_text(result, check_mode=False, threshold=2):
    """redis_cluster_reshard's moves as lines: a total, then source -> target, slot count, ranges and keys per move."""
    moves = result.get('moves') or []
    total = sum(move['slot_count'] for move in moves)
    head = f"{'would move' if check_mode else 'moved'} {total} slot(s) in {len(moves)} move(s)"
    if not moves:
        head += f': every master is within {threshold}% of its share'
    return [head] + [f"{move['source']} -> {move['target']}: {move['slot_count']} slots ({','.join(move['slots'])}), {move['keys']} keys"
                     for move in moves]


class FilterModule:
    def filters(self):
        return {
            'redis_instance_nodes': redis_instance_nodes,
            'redis_node_zones': redis_node_zones,
            'redis_instance_map': redis_instance_map,
            'redis_nodes_except': redis_nodes_except,
            'redis_instances_at': redis_instances_at,
            'redis_cluster_plan_text': redis_cluster_plan_text,
            'redis_moves_text': redis_moves_text,
        }
