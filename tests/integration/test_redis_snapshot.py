"""redis_snapshot: a snapshot begun after the request, on disk, valid; check mode saves nothing."""

from __future__ import annotations

import pytest

import os
import subprocess

from playbook import run_module
from servers import raw_command


def persistence(server):
    return dict(line.split(':', 1) for line in raw_command(server, 'INFO', 'persistence').splitlines() if ':' in line)


def test_snapshot_written_and_valid(build, servers):
    server, = servers.start(1, cluster=False)
    for index in range(200):
        raw_command(server, 'SET', f'key:{index}', f'value-{index}')
    path = os.path.join(server.directory, 'dump.rdb')
    saves = int(persistence(server)['rdb_saves'])

    planned = run_module('redis_snapshot', check=True, node=server.node)
    assert planned['changed'] is True and planned['path'] == path
    assert int(persistence(server)['rdb_saves']) == saves and not os.path.exists(path)

    taken = run_module('redis_snapshot', node=server.node)
    assert not taken.get('failed'), taken
    assert taken['changed'] is True and taken['path'] == path and taken['duration'] >= 0
    assert taken['node_id'] is None and taken['slots'] == [] and taken['server'] == build.flavor, taken
    assert int(persistence(server)['rdb_saves']) == saves + 1
    check_rdb = os.path.join(os.path.dirname(build.server), os.path.basename(build.server).replace('-server', '-check-rdb'))
    checked = subprocess.run([check_rdb, path], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    again = run_module('redis_snapshot', node=server.node)
    assert int(persistence(server)['rdb_saves']) == saves + 2 and again['last_save_time'] >= taken['last_save_time']


@pytest.mark.one_build
def test_unreachable_node_named(build, servers):
    server, = servers.start(1, cluster=False)
    server.stop()
    result = run_module('redis_snapshot', node=server.node)
    assert result['failed'] is True and server.address in result['msg']


@pytest.mark.one_build
def test_cluster_node_says_which_slots_its_file_holds(build, servers):
    server, = servers.start(1)
    raw_command(server, 'CLUSTER', 'ADDSLOTS', *range(100, 200), 7000)
    taken = run_module('redis_snapshot', node=server.node)
    assert not taken.get('failed'), taken
    assert taken['node_id'] == raw_command(server, 'CLUSTER', 'MYID') and taken['slots'] == ['100-199', '7000'], taken
    assert taken['version'] and taken['server'] == build.flavor
