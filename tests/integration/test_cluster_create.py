"""redis_cluster_create against real servers, through ansible-playbook."""

from __future__ import annotations

import pytest

import subprocess
import time

from playbook import run_module, run_tasks
from servers import cluster_info, cluster_nodes_snapshot, raw_command


def cluster_check(build, server) -> subprocess.CompletedProcess:
    return subprocess.run([build.cli, '--cluster', 'check', server.address], capture_output=True, text=True, timeout=60, check=False)


def test_create_check_mode_then_create_then_unchanged(build, servers):
    nodes = servers.start(6)
    spec = [dict(node.node, zone='abc'[index % 3]) for index, node in enumerate(nodes)]
    before = cluster_nodes_snapshot(nodes)

    planned = run_module('redis_cluster_create', check=True, diff=True, nodes=spec, replicas=1)
    assert not planned.get('failed'), planned
    assert planned['changed'] is True
    kinds = [action['action'] for action in planned['actions']]
    assert kinds.count('addslots') == 3 and kinds.count('replicate') == 3 and 'meet' in kinds
    assert planned['diff']['before'] != planned['diff']['after']
    assert cluster_nodes_snapshot(nodes) == before, 'check mode wrote to a node'

    created = run_module('redis_cluster_create', diff=True, nodes=spec, replicas=1)
    assert not created.get('failed'), created
    assert created['changed'] is True
    assert created['actions'] == planned['actions']
    assert created['diff']['after'] == planned['diff']['after']
    masters = [node for node in created['cluster'] if node['role'] == 'master']
    replicas = [node for node in created['cluster'] if node['role'] == 'replica']
    assert len(masters) == 3 and len(replicas) == 3
    assert sorted(node['slot_count'] for node in masters) == [5461, 5461, 5462]
    zone_of = {node['address']: node['zone'] for node in created['cluster']}
    for replica in replicas:
        assert zone_of[replica['address']] != zone_of[replica['master_address']]

    check = cluster_check(build, nodes[0])
    assert check.returncode == 0, check.stdout + check.stderr
    for node in nodes:
        info = cluster_info(node)
        assert info['cluster_state'] == 'ok' and info['cluster_known_nodes'] == '6'

    again = run_module('redis_cluster_create', nodes=spec, replicas=1)
    assert not again.get('failed'), again
    assert again['changed'] is False and again['actions'] == []
    check_again = run_module('redis_cluster_create', check=True, nodes=spec, replicas=1)
    assert check_again['changed'] is False


def test_interrupted_create_is_completed(build, servers):
    """Slots assigned on one master and two nodes met by hand, as a run killed half-way leaves them."""
    nodes = servers.start(6)
    spec = [node.node for node in nodes]
    plan = run_module('redis_cluster_create', check=True, nodes=spec)
    first = next(action for action in plan['actions'] if action['action'] == 'addslots')
    owner = next(node for node in nodes if node.address == first['node'])
    start, end = first['slots'][0].split('-')
    raw_command(owner, 'CLUSTER', 'ADDSLOTSRANGE', start, end)
    raw_command(owner, 'CLUSTER', 'MEET', '127.0.0.1', nodes[5].port)

    completed = run_module('redis_cluster_create', nodes=spec)
    assert not completed.get('failed'), completed
    assert completed['changed'] is True
    assert not any(action['action'] == 'addslots' and action['node'] == owner.address for action in completed['actions'])
    check = cluster_check(build, nodes[0])
    assert check.returncode == 0, check.stdout + check.stderr
    assert run_module('redis_cluster_create', nodes=spec)['changed'] is False


def _settled_pair(pair) -> bool:
    """Both nodes know each other by address and their config epochs no longer collide."""
    epochs = set()
    for text in cluster_nodes_snapshot(pair).values():
        lines = text.splitlines()
        if len(lines) != 2 or any(line.split()[1].startswith(':') for line in lines):
            return False
        epochs.add(tuple(sorted(line.split()[6] for line in lines)))
    return len(epochs) == 1 and len(set(next(iter(epochs)))) == 2


@pytest.mark.one_build
def test_bad_input_fails_naming_the_node_and_changes_nothing(build, servers):
    nodes = servers.start(6)
    standalone = servers.start(1, cluster=False)[0]
    with_keys = servers.start(1, **{'enable-debug-command': 'yes'})[0]
    # A node outside any cluster serves no slot, so SET is refused: DEBUG POPULATE writes anyway.
    raw_command(with_keys, 'DEBUG', 'POPULATE', '1')
    other_cluster = servers.start(2)
    raw_command(other_cluster[0], 'CLUSTER', 'MEET', '127.0.0.1', other_cluster[1].port)
    deadline = time.monotonic() + 10
    while not _settled_pair(other_cluster) and time.monotonic() < deadline:
        time.sleep(0.05)
    watched = nodes + [with_keys] + other_cluster
    before = cluster_nodes_snapshot(watched)
    spec = [node.node for node in nodes]
    dead_port = servers.ports.take()
    cases = {
        'unreachable': (spec[:5] + [{'host': '127.0.0.1', 'port': dead_port}], f'127.0.0.1:{dead_port}', 'unreachable'),
        'not cluster-enabled': (spec[:5] + [standalone.node], standalone.address, 'cluster support is disabled'),
        'holding keys': (spec[:5] + [with_keys.node], with_keys.address, 'holds 1 keys'),
        'in another cluster': (spec[:5] + [other_cluster[0].node], other_cluster[0].address, 'already in another cluster'),
        'listed twice': (spec + [spec[2]], nodes[2].address, 'listed twice'),
        'too few': (spec[:5], 'too few nodes', 'at least 3'),
    }
    run = run_tasks([{'hashslot.redis.redis_cluster_create': {'nodes': case[0], 'replicas': 1}} for case in cases.values()])
    for (name, (dummy, names, reason)), result in zip(cases.items(), run.results):
        assert result.get('failed'), (name, result)
        assert names in result['msg'] and reason in result['msg'], (name, result['msg'])
        assert result['changed'] is False
    assert cluster_nodes_snapshot(watched) == before
    assert raw_command(with_keys, 'DBSIZE') == 1


@pytest.mark.one_build
def test_zones_that_cannot_separate_warn(build, servers):
    nodes = servers.start(6)
    spec = [dict(node.node, zone='a' if index < 4 else 'b') for index, node in enumerate(nodes)]
    result = run_module('redis_cluster_create', nodes=spec)
    assert not result.get('failed'), result
    assert any('shares zone a' in warning for warning in result.get('warnings', [])), result.get('warnings')
