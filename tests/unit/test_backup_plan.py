"""A backup's manifest checks, its retention, and the restore's plan (which node loads which file), without servers."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.hashslot.redis.plugins.module_utils.backup import (
    MANIFEST, BackupError, check_rdb_path, load_manifest, prune, read_manifest, restore_plan_lines, restore_steps,
)
from ansible_collections.hashslot.redis.plugins.module_utils.cluster import ClusterError
from ansible_collections.hashslot.redis.plugins.module_utils.placement import NodeSpec
from ansible_collections.hashslot.redis.plugins.module_utils.restore import restore_layout


def manifest_of(*slot_lists, addresses=None):
    files = []
    for index, slots in enumerate(slot_lists):
        address = (addresses or [f'10.0.0.{index + 1}:6379' for index in range(len(slot_lists))])[index]
        files.append(dict(address=address, node_id=f'id{index}', role='master', slots=slots, file=f'h{index}-6379/dump.rdb',
                          sha256='0' * 64, size=0, keys=index, slot_counts={}, sample=[]))
    return dict(format=1, backup='20250101T000000Z', files=files, nodes=[])


THREE = manifest_of(['0-5460'], ['5461-10922'], ['10923-16383'])


def write(root, manifest, files=()):
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, MANIFEST), 'w') as handle:
        json.dump(manifest, handle)
    for name, data in files:
        os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
        with open(os.path.join(root, name), 'wb') as handle:
            handle.write(data)


def test_an_incomplete_or_overlapping_backup_is_refused_naming_the_slots(tmp_path):
    write(tmp_path / 'a', manifest_of(['0-5460'], ['5461-10922']))
    with pytest.raises(BackupError, match=r'incomplete: no file holds slot\(s\) 10923-16383 \(5461 in all\)'):
        load_manifest(str(tmp_path / 'a' / MANIFEST))
    write(tmp_path / 'b', manifest_of(['0-5460'], ['5460-10922'], ['10923-16383']))
    with pytest.raises(BackupError, match='slot 5460 is in both h0-6379/dump.rdb and h1-6379/dump.rdb'):
        load_manifest(str(tmp_path / 'b' / MANIFEST))
    with pytest.raises(BackupError, match='missing; not a backup made by backup.yml'):
        read_manifest(str(tmp_path / 'none'))


def test_a_file_changed_or_cut_short_is_refused_naming_it(tmp_path):
    import hashlib
    data = b'REDIS0010' + b'x' * 100
    manifest = json.loads(json.dumps(THREE))
    for entry in manifest['files']:
        entry.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    write(tmp_path, manifest, [(entry['file'], data) for entry in manifest['files']])
    assert len(read_manifest(str(tmp_path))['files']) == 3
    with open(tmp_path / 'h1-6379' / 'dump.rdb', 'wb') as handle:
        handle.write(data[:-1] + b'y')
    with pytest.raises(BackupError, match=r'h1-6379/dump.rdb: its sha256 is not the one in the manifest'):
        read_manifest(str(tmp_path))
    with open(tmp_path / 'h2-6379' / 'dump.rdb', 'wb') as handle:
        handle.write(data[:50])
    with pytest.raises(BackupError, match=r'h1-6379/dump.rdb|h2-6379/dump.rdb: 50 bytes, the manifest says'):
        read_manifest(str(tmp_path))


def test_retention_keeps_the_newest_complete_backups_and_drops_failed_older_runs(tmp_path):
    names = ['20250101T000000Z', '20250102T000000Z', '20250103T000000Z', '20250104T000000Z', '20250105T000000Z']
    for name in names:
        os.makedirs(tmp_path / name)
    for name in names[:2] + names[3:]:
        (tmp_path / name / MANIFEST).write_text('{}')
    os.makedirs(tmp_path / 'keep-me')
    assert prune(str(tmp_path), 0, str(tmp_path / names[-1])) == []
    planned = prune(str(tmp_path), 2, str(tmp_path / names[-1]), check_mode=True)
    assert planned == [str(tmp_path / name) for name in names[:3]] and all(os.path.isdir(path) for path in planned)
    assert prune(str(tmp_path), 2, str(tmp_path / names[-1])) == planned
    assert sorted(os.listdir(tmp_path)) == ['20250104T000000Z', '20250105T000000Z', 'keep-me']


def specs(count, zones='abc', host='10.0.1.'):
    return [NodeSpec(f'{host}{index + 1}', 6379, zones[index % len(zones)]) for index in range(count)]


def test_the_same_inventory_keeps_the_backed_up_masters_and_their_files():
    layout, assignment = restore_layout(THREE, specs(6, host='10.0.0.'), 1)
    assert {address: entry['file'] for address, entry in assignment.items()} == {
        '10.0.0.1:6379': 'h0-6379/dump.rdb', '10.0.0.2:6379': 'h1-6379/dump.rdb', '10.0.0.3:6379': 'h2-6379/dump.rdb'}
    assert sorted(layout.masters) == sorted(assignment)
    assert all(layout.replicas[replica][:-5] != replica[:-5] for replica in layout.replicas)


def test_other_nodes_take_the_files_in_slot_order_and_extra_masters_stay_empty():
    layout, assignment = restore_layout(THREE, specs(8, zones='abcd'), 1)
    assert len(layout.masters) == 4 and len(assignment) == 3
    by_file = sorted((int(entry['slots'][0].split('-')[0]), layout.masters.index(address)) for address, entry in assignment.items())
    assert [position for dummy, position in by_file] == sorted(position for dummy, position in by_file)
    # The same description gives the same plan.
    assert restore_layout(THREE, specs(8, zones='abcd'), 1)[1].keys() == assignment.keys()


def test_too_few_masters_for_the_backup_is_refused_before_anything():
    four = manifest_of(['0-4095'], ['4096-8191'], ['8192-12287'], ['12288-16383'])
    with pytest.raises(ClusterError, match='the backup has 4 masters; 6 nodes with replicas=1 make 3'):
        restore_layout(four, specs(6), 1)


def test_steps_say_what_each_host_does_and_the_plan_reads_as_text():
    plan = dict(placements=[dict(node='10.0.0.1:7000', file='h0-7000/dump.rdb', sha256='ab', size=3, keys=5, slots=['0-16383'],
                                 backup_node='10.9.9.9:7000', executable='/usr/bin/valkey-server', dir='/var/lib/redis/7000',
                                 dbfilename='dump.rdb', appenddirname='appendonlydir', appendfilename='appendonly.aof',
                                 **{'cluster-config-file': 'nodes-7000.conf'})],
                empty=[dict(node='10.0.0.1:7001', executable='/usr/bin/valkey-server', dir='/var/lib/redis/7001', dbfilename='dump.rdb',
                            appenddirname='appendonlydir', appendfilename='appendonly.aof', **{'cluster-config-file': 'nodes-7001.conf'})],
                masters=['10.0.0.1:7000'], replicas={'10.0.0.1:7001': '10.0.0.1:7000'}, not_empty=[])
    instances = [dict(address=f'10.0.0.1:{port}', node=dict(host='10.0.0.1', port=port), inventory_host='one', instance={'port': port})
                 for port in (7000, 7001)]
    steps = restore_steps(plan, instances, '/var/tmp/restore')
    assert [(step['address'], step['staged'], step['check_rdb']) for step in steps] == [
        ('10.0.0.1:7000', '/var/tmp/restore/7000.rdb', '/usr/bin/valkey-check-rdb'), ('10.0.0.1:7001', '', '')]
    assert steps[0]['restore']['staged'] == '/var/tmp/restore/7000.rdb' and steps[1]['restore']['dir'] == '/var/lib/redis/7001'
    assert restore_plan_lines(plan) == ['10.0.0.1:7000 loads h0-7000/dump.rdb (5 keys, slots 0-16383; saved by 10.9.9.9:7000)',
                                        '10.0.0.1:7001 replicates 10.0.0.1:7000']
    with pytest.raises(BackupError, match='10.0.0.1:7001: no instance of the inventory serves it'):
        restore_steps(plan, instances[:1], '/var/tmp/restore')
    assert check_rdb_path('/opt/redis-8.0.2/bin/redis-server') == '/opt/redis-8.0.2/bin/redis-check-rdb'
