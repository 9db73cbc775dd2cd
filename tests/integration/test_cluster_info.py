"""redis_cluster_info: the report on a healthy cluster, and each problem it must find."""

from __future__ import annotations

import pytest

import os
import stat
import time
import xml.etree.ElementTree as ET

from playbook import run_module, run_tasks
from servers import raw_command

SVG = '{http://www.w3.org/2000/svg}'


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
    # The binary each node runs (a rolling restart keeps it).
    assert {os.path.realpath(node['executable']) for node in result['nodes']} == {os.path.realpath(cluster[0].build.server)}


def test_open_slot_and_missing_replica_are_reported(cluster, tmp_path):
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
    failing = run_module('redis_cluster_info', node=by_address[source['address']].node, fail_on_problems=True, report=str(tmp_path / 'failing.html'))
    assert failing.get('failed') and 'problem(s) in the cluster' in failing['msg'] and failing['problems']
    # A failing task still leaves its report, where the killed replica is marked and the problems listed.
    assert failing['changed'] is True and failing['report'] == str(tmp_path / 'failing.html')
    page = ET.parse(tmp_path / 'failing.html').getroot()
    lines = [''.join(text.itertext()) for text in page.iter(f'{SVG}text')]
    assert any(line.startswith(f'replica {replica["address"]} ') and line.endswith('[FAIL]') for line in lines), lines
    kinds_listed = [''.join(row[0].itertext()) for row in page.iter('tr')][1:]
    assert {'open_slot', 'node_failed', 'master_without_replica'} <= set(kinds_listed)


@pytest.mark.one_build
def test_replica_in_its_masters_zone_is_reported(cluster):
    zones = {node.address: 'same' for node in cluster}
    result = run_module('redis_cluster_info', node=cluster[0].node, zones=zones)
    assert 'replica_same_domain' in kinds(result)
    assert result['healthy'] is False


@pytest.mark.one_build
def test_report_is_written_once_and_predicted_in_check_mode(cluster, tmp_path):
    zones = {node.address: 'abc'[index % 3] for index, node in enumerate(cluster)}
    page, picture, misplaced = tmp_path / 'cluster.html', tmp_path / 'cluster.svg', tmp_path / 'missing' / 'cluster.html'
    params = dict(node=cluster[0].node, zones=zones, report=str(page))

    predicted = run_module('redis_cluster_info', check=True, **params)
    assert not predicted.get('failed'), predicted
    assert predicted['changed'] is True and predicted['report'] == str(page)
    assert os.listdir(tmp_path) == [], 'check mode wrote a file'

    # One playbook for the rest: a cluster is slow to form, and ansible-playbook slow to start.
    first, again, checked, as_svg, refused = run_tasks([
        {'hashslot.redis.redis_cluster_info': params},
        {'hashslot.redis.redis_cluster_info': params},
        {'hashslot.redis.redis_cluster_info': params, 'check_mode': True},
        {'hashslot.redis.redis_cluster_info': dict(params, report=str(picture), report_format='svg')},
        {'hashslot.redis.redis_cluster_info': dict(params, report=str(misplaced))},
    ]).results
    assert not first.get('failed'), first
    assert first['changed'] is True and first['report'] == str(page) and first['healthy'] is True
    assert again['changed'] is False, 'the same cluster state must render the same report'
    assert checked['changed'] is False
    assert stat.S_IMODE(page.stat().st_mode) == 0o644

    document = page.read_text(encoding='utf-8')
    root = ET.fromstring(document.encode('utf-8'))
    svg = root.find(f'body/{SVG}svg')
    assert svg is not None
    drawn = ' '.join(''.join(text.itertext()) for text in svg.iter(f'{SVG}text'))
    masters = [node for node in first['nodes'] if node['role'] == 'master']
    replicas = [node for node in first['nodes'] if node['role'] == 'replica']
    assert len(masters) == 3 and len(replicas) == 3
    for node in masters:
        assert f"master {node['address']}  id {node['id'][:8]}  zone {node['zone']}  {node['slot_count']} slots" in drawn
    for node in replicas:
        assert f"replica {node['address']}  id {node['id'][:8]}  zone {node['zone']}  link connected" in drawn
    assert 'coverage  16384 of 16384 slots owned' in drawn and 'No problems found' in document
    assert not [rect for rect in svg.iter(f'{SVG}rect') if rect.get('class') == 'uncovered']

    assert not as_svg.get('failed') and as_svg['changed'] is True, as_svg
    standalone = ET.fromstring(picture.read_bytes())
    assert standalone.tag == f'{SVG}svg'
    assert all(f"master {node['address']}" in ''.join(standalone.itertext()) for node in masters)

    assert refused.get('failed') and f'cannot write the cluster report to {misplaced}' in refused['msg'], refused
    assert sorted(os.listdir(tmp_path)) == ['cluster.html', 'cluster.svg']
