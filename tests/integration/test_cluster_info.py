"""redis_cluster_info: the report on a healthy cluster, and each problem it must find."""

from __future__ import annotations

import time

from playbook import run_module
from servers import raw_command


def kinds(result):
    return {problem['kind'] for problem in result['problems']}


def test_healthy_cluster_reports_no_problem(cluster):
    zones = {node.address: 'abc'[index % 3] for index, node in enumerate(cluster)}
    result = run_module('redis_cluster_info', node=cluster[0].node, zones=zones, fail_on_problems=True)
    assert not result.get('failed'), result
    assert result['changed'] is False and result['healthy'] is True
    assert result['cluster_state'] == 'ok' and result['masters'] == 3 and result['replicas'] == 3
    assert sorted(node['address'] for node in result['nodes']) == sorted(node.address for node in cluster)
    assert all(node['zone'] for node in result['nodes'])
    assert all(isinstance(node['replication_offset'], int) for node in result['nodes'])


def test_open_slot_and_missing_replica_are_reported(cluster):
    report = run_module('redis_cluster_info', node=cluster[0].node)
    masters = [node for node in report['nodes'] if node['role'] == 'master']
    source, target = masters[0], masters[1]
    slot = int(source['slots'][0].split('-')[0])
    by_address = {node.address: node for node in cluster}
    raw_command(by_address[source['address']], 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', target['id'])
    # A replica of the third master dies: the master is left without a working replica.
    replica = next(node for node in report['nodes'] if node['role'] == 'replica' and node['master_id'] == masters[2]['id'])
    by_address[replica['address']].kill()

    deadline = time.monotonic() + 20
    while True:
        result = run_module('redis_cluster_info', node=cluster[0].node if cluster[0].address != replica['address'] else cluster[1].node)
        if {'open_slot', 'node_failed', 'master_without_replica'} <= kinds(result) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {'open_slot', 'node_unreachable', 'node_failed', 'master_without_replica'} <= kinds(result), result['problems']
    open_slot = next(problem for problem in result['problems'] if problem['kind'] == 'open_slot')
    assert open_slot['node'] == source['address'] and f'slot {slot} is migrating to {target["address"]}' in open_slot['detail']
    failing = run_module('redis_cluster_info', node=by_address[source['address']].node, fail_on_problems=True)
    assert failing.get('failed') and 'problem(s) in the cluster' in failing['msg'] and failing['problems']


def test_replica_in_its_masters_zone_is_reported(cluster):
    zones = {node.address: 'same' for node in cluster}
    result = run_module('redis_cluster_info', node=cluster[0].node, zones=zones)
    assert 'replica_same_domain' in kinds(result)
    assert result['healthy'] is False
