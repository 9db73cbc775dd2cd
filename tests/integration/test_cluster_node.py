"""redis_cluster_node: add and remove masters and replicas, remove a dead node, refuse what would lose data."""

from __future__ import annotations

import pytest

import subprocess
import time

from playbook import run_module
from servers import cluster_info, cluster_nodes_snapshot, raw_command


def node_ids(server):
    return {line.split()[0] for line in raw_command(server, 'CLUSTER', 'NODES').splitlines()}


@pytest.mark.per_lineage
def test_add_and_remove_master_and_replica(build, cluster, servers):
    new_master, new_replica = servers.start(2)
    before = cluster_nodes_snapshot(cluster)
    planned = run_module('redis_cluster_node', check=True, cluster=cluster[0].node, node=new_master.node, role='master')
    assert planned['changed'] is True and [action['action'] for action in planned['actions']] == ['meet']
    assert cluster_nodes_snapshot(cluster) == before

    added = run_module('redis_cluster_node', diff=True, cluster=cluster[0].node, node=new_master.node, role='master')
    assert not added.get('failed'), added
    assert added['changed'] is True
    new_master_id = raw_command(new_master, 'CLUSTER', 'MYID')
    for server in cluster:
        assert new_master_id in node_ids(server)
    # Returned only once the new master serves: a rebalance started now must not meet CLUSTERDOWN.
    assert cluster_info(new_master)['cluster_state'] == 'ok'
    assert run_module('redis_cluster_node', cluster=cluster[0].node, node=new_master.node, role='master')['changed'] is False

    replica = run_module('redis_cluster_node', cluster=cluster[0].node, node=dict(new_replica.node, zone='c'), master=new_master.node)
    assert not replica.get('failed'), replica
    role = raw_command(new_replica, 'ROLE')
    assert role[0] == 'slave' and int(role[2]) == new_master.port
    assert run_module('redis_cluster_node', cluster=cluster[0].node, node=new_replica.node, master=new_master.node)['changed'] is False
    check = subprocess.run([build.cli, '--cluster', 'check', cluster[0].address], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout

    refused = run_module('redis_cluster_node', cluster=cluster[0].node, node=new_master.node, state='absent')
    assert refused.get('failed') and 'has replicas' in refused['msg'] and new_master.address in refused['msg']

    replica_id = raw_command(new_replica, 'CLUSTER', 'MYID')
    removed = run_module('redis_cluster_node', cluster=cluster[0].node, node=new_replica.node, state='absent')
    assert not removed.get('failed'), removed
    removed_master = run_module('redis_cluster_node', cluster=cluster[0].node, node=new_master.node, state='absent')
    assert not removed_master.get('failed'), removed_master
    for server in cluster:
        assert not {replica_id, new_master_id} & node_ids(server)
    assert cluster_info(new_master)['cluster_known_nodes'] == '1'
    assert run_module('redis_cluster_node', cluster=cluster[0].node, node=new_master.node, state='absent')['changed'] is False
    # Still forgotten once gossip has had a few rounds.
    time.sleep(1)
    for server in cluster:
        assert not {replica_id, new_master_id} & node_ids(server)


@pytest.mark.one_build
def test_master_with_slots_is_refused(cluster):
    report = run_module('redis_cluster_info', node=cluster[0].node)
    master = next(node for node in report['nodes'] if node['role'] == 'master')
    before = cluster_nodes_snapshot(cluster)
    result = run_module('redis_cluster_node', cluster=cluster[0].node, node={'host': '127.0.0.1', 'port': master['port']}, state='absent')
    assert result.get('failed') and master['address'] in result['msg'] and 'drain it first' in result['msg']
    assert cluster_nodes_snapshot(cluster) == before


def test_remove_dead_replica(cluster):
    report = run_module('redis_cluster_info', node=cluster[0].node)
    replica = next(node for node in report['nodes'] if node['role'] == 'replica')
    dead = next(node for node in cluster if node.address == replica['address'])
    survivors = [node for node in cluster if node is not dead]
    dead.kill()
    # The module refuses while the dead node is not yet flagged fail by the cluster; wait for that.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(' fail ' in f' {line} '.replace(',', ' ') for line in raw_command(survivors[0], 'CLUSTER', 'NODES').splitlines() if replica['id'] in line):
            break
        time.sleep(0.2)
    result = run_module('redis_cluster_node', cluster=survivors[0].node, node={'host': '127.0.0.1', 'port': replica['port']}, state='absent')
    assert not result.get('failed'), result
    assert result['changed'] is True and not any(action['action'] == 'reset' for action in result['actions'])
    for server in survivors:
        assert replica['id'] not in node_ids(server)


@pytest.mark.one_build
def test_joining_node_with_keys_is_refused(cluster, servers):
    stranger = servers.start(1, **{'enable-debug-command': 'yes'})[0]
    raw_command(stranger, 'DEBUG', 'POPULATE', '3')
    before = cluster_nodes_snapshot(cluster + [stranger])
    result = run_module('redis_cluster_node', cluster=cluster[0].node, node=stranger.node)
    assert result.get('failed') and stranger.address in result['msg'] and 'holds 3 keys' in result['msg']
    assert cluster_nodes_snapshot(cluster + [stranger]) == before
