"""site.yml on inventories/local, as `make demo` runs it: the checks the guides make, then idempotence.

The local inventory is the real thing: six instances on ports 7000-7005 of this machine, Debian's Redis
package, daemons (this machine has no systemd), deployed once for this file and test_site_local_ops.py
(local_site.py: a demo already running there is taken down first and deployed again).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
import yaml

from servers import port_command, port_serving
import artifact
from local_site import ADDED, INVENTORY, PORTS, ZONES
from playbook import REPO, parse_recap, run_module, run_playbook


serving = port_serving
raw = port_command


def cluster_info(port: int):
    return dict(line.split(':', 1) for line in raw(port, 'CLUSTER', 'INFO').splitlines() if ':' in line)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which('redis-cli') or '/usr/bin/redis-cli', *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope='module')
def deployed(local_site):
    return local_site


def test_cluster_is_what_the_guides_check(deployed):
    assert deployed.total('changed') > 0
    info = cluster_info(7000)
    assert info['cluster_state'] == 'ok'
    assert info['cluster_slots_assigned'] == '16384' and info['cluster_slots_ok'] == '16384'
    assert info['cluster_known_nodes'] == '6' and info['cluster_size'] == '3'

    check = cli('--cluster', 'check', '127.0.0.1:7000')
    assert check.returncode == 0 and '[OK] All 16384 slots covered.' in check.stdout, check.stdout

    # redis-cli -c follows MOVED redirects: keys land on three different masters.
    for key in ('alpha', 'bravo', 'charlie', 'delta'):
        assert cli('-c', '-p', '7000', 'SET', key, f'value-{key}').stdout.strip() == 'OK'
        assert cli('-c', '-p', '7001', 'GET', key).stdout.strip() == f'value-{key}'
    refused = cli('-p', '7000', 'GET', 'bravo')
    assert 'MOVED' in refused.stdout + refused.stderr or refused.stdout.strip() == 'value-bravo'
    # Keys sharing a hash tag share a slot, so a multi-key command works.
    assert cli('-c', '-p', '7002', 'MSET', '{user:42}:name', 'ada', '{user:42}:lang', 'en').stdout.strip() == 'OK'
    assert cli('-c', '-p', '7000', 'MGET', '{user:42}:name', '{user:42}:lang').stdout.split() == ['ada', 'en']


def test_replicas_sit_in_another_zone_than_their_master(deployed):
    nodes = [line.split() for line in raw(7000, 'CLUSTER', 'NODES').splitlines()]
    by_id = {fields[0]: int(fields[1].split('@')[0].rsplit(':', 1)[1]) for fields in nodes}
    replicas = [fields for fields in nodes if 'slave' in fields[2]]
    assert len(replicas) == 3
    for fields in replicas:
        port = int(fields[1].split('@')[0].rsplit(':', 1)[1])
        assert ZONES[port] != ZONES[by_id[fields[3]]]


def test_status_playbook_shows_every_master_and_brings_the_report_back(deployed, tmp_path):
    """playbooks/status.yml (what `make demo` ends with): the engine's summary, one line per master with its zone and
    slot ranges, no problem; with redis_status_report, the HTML report on the controller and nothing left on the host;
    in check mode the same summary."""
    report = tmp_path / 'cluster.html'
    shown = run_playbook('playbooks/status.yml', INVENTORY, extra_vars={'redis_status_report': str(report)})
    assert shown.returncode == 0, shown.output[-3000:]
    assert 'cluster_state ok: 3 masters, 3 replicas, 0 problem(s)' in shown.output, shown.output[-3000:]
    masters = [int(fields[1].split('@')[0].rsplit(':', 1)[1]) for fields in (line.split() for line in raw(7000, 'CLUSTER', 'NODES').splitlines())
               if 'master' in fields[2]]
    for port in masters:
        assert f'master 127.0.0.1:{port} (zone {ZONES[port]}' in shown.output
    page = report.read_text()
    assert page.startswith('<!DOCTYPE html>') and all(f'127.0.0.1:{port}' in page for port in masters)
    assert not [name for name in os.listdir('/tmp') if name.startswith('hashslot-status.')]
    checked = run_playbook('playbooks/status.yml', INVENTORY, check=True)
    assert checked.returncode == 0 and 'cluster_state ok: 3 masters' in checked.output and checked.total('changed') == 0


def test_installed_artifact_reruns_site_after_a_failover_unchanged(deployed):
    """The second run of site.yml changes nothing (a second `make demo`), even after a failover, and runs the way a
    Galaxy user runs it: the artifact, installed into an empty collections path, runs `hashslot.redis.site` against its
    own copy of the local inventory, away from the checkout. The playbook and roles are the checkout's, byte for byte
    (the artifact's contents are checked in test_collection_artifact.py). Redis rewrites nodes-<port>.conf itself
    when roles swap: the role owns redis-<port>.conf, not that file."""
    replica_port = next(port for port in PORTS if raw(port, 'ROLE')[0] == 'slave')
    nodes_conf = f'/var/lib/redis/{replica_port}/nodes-{replica_port}.conf'
    before = os.stat(nodes_conf).st_mtime
    assert raw(replica_port, 'CLUSTER', 'FAILOVER') == 'OK'
    deadline = time.monotonic() + 30
    while raw(replica_port, 'ROLE')[0] != 'master' and time.monotonic() < deadline:
        time.sleep(0.1)
    assert raw(replica_port, 'ROLE')[0] == 'master'
    assert os.stat(nodes_conf).st_mtime > before

    root = artifact.collection_root()
    command = [artifact.tool('ansible-playbook'), '-i', os.path.join(root, INVENTORY), 'hashslot.redis.site']
    result = subprocess.run(command, cwd=artifact.OUTPUT, env=artifact.clean_env(artifact.installed()), capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, timeout=1200, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    recap = parse_recap(result.stdout)
    assert recap and sum(counts['changed'] for counts in recap.values()) == 0, output[-5000:]
    assert sum(counts['ok'] for counts in recap.values()) > 0
    assert raw(replica_port, 'ROLE')[0] == 'master'


def test_runtime_settings_change_without_restart(deployed):
    """A setting CONFIG SET can change is applied live; one that needs a restart (databases) is written and named,
    with the playbook that restarts, and nothing restarts. One run for both, then one back to the inventory's."""
    run_ids = {port: raw(port, 'INFO', 'server').split('run_id:')[1].split()[0] for port in PORTS}
    changed = run_playbook('site.yml', INVENTORY, tags='server',
                           extra_vars={'redis_server_maxmemory': '300mb', 'redis_server_settings': {'databases': 4}})
    assert changed.returncode == 0, changed.output[-3000:]
    assert changed.total('changed') > 0
    assert 'playbooks/rolling_restart.yml' in changed.output and 'databases' in changed.output
    for port in PORTS:
        assert raw(port, 'CONFIG', 'GET', 'maxmemory')[1] == str(300 * 1024 * 1024)
        assert raw(port, 'CONFIG', 'GET', 'databases')[1] == '16', 'databases needs a restart: the running value stays'
        assert raw(port, 'INFO', 'server').split('run_id:')[1].split()[0] == run_ids[port], 'the instance restarted'
        conf = open(f'/etc/redis/redis-{port}.conf').read()
        assert 'maxmemory 300mb' in conf and 'databases 4' in conf

    back = run_playbook('site.yml', INVENTORY, tags='server')
    assert back.returncode == 0, back.output[-3000:]
    for port in PORTS:
        assert raw(port, 'CONFIG', 'GET', 'maxmemory')[1] == str(256 * 1024 * 1024)
        assert raw(port, 'INFO', 'server').split('run_id:')[1].split()[0] == run_ids[port], 'the instance restarted'


def test_bad_variables_fail_before_anything_changes(deployed):
    conf = open('/etc/redis/redis-7000.conf').read()
    bad = run_playbook('site.yml', INVENTORY, extra_vars={'redis_server_appendfsync': 'sometimes', 'redis_server_maxmemory': '1gb'})
    assert bad.returncode != 0
    assert 'redis_server_appendfsync' in bad.output
    assert bad.total('changed') == 0
    assert open('/etc/redis/redis-7000.conf').read() == conf


def node_ids(port: int) -> set:
    return {line.split()[0] for line in raw(port, 'CLUSTER', 'NODES').splitlines()}


def stop_and_empty(port: int) -> None:
    """The server stopped without saving and its data directory emptied: it comes back with a new node id."""
    try:
        raw(port, 'SHUTDOWN', 'NOSAVE')
    except Exception:  # the server closes the connection as it exits
        pass
    deadline = time.monotonic() + 20
    while serving(port):
        assert time.monotonic() < deadline, f'{port} did not stop'
        time.sleep(0.1)
    for name in os.listdir(f'/var/lib/redis/{port}'):
        path = os.path.join(f'/var/lib/redis/{port}', name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def test_new_instances_join_as_shards(deployed):
    """Two instances added to the inventory: site.yml makes them a new shard (a master with slots, its replica in
    another zone) without losing a key.

    In the same run, a master and a replica of another shard come back with empty data directories (a new disk, a
    wiped volume): each has a new node id, and the cluster keeps the old ones without an address. Redis never flags
    such a master fail, so nobody serves its slots and its replica waits. site.yml starts both servers, promotes the
    master's replica, forgets both old ids and joins the two servers again like the two new ones: of the four, one
    becomes the fourth master (8 instances, one replica each) and gets its share of the slots, the others replicas,
    each in another zone than its master."""
    base = yaml.safe_load(open(os.path.join(REPO, INVENTORY, 'group_vars', 'redis_cluster.yml')))['redis_server_instances']
    added = ADDED
    grown = {'redis_server_instances': base + added}
    zones = {**ZONES, **{instance['port']: instance['zone'] for instance in added}}

    def masters():
        return [port for port in PORTS + [7006, 7007] if serving(port) and raw(port, 'ROLE')[0] == 'master']

    for index in range(300):
        assert cli('-c', '-p', '7000', 'SET', f'shard-test:{index}', str(index)).returncode == 0
    keys = sum(raw(port, 'DBSIZE') for port in masters())
    roles = {port: raw(port, 'ROLE') for port in PORTS}
    lost_master = masters()[-1]
    heir = next(port for port in PORTS if roles[port][0] == 'slave' and int(roles[port][2]) == lost_master)
    lost_replica = next(port for port in PORTS if roles[port][0] == 'slave' and int(roles[port][2]) != lost_master)
    old_ids = {raw(port, 'CLUSTER', 'MYID') for port in (lost_master, lost_replica)}
    for port in (lost_master, lost_replica):
        stop_and_empty(port)

    joined = run_playbook('site.yml', INVENTORY, extra_vars=grown)
    assert joined.returncode == 0, joined.output[-5000:]
    assert joined.total('changed') > 0
    info = cluster_info(7000)
    assert info['cluster_state'] == 'ok' and info['cluster_known_nodes'] == '8' and info['cluster_size'] == '4'
    # The servers back empty: the old ids forgotten everywhere, the lost master's replica promoted; one of the four
    # servers that joined is the new master, the others replicas; every replica in another zone than its master.
    for port in PORTS + [7006, 7007]:
        assert not node_ids(port) & old_ids, f'{port} still knows an old id'
    after = {port: raw(port, 'ROLE') for port in PORTS + [7006, 7007]}
    assert after[heir][0] == 'master', after
    joined_ports = [lost_master, lost_replica, 7006, 7007]
    new_masters = [port for port in joined_ports if after[port][0] == 'master']
    assert len(new_masters) == 1 and len(masters()) == 4, after
    new_master = new_masters[0]
    for port, role in after.items():
        if role[0] == 'slave':
            assert zones[int(role[2])] != zones[port], f'{port} replicates {role[2]} in its own zone'
    owned = sum(int(end) - int(start) + 1 for start, end in
                (item.split('-') if '-' in item else (item, item) for item in
                 next(line for line in raw(7000, 'CLUSTER', 'NODES').splitlines()
                      if f':{new_master}@' in line).split()[8:]))
    assert abs(owned - 4096) <= 4096 * 0.02 + 1
    assert sum(raw(port, 'DBSIZE') for port in masters()) == keys
    check = cli('--cluster', 'check', '127.0.0.1:7000')
    assert check.returncode == 0 and '[WARNING]' not in check.stdout, check.stdout

    again = run_playbook('site.yml', INVENTORY, extra_vars=grown)
    assert again.returncode == 0 and again.total('changed') == 0, again.changed_tasks()

    # Leave the cluster as it was (3 masters and their replicas on 7000-7005) with redis_cluster: 7006 and 7007 removed,
    # the fourth master (if one of 7000-7005) described with weight 0, so its slots move and it becomes a replica.
    original = [{'host': '127.0.0.1', 'port': port, 'zone': ZONES[port], **({'weight': 0} if port == new_master else {})} for port in PORTS]
    back = run_module('redis_cluster', nodes=original, remove=['127.0.0.1:7006', '127.0.0.1:7007'])
    assert not back.get('failed'), back
    assert cluster_info(7000)['cluster_known_nodes'] == '6' and len([port for port in masters() if port in PORTS]) == 3
    assert sum(raw(port, 'DBSIZE') for port in masters() if port in PORTS) == keys
    removed = run_playbook('playbooks/teardown.yml', INVENTORY,
                           extra_vars={'redis_server_instances': added, 'hashslot_teardown_confirm': 'yes'})
    assert removed.returncode == 0, removed.output[-3000:]
    assert not serving(7006) and not serving(7007) and not os.path.exists('/var/lib/redis/7006')
