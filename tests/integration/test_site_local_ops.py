"""The operations playbooks (failover, rebalance, rolling restart, backup, bad input) as operators run them.

On the local inventory's cluster (local_site.py: inventories/local, six instances on ports 7000-7005 of this
machine, three zones, Debian's Redis 7.0.15, daemons), deployed once for this file and test_site_local.py, which
runs first. Scale out/in and the upgrades (Redis 7.0 -> Valkey 8.1, re-runs, refusals) run across hosts in the
molecule scenarios `scale` and `default` (systemd containers).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from load import AckLedger
from local_site import INVENTORY, PORTS, ZONES, teardown
from servers import port_command, port_serving
from playbook import run_playbook


serving = port_serving
raw = port_command


def info(port: int, section: str = 'server'):
    return dict(line.split(':', 1) for line in raw(port, 'INFO', section).splitlines() if ':' in line)


def role(port: int) -> str:
    return raw(port, 'ROLE')[0]


def masters(ports=tuple(PORTS)):
    return sorted(port for port in ports if role(port) == 'master' and owned_slots(port, port) > 0)


def owned_slots(observer: int, port: int) -> int:
    """Slots `port` owns as `observer` sees it."""
    for line in raw(observer, 'CLUSTER', 'NODES').splitlines():
        fields = line.split()
        if fields[1].split('@')[0].endswith(f':{port}'):
            total = 0
            for item in fields[8:]:
                if not item.startswith('['):
                    start, dummy, end = item.partition('-')
                    total += int(end or start) - int(start) + 1
            return total
    return 0


def topology(ports=tuple(PORTS)):
    """Each node's view of roles and slots (ids, flags and slot ranges; no timing fields)."""
    views = {}
    for port in ports:
        lines = []
        for line in raw(port, 'CLUSTER', 'NODES').splitlines():
            fields = line.split()
            lines.append((fields[0], fields[2].replace('myself,', ''), fields[3], tuple(fields[8:])))
        views[port] = sorted(lines)
    return views


def fill(count: int, prefix: str) -> None:
    client = redis.RedisCluster(host='127.0.0.1', port=PORTS[0], decode_responses=True)
    try:
        pipe = client.pipeline()
        for number in range(count):
            pipe.set(f'{prefix}:{number}', number)
        pipe.execute()
    finally:
        client.close()


def play(name: str, extra_vars=None, check: bool = False, diff: bool = False, tags=None):
    return run_playbook(f'playbooks/{name}.yml', INVENTORY, extra_vars=extra_vars, check=check, diff=diff, tags=tags)


@pytest.fixture(scope='module')
def deployed(local_site):
    return local_site


def test_bad_input_fails_before_anything_changes(deployed):
    before = topology()
    cases = [
        ('failover', {}, 'redis_failover_node=host:port'),
        ('failover', {'redis_failover_node': '127.0.0.1:7001', 'redis_failover_master': '127.0.0.1:7000'}, 'exactly one of them'),
        ('failover', {'redis_failover_node': '127.0.0.1:7001', 'redis_failover_mode': 'fast'}, 'redis_failover_mode must be one of'),
        ('failover', {'redis_failover_node': '127.0.0.1:7099'}, '127.0.0.1:7099 is not a member of the cluster'),
        ('scale_in', {}, 'missing required arguments: redis_scale_in_nodes'),
        ('scale_in', {'redis_scale_in_nodes': ['7001']}, 'redis_scale_in_nodes must list the instances to remove as host:port'),
        ('scale_in', {'redis_scale_in_nodes': [f'127.0.0.1:{masters()[0]}']}, 'a cluster needs at least 3'),
        ('rolling_restart', {'redis_rolling_nodes': ['127.0.0.1:7099']}, 'which no host of the inventory runs'),
        ('rebalance', {'redis_rebalance_weights': {'127.0.0.1:7000': -1}}, 'redis_rebalance_weights maps masters'),
        ('upgrade', {'redis_install_flavor': 'valkey'}, 'missing required arguments: redis_install_version'),
        # As AWX surveys send them: a question left blank is '' or null and means "not given"; lists come as text.
        ('failover', {'redis_failover_node': '', 'redis_failover_master': None}, 'redis_failover_node=host:port'),
        ('failover', {'redis_failover_node': '127.0.0.1:7099', 'redis_failover_master': '', 'redis_failover_mode': None,
                      'redis_failover_timeout': ''}, '127.0.0.1:7099 is not a member of the cluster'),
        ('scale_in', {'redis_scale_in_nodes': ''}, 'redis_scale_in_nodes must list the instances to remove as host:port'),
        ('scale_in', {'redis_scale_in_nodes': None, 'redis_scale_in_timeout': ''}, 'redis_scale_in_nodes must list the instances to remove as host:port'),
        ('scale_in', {'redis_scale_in_nodes': '127.0.0.1:7000, 7001'}, 'redis_scale_in_nodes must list the instances to remove as host:port'),
        ('scale_in', {'redis_scale_in_nodes': f' 127.0.0.1:{masters()[0]},\n', 'redis_scale_in_stop': ''}, 'a cluster needs at least 3'),
        ('rolling_restart', {'redis_rolling_nodes': '127.0.0.1:7000,127.0.0.1:7099', 'redis_rolling_failback': None},
         'redis_rolling_nodes names 127.0.0.1:7099, which no host of the inventory runs'),
        ('rolling_restart', {'redis_rolling_nodes': '127.0.0.1:7000 7001'}, 'redis_rolling_nodes must list host:port addresses'),
        ('rebalance', {'redis_rebalance_weights': {'127.0.0.1:7000': -1}, 'redis_rebalance_threshold': ''}, 'redis_rebalance_weights maps masters'),
        ('upgrade', {'redis_install_flavor': 'valkey', 'redis_install_version': None, 'redis_rolling_timeout': ''}, 'name the version to upgrade to'),
        ('upgrade', {'redis_install_version': ' '}, 'name the version to upgrade to'),
    ]
    # Each case fails in its validation, before it connects to anything: three at a time.
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda case: play(case[0], case[1]), cases))
    for (name, extra_vars, message), result in zip(cases, results):
        assert result.returncode != 0, f'{name} {extra_vars} succeeded'
        assert message in result.output, f'{name} {extra_vars}: {result.output[-2000:]}'
        assert result.total('changed') == 0, (name, result.changed_tasks())
    assert topology() == before


def test_failover_promotes_the_named_replica(deployed):
    replica = next(port for port in PORTS if role(port) == 'slave')
    old_master = int(raw(replica, 'ROLE')[2])
    before = topology()
    # The other question left blank, as AWX sends it: not given.
    planned = play('failover', {'redis_failover_node': f'127.0.0.1:{replica}', 'redis_failover_master': ''}, check=True)
    assert planned.returncode == 0, planned.output[-3000:]
    assert planned.total('changed') == 1 and f'would promote 127.0.0.1:{replica} in place of 127.0.0.1:{old_master}' in planned.output
    assert topology() == before

    promoted = play('failover', {'redis_failover_node': f'127.0.0.1:{replica}'})
    assert promoted.returncode == 0, promoted.output[-3000:]
    assert promoted.total('changed') == 1
    assert role(replica) == 'master' and role(old_master) == 'slave' and int(raw(old_master, 'ROLE')[2]) == replica

    again = play('failover', {'redis_failover_node': f'127.0.0.1:{replica}'})
    assert again.returncode == 0 and again.total('changed') == 0, again.changed_tasks()
    assert 'already is a master: nothing to do' in again.output

    # Named by its master: the playbook picks the master's replica (another zone) and gives the slots back.
    back = play('failover', {'redis_failover_master': f'127.0.0.1:{replica}', 'redis_failover_node': None, 'redis_failover_mode': None,
                             'redis_failover_timeout': ''})
    assert back.returncode == 0, back.output[-3000:]
    assert f'promoted 127.0.0.1:{old_master} in place of 127.0.0.1:{replica}' in back.output
    assert role(old_master) == 'master' and role(replica) == 'slave'
    assert ZONES[old_master] != ZONES[replica]


def test_rebalance_check_mode_plans_and_writes_nothing(deployed):
    fill(2000, 'rebalance')
    master = masters()[0]
    before = topology()
    planned = play('rebalance', {'redis_rebalance_weights': {f'127.0.0.1:{master}': 2}}, check=True, diff=True)
    assert planned.returncode == 0, planned.output[-3000:]
    assert planned.total('changed') == 1
    assert 'would move ' in planned.output and f'-> 127.0.0.1:{master}' in planned.output
    assert topology() == before

    balanced = play('rebalance')
    assert balanced.returncode == 0, balanced.output[-3000:]
    assert balanced.total('changed') == 0 and 'every master is within 2% of its share' in balanced.output
    assert topology() == before


def test_rolling_restart_check_mode_plans_and_restarts_nothing(deployed):
    """The whole rolling restart under a write ledger, with failback, is molecule/default's (test_upgrade.py: upgrade.yml
    restarts through the same tasks/rolling_restart.yml on six systemd hosts); here the plan in check mode."""
    run_ids = {port: info(port)['run_id'] for port in PORTS}
    planned = play('rolling_restart', {'redis_rolling_failback': True}, check=True)
    assert planned.returncode == 0, planned.output[-3000:]
    assert planned.total('changed') == 1 and '6 instance(s) to restart one at a time' in planned.output
    assert 'then failed back' in planned.output
    assert {port: info(port)['run_id'] for port in PORTS} == run_ids


def test_rolling_restart_of_instances_named_in_text(deployed):
    """redis_rolling_nodes as an AWX text answer: host:port items separated by commas or whitespace, blanks dropped."""
    replicas = sorted(port for port in PORTS if role(port) == 'slave')
    run_ids = {port: info(port)['run_id'] for port in PORTS}
    planned = play('rolling_restart', {'redis_rolling_nodes': f'127.0.0.1:{replicas[0]}, ,\n127.0.0.1:{replicas[1]} ',
                                       'redis_rolling_failback': '', 'redis_rolling_timeout': None}, check=True)
    assert planned.returncode == 0, planned.output[-3000:]
    assert f'2 instance(s) to restart one at a time: 127.0.0.1:{replicas[0]} (replica); 127.0.0.1:{replicas[1]} (replica)' in planned.output
    assert {port: info(port)['run_id'] for port in PORTS} == run_ids

    result = play('rolling_restart', {'redis_rolling_nodes': f'127.0.0.1:{replicas[0]},', 'redis_rolling_ignore_problems': None})
    assert result.returncode == 0, result.output[-3000:]
    assert [port for port in PORTS if info(port)['run_id'] != run_ids[port]] == [replicas[0]]


def test_backup_fetches_snapshots_redis_check_rdb_accepts(deployed, tmp_path):
    planned = play('backup', {'redis_backup_dir': str(tmp_path / 'planned')}, check=True)
    assert planned.returncode == 0, planned.output[-3000:]
    assert not (tmp_path / 'planned').exists()
    # Left blank (AWX): the default, a relative backups/ directory.
    blank = play('backup', {'redis_backup_dir': '', 'redis_backup_all_nodes': None, 'redis_backup_timeout': ''}, check=True)
    assert blank.returncode == 0, blank.output[-3000:]
    default_root = re.search(r'into (/\S+/backups)/[0-9]{8}T[0-9]{6}Z', blank.output)
    assert default_root and not os.path.exists(default_root.group(1)), blank.output[-3000:]

    # Retention: an older complete backup and an incomplete one (no manifest: a run that failed) beside this run's.
    for name, complete in (('20200101T000000Z', True), ('20200102T000000Z', False)):
        os.makedirs(tmp_path / 'backups' / name)
        if complete:
            (tmp_path / 'backups' / name / 'manifest.json').write_text('{}')
    saves = {port: int(info(port, 'persistence')['rdb_saves']) for port in masters()}
    result = play('backup', {'redis_backup_dir': str(tmp_path / 'backups'), 'redis_backup_keep': 1})
    assert result.returncode == 0, result.output[-3000:]
    (stamp,) = os.listdir(tmp_path / 'backups')
    root = tmp_path / 'backups' / stamp
    assert str(root) in result.output and '20200101T000000Z' in result.output
    # Readable by the owner only: every key and value of the cluster is in there.
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    for directory, folders, files in os.walk(root):
        assert all(stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode) == 0o700 for name in folders)
        assert all(stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode) == 0o600 for name in files), files
    manifest = json.loads((root / 'manifest.json').read_text())
    by_address = {entry['address']: entry for entry in manifest['files']}
    assert sorted(by_address) == [f'127.0.0.1:{port}' for port in sorted(saves)]
    for port in saves:
        entry = by_address[f'127.0.0.1:{port}']
        assert entry['file'] == f'localhost-{port}/dump.rdb' and entry['node_id'] == raw(port, 'CLUSTER', 'MYID')
        assert entry['sha256'] == hashlib.sha256((root / entry['file']).read_bytes()).hexdigest()
        # Nothing writes to the cluster here: the file's counts are the node's.
        assert entry['keys'] == int(raw(port, 'DBSIZE')) and entry['version'] == info(port)['redis_version']
        for slot, count in list(entry['slot_counts'].items())[:50]:
            assert int(raw(port, 'CLUSTER', 'COUNTKEYSINSLOT', slot)) == count
    for port, count in saves.items():
        assert int(info(port, 'persistence')['rdb_saves']) > count, f'{port} did not save'
        folder = root / f'localhost-{port}'
        assert sorted(os.listdir(folder)) == ['dump.rdb', f'nodes-{port}.conf']
        check = subprocess.run(['redis-check-rdb', str(folder / 'dump.rdb')], capture_output=True, text=True, timeout=60, check=False)
        assert check.returncode == 0 and 'RDB looks OK' in check.stdout, check.stdout + check.stderr
        assert 'myself,master' in (folder / f'nodes-{port}.conf').read_text()
    layout = json.loads((root / 'cluster.json').read_text())
    assert len(layout['nodes']) == 6 and len(layout['snapshots']) == 3


def _values(keys, port=PORTS[0]):
    client = redis.RedisCluster(host='127.0.0.1', port=port, decode_responses=True)
    try:
        pipe = client.pipeline()
        for key in keys:
            pipe.get(key)
        return dict(zip(keys, pipe.execute()))
    finally:
        client.close()


def test_restore_drill_every_key_acknowledged_before_the_backup_comes_back(deployed, tmp_path):
    """Back up under writes, destroy the cluster (teardown), restore it with restore.yml, and compare; then restore the
    same backup onto six other ports (another inventory's instances) and compare again."""
    fill(5000, 'drill')
    ledger = AckLedger([f'127.0.0.1:{port}' for port in PORTS], max_seconds=120, prefix='drill-ledger').start()
    ledger.wait_for_writes(200)
    before = dict(ledger.acknowledged)
    backup = play('backup', {'redis_backup_dir': str(tmp_path / 'backups')})
    ledger.stop()
    assert backup.returncode == 0, backup.output[-3000:]
    (stamp,) = os.listdir(tmp_path / 'backups')
    root = tmp_path / 'backups' / stamp
    expected = dict(before, **{f'drill:{number}': str(number) for number in range(5000)})

    refused = play('restore', {'redis_restore_dir': str(root)})
    assert refused.returncode != 0 and 'not empty' in refused.output and 'redis_restore_force' in refused.output, refused.output[-3000:]
    planned = play('restore', {'redis_restore_dir': str(root), 'redis_restore_force': True}, check=True)
    assert planned.returncode == 0 and 'loads localhost-' in planned.output, planned.output[-3000:]
    assert 'TASK [Put each file in place' not in planned.output and 'TASK [Form the cluster' not in planned.output
    assert _values(list(expected)[:100]) == dict(list(expected.items())[:100])

    teardown()
    restored = play('restore', {'redis_restore_dir': str(root)})
    assert restored.returncode == 0, restored.output[-5000:]
    assert 'sampled values compared, 0 differ' in restored.output
    assert _values(list(expected)) == expected
    assert sorted(masters()) == sorted(int(entry['address'].rsplit(':', 1)[1]) for entry in json.loads((root / 'manifest.json').read_text())['files'])

    # The same backup onto other ports: six more instances of this machine, another cluster.
    other = [{'port': port + 10, 'zone': ZONES[port]} for port in PORTS]
    try:
        elsewhere = play('restore', {'redis_restore_dir': str(root), 'redis_server_instances': other})
        assert elsewhere.returncode == 0, elsewhere.output[-5000:]
        assert _values(list(expected), port=other[0]['port']) == expected
    finally:
        teardown(other)
