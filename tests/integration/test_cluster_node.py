"""redis_cluster_node: add and remove masters and replicas, remove a dead node, refuse what would lose data."""

from __future__ import annotations

import pytest

import os
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


def restart_empty(server) -> str:
    """Kill the server, empty its data directory and start it again at the same address: a new node id. Returns the
    old id, which the others keep without an address."""
    old_id = raw_command(server, 'CLUSTER', 'MYID')
    server.kill()
    for name in os.listdir(server.directory):
        if name != 'server.log':
            os.remove(os.path.join(server.directory, name))
    server.start()
    return old_id


@pytest.mark.per_lineage
def test_nodes_back_with_an_empty_data_directory_leave_ghosts_that_are_forgotten(build, cluster):
    """A replica and a master come back empty at their addresses. The others keep their old ids without an address
    (noaddr) and never flag them fail: the ghost master keeps its slots unserved and its replica is not promoted.
    The report names both; forgetting the master's ghost is refused until its replica took over; then both ghosts
    are forgotten by id, and the two servers join again as replicas."""
    roles = {server.address: raw_command(server, 'ROLE') for server in cluster}
    master = next(server for server in cluster if roles[server.address][0] == 'master')
    heir = next(server for server in cluster if roles[server.address][0] == 'slave' and int(roles[server.address][2]) == master.port)
    replica = next(server for server in cluster if roles[server.address][0] == 'slave' and server is not heir)
    ghosts = {'master': restart_empty(master), 'replica': restart_empty(replica)}
    live = [server for server in cluster if server not in (master, replica)]
    time.sleep(4)  # longer than cluster-node-timeout (3 s): the ghosts are still not flagged fail

    report = run_module('redis_cluster_info', node=heir.node)
    found = {problem['node']: problem for problem in report['problems'] if problem['kind'] == 'ghost_node'}
    assert set(found) == set(ghosts.values()), report['problems']
    assert found[ghosts['replica']]['slot_count'] == 0 and found[ghosts['replica']]['replica'] is None
    if found[ghosts['master']]['slot_count']:
        # Redis 7.0 never flags the ghost fail: its slots stay unserved and its replica waits.
        assert found[ghosts['master']]['replica'] == heir.address and raw_command(heir, 'ROLE')[0] == 'slave'
        refused = run_module('redis_cluster_node', cluster=heir.node, node_id=ghosts['master'], state='absent')
        assert refused.get('failed') and 'slots' in refused['msg'] and heir.address in refused['msg'] and 'takeover' in refused['msg'], refused
        promoted = run_module('redis_failover', node=heir.node, mode='takeover')
        assert not promoted.get('failed'), promoted
    else:
        # Valkey 8.1 flags it fail (fail,noaddr) and its replica takes over by itself.
        assert build.name.startswith('valkey') and found[ghosts['master']]['replica'] is None
        deadline = time.monotonic() + 30
        while raw_command(heir, 'ROLE')[0] != 'master':
            assert time.monotonic() < deadline, f'{heir.address} did not take over from the ghost'
            time.sleep(0.2)
    planned = run_module('redis_cluster_node', check=True, cluster=heir.node, node_id=ghosts['replica'][:12], state='absent')
    assert planned['changed'] is True and {action['node'] for action in planned['actions']} == {server.address for server in live}
    for ghost in ghosts.values():
        forgotten = run_module('redis_cluster_node', cluster=heir.node, node_id=ghost, state='absent')
        assert not forgotten.get('failed') and forgotten['changed'] is True, forgotten
        assert run_module('redis_cluster_node', cluster=heir.node, node_id=ghost, state='absent')['changed'] is False
    for server in live:
        assert not node_ids(server) & set(ghosts.values()), server.address
    for server in (master, replica):
        joined = run_module('redis_cluster_node', cluster=heir.node, node=server.node, role='replica')
        assert not joined.get('failed'), joined
    # Every node runs on this one machine: the replicas are all in their master's failure domain.
    report = run_module('redis_cluster_info', node=heir.node, fail_on_problems=True, ignore_problems=['replica_same_domain'])
    assert not report.get('failed') and report['masters'] == 3 and report['replicas'] == 3, report['problems']
