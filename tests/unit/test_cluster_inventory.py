# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filters that describe the inventory's cluster to redis_cluster and say its plan."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.hashslot.redis.plugins.filter.redis_cluster_inventory import (
    redis_cluster_plan_text, redis_instance_map, redis_instance_nodes, redis_instances_at, redis_moves_text, redis_node_zones,
    redis_nodes_except,
)


def test_instances_become_nodes_with_their_own_address_and_zone_first():
    instances = [{'port': 7000}, {'port': 7001, 'zone': 'b'}, {'port': 7002, 'announce_ip': '10.0.0.9'}]
    assert redis_instance_nodes(instances, ' 10.0.0.1 ', 'a') == [
        {'host': '10.0.0.1', 'port': 7000, 'zone': 'a'}, {'host': '10.0.0.1', 'port': 7001, 'zone': 'b'},
        {'host': '10.0.0.9', 'port': 7002, 'zone': 'a'}]
    assert redis_instance_nodes(None, '10.0.0.1') == [{'host': '10.0.0.1', 'port': 6379}]
    with pytest.raises(AnsibleFilterError):
        redis_instance_nodes('7000', '10.0.0.1')


def test_zones_and_addresses_bracket_ipv6():
    nodes = [{'host': 'fd00::1', 'port': 7000, 'zone': 'a'}, {'host': '10.0.0.1', 'port': 7001}]
    assert redis_node_zones(nodes) == {'[fd00::1]:7000': 'a'}
    assert redis_nodes_except(nodes, ['[fd00::1]:7000']) == [nodes[1]]
    with pytest.raises(AnsibleFilterError):
        redis_nodes_except(nodes, ['7000'])


def test_instance_map_pairs_nodes_with_inventory_items():
    hostvars = {'one': {'redis_cluster_host_nodes': [{'host': '10.0.0.1', 'port': 7000, 'zone': 'a'}],
                        'redis_server_instances': [{'port': 7000, 'zone': 'a'}]},
                'two': {'redis_cluster_host_nodes': [{'host': '10.0.0.2', 'port': 6379}]}}
    entries = redis_instance_map(['one', 'two'], hostvars)
    assert entries == [
        {'address': '10.0.0.1:7000', 'node': {'host': '10.0.0.1', 'port': 7000}, 'inventory_host': 'one', 'instance': {'port': 7000, 'zone': 'a'},
         'zone': 'a'},
        {'address': '10.0.0.2:6379', 'node': {'host': '10.0.0.2', 'port': 6379}, 'inventory_host': 'two', 'instance': {'port': 6379}, 'zone': ''}]
    assert redis_instances_at(entries, ['10.0.0.2:6379']) == entries[1:]
    assert redis_instances_at(entries, ['10.0.0.2:6379'], 'one') == []
    with pytest.raises(AnsibleFilterError):
        redis_instance_map(['three'], {'three': {}})


def test_plan_text_names_every_step():
    result = {'steps': [
        {'step': 'join', 'node': '10.0.0.7:6379', 'role': 'master'},
        {'step': 'replicate', 'node': '10.0.0.8:6379', 'master': '10.0.0.7:6379'},
        {'step': 'rebalance', 'moves': [{'source': '10.0.0.1:6379', 'target': '10.0.0.7:6379', 'slot_count': 1366}]},
        {'step': 'forget', 'node': '10.0.0.5:6379', 'reason': 'removed', 'role': 'replica'}], 'not_serving': ['10.0.0.8:6379']}
    assert redis_cluster_plan_text(result) == [
        'join 10.0.0.7:6379 as a master', 'make 10.0.0.8:6379 a replica of 10.0.0.7:6379',
        'move the 1366 slots of 10.0.0.1:6379 to 10.0.0.7:6379', 'remove replica 10.0.0.5:6379 (removed)',
        '10.0.0.8:6379 does not answer yet (check mode started nothing): planned as a new, empty instance']
    assert 'nothing to join' in redis_cluster_plan_text({'steps': []})[0]


def test_moves_text():
    moves = [{'source': 'a:1', 'target': 'b:1', 'slot_count': 2, 'slots': ['0-1'], 'keys': 5}]
    assert redis_moves_text({'moves': moves}, True) == ['would move 2 slot(s) in 1 move(s)', 'a:1 -> b:1: 2 slots (0-1), 5 keys']
    assert redis_moves_text({'moves': []}, False, 2) == ['moved 0 slot(s) in 0 move(s): every master is within 2% of its share']
