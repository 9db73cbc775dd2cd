"""redis_cluster_node: add and remove masters and replicas, remove a dead node, refuse what would lose data."""

from __future__ import annotations

import pytest

import os
import subprocess
import time

from playbook import run_module, run_tasks
from servers import cluster_info, cluster_nodes_snapshot, raw_command


def node_ids(server):
    return {line.split()[0] for line in raw_command(server, 'CLUSTER', 'NODES').splitlines()}


@pytest.mark.per_lineage
def test_add_and_remove_master_and_replica(build, cluster, servers):
    """Three playbooks (each ansible-playbook run costs seconds on a loaded machine): the plan in check mode; adding
    a master and its replica, each twice, and a refused removal; removing both, the master twice."""
    new_master, new_replica = servers.start(2)
    before = cluster_nodes_snapshot(cluster)
    planned = run_module('redis_cluster_node', check=True, cluster=cluster[0].node, node=new_master.node, role='master')
    assert planned['changed'] is True and [action['action'] for action in planned['actions']] == ['meet']
    assert cluster_nodes_snapshot(cluster) == before

    def node_task(**params):
        return {'hashslot.redis.redis_cluster_node': {'cluster': cluster[0].node, **params}}
    added, added_again, replica, replica_again, refused = run_tasks([
        node_task(node=new_master.node, role='master'),
        node_task(node=new_master.node, role='master'),
        node_task(node=dict(new_replica.node, zone='c'), master=new_master.node),
        node_task(node=new_replica.node, master=new_master.node),
        node_task(node=new_master.node, state='absent'),
    ], diff=True).results
    assert not added.get('failed'), added
    assert added['changed'] is True and added_again['changed'] is False, added_again
    new_master_id = raw_command(new_master, 'CLUSTER', 'MYID')
    for server in cluster:
        assert new_master_id in node_ids(server)
    # Returned only once the new master served (a rebalance started right after must not meet CLUSTERDOWN).
    assert cluster_info(new_master)['cluster_state'] == 'ok'
    assert not replica.get('failed'), replica
    role = raw_command(new_replica, 'ROLE')
    assert role[0] == 'slave' and int(role[2]) == new_master.port
    assert replica_again['changed'] is False, replica_again
    check = subprocess.run([build.cli, '--cluster', 'check', cluster[0].address], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout
    assert refused.get('failed') and 'has replicas' in refused['msg'] and new_master.address in refused['msg']

    replica_id = raw_command(new_replica, 'CLUSTER', 'MYID')
    removed, removed_master, removed_again = run_tasks([
        node_task(node=new_replica.node, state='absent'),
        node_task(node=new_master.node, state='absent'),
        node_task(node=new_master.node, state='absent'),
    ]).results
    assert not removed.get('failed'), removed
    assert not removed_master.get('failed'), removed_master
    assert removed_again['changed'] is False, removed_again
    for server in cluster:
        assert not {replica_id, new_master_id} & node_ids(server)
    assert cluster_info(new_master)['cluster_known_nodes'] == '1'
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
    (noaddr) and Redis never flags them fail: the ghost master keeps its slots unserved and its replica is not
    promoted (Valkey flags it and fails over). The report names both; forgetting the master's ghost is refused until
    its replica took over; then both ghosts are forgotten by id, and the two servers join again as replicas. Two
    playbooks: the report, then the repair (each ansible-playbook run costs seconds on a loaded machine)."""
    roles = {server.address: raw_command(server, 'ROLE') for server in cluster}
    master = next(server for server in cluster if roles[server.address][0] == 'master')
    heir = next(server for server in cluster if roles[server.address][0] == 'slave' and int(roles[server.address][2]) == master.port)
    replica = next(server for server in cluster if roles[server.address][0] == 'slave' and server is not heir)
    ghosts = {'master': restart_empty(master), 'replica': restart_empty(replica)}
    live = [server for server in cluster if server not in (master, replica)]
    time.sleep(4)  # longer than cluster-node-timeout (3 s)

    report = run_module('redis_cluster_info', node=heir.node)
    found = {problem['node']: problem for problem in report['problems'] if problem['kind'] == 'ghost_node'}
    assert set(found) == set(ghosts.values()), report['problems']
    assert found[ghosts['replica']]['slot_count'] == 0 and found[ghosts['replica']]['replica'] is None
    owns_slots = bool(found[ghosts['master']]['slot_count'])
    if owns_slots:
        # Redis 7.0 never flags the ghost fail: its slots stay unserved and its replica waits.
        assert found[ghosts['master']]['replica'] == heir.address and raw_command(heir, 'ROLE')[0] == 'slave'
    else:
        # Valkey 8.1 flags it fail (fail,noaddr) and its replica takes over by itself.
        assert build.name.startswith('valkey') and found[ghosts['master']]['replica'] is None
        deadline = time.monotonic() + 30
        while raw_command(heir, 'ROLE')[0] != 'master':
            assert time.monotonic() < deadline, f'{heir.address} did not take over from the ghost'
            time.sleep(0.2)

    def forget(ghost, **extra):
        return {'hashslot.redis.redis_cluster_node': {'cluster': heir.node, 'node_id': ghost, 'state': 'absent'}, **extra}
    takeover = [forget(ghosts['master']), {'hashslot.redis.redis_failover': {'node': heir.node, 'mode': 'takeover'}}] if owns_slots else []
    repair = run_tasks(takeover + [
        forget(ghosts['replica'][:12], check_mode=True),
        forget(ghosts['master']), forget(ghosts['master']), forget(ghosts['replica']), forget(ghosts['replica']),
        {'hashslot.redis.redis_cluster_node': {'cluster': heir.node, 'node': master.node, 'role': 'replica'}},
        {'hashslot.redis.redis_cluster_node': {'cluster': heir.node, 'node': replica.node, 'role': 'replica'}},
        # Every node runs on this one machine: the replicas are all in their master's failure domain.
        {'hashslot.redis.redis_cluster_info': {'node': heir.node, 'fail_on_problems': True, 'ignore_problems': ['replica_same_domain']}},
    ])
    results = repair.results
    if owns_slots:
        refused, promoted = results[:2]
        assert refused.get('failed') and 'slots' in refused['msg'] and heir.address in refused['msg'] and 'takeover' in refused['msg'], refused
        assert not promoted.get('failed'), promoted
        results = results[2:]
    planned, forgot_master, again_master, forgot_replica, again_replica, joined_master, joined_replica, final = results
    assert planned['changed'] is True and {action['node'] for action in planned['actions']} == {server.address for server in live}
    for forgotten, again in ((forgot_master, again_master), (forgot_replica, again_replica)):
        assert not forgotten.get('failed') and forgotten['changed'] is True, forgotten
        assert not again.get('failed') and again['changed'] is False, again
    for server in live:
        assert not node_ids(server) & set(ghosts.values()), server.address
    assert not joined_master.get('failed') and not joined_replica.get('failed'), (joined_master, joined_replica)
    assert not final.get('failed') and final['masters'] == 3 and final['replicas'] == 3, final.get('problems')
