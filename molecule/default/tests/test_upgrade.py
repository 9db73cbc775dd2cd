"""A rolling upgrade with playbooks/upgrade.yml under a write load, on the default scenario's three systemd containers
(two instances each).

It runs after tests/test_default.py (pytest takes the files in name order), on the cluster it checked.

1. Redis 7.0 (Debian 12's package, as converged) -> Valkey 8.1.1 built from source; the instances keep their names
   (redis@6379, /etc/redis, /var/lib/redis). With redis_rolling_failback: each master is failed back once restarted,
   so the masters end where they started (the rolling restart's own failback, proven here under the ledger).
2. Valkey 8.1.1 -> Redis 8.0.2: refused by upgrade.yml before it changes anything. Redis 8 sends its cluster's internal
   secret as cluster bus extension 4, which Valkey reads as the node's client IPv4 address, so a mixed cluster
   announces the Redis 8 nodes at an address made of that secret (seen: the first restarted node stayed unreachable
   for the others).
3. Valkey 8.1.1 -> Valkey 9.1.2 built from source. The ACL files are rewritten for Valkey 9 (the replication user gets
   what atomic slot migration needs, a rule Valkey 8 would refuse: the running 8.1 servers are not asked to load it,
   each reads it when restarted). Then, on the upgraded hosts, slots move back and forth with atomic slot migration
   (redis_cluster_reshard method=atomic) over TLS as the admin, the sources logging in to the targets as the
   replication user, under the ledger. Last, what else Valkey 9 gives that the role turns on: each instance announces
   its zone (availability-zone), and a master stopped by systemd hands its slots to its replica on the way out
   (shutdown-on-sigterm failover), well within the node timeout a failure would take, losing no acknowledged write.

The other refused switch, Redis 8.0 -> Valkey 8.1 (Redis 7.4 and later write RDB format 12, which Valkey 8.1 refuses),
is shown on the scale scenario's cluster, which runs Debian 13's Redis 8.0.2 (molecule/scale/tests/test_scale.py). An
upgrade within Redis (7.0 -> 8.0.2) runs the same playbook, the same install and the same restarts as this one, less
the change of flavor; it ran here too until 2026-12-03, at the price of a second deployment of the scenario.

The upgrade runs once (a module fixture) while a paced ledger writer and a shard sampler run: no acknowledged write
lost, never two nodes of a shard down, cluster_state ok throughout. What the tests assert is recorded right after
that upgrade, so the order in which pytest runs the tests does not matter. The source tarballs come from the
controller (tools/redis-servers keeps them: the air-gapped path); with the base config's redis_install_build_once one
container compiles each version, the others unpack its build from the controller cache, and later runs (of any
scenario) compile nothing.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import pytest

from containers import (AckLedger, CommandLines, PacedLedger, PlaybookRecap, ShardSampler, assert_switch_refused, docker,
                        paced_ledger, unit_down_windows, upgrade_vars)
from playbook import run_tasks  # tests/integration, on the path once containers is imported
from servers import ensure_build

# Each upgrade: fixture name -> (flavor, version, tools/redis-servers name, what the cluster runs before it).
UPGRADES = {
    'valkey81': ('valkey', '8.1.1', 'valkey-8.1.1', ('redis', '7.0.15')),
    'valkey91': ('valkey', '9.1.2', 'valkey-9.1.2', ('valkey', '8.1.1')),
}
# The upgrades that run with redis_rolling_failback (the masters end where they started).
FAILBACK = {'valkey81'}
# Each refused switch: fixture name -> (upgrade it follows, flavor, version, tools/redis-servers name, how upgrade.yml
# names the nodes).
REFUSALS = {
    'redis8_after_valkey': ('valkey81', 'redis', '8.0.2', 'redis-8.0.2', 'runs Valkey 8.1.1'),
}
SEED_KEYS = 2000
# The redis_server role's default replication user.
REPLICATION_USER = 'hashslot-replication'
# The writer and the sampler stop by themselves after this long, as the playbook does (run_playbook's timeout).
LOAD_MAX_SECONDS = 1800
# Each write is followed by an INCR of one of the ledger's 64 counters: 200 commands a second.
WRITES_PER_SECOND = 100
COMPILE_TASK = 'Compile and install'
UNPACK_TASK = "Unpack the group's archive into the prefix root"


@dataclass
class UpgradeRecord:
    """What one run of upgrade.yml did and left, read as soon as it finished."""
    name: str
    flavor: str
    version: str
    hosts: List[str] = field(default_factory=list)
    returncode: int = -1
    output: str = ''
    wall: float = 0.0
    archives_before: List[str] = field(default_factory=list)
    archives_after: List[str] = field(default_factory=list)
    compiled: List[str] = field(default_factory=list)
    unpacked: List[str] = field(default_factory=list)
    sampler: Optional[ShardSampler] = None
    # Per node address (ip:port): (stopping, ready) times of its unit during the upgrade, from the container's journal.
    down_windows: Dict[str, List[tuple]] = field(default_factory=dict)
    ledger: Optional[PacedLedger] = None
    acknowledged: int = 0
    # Acknowledged after the playbook returned: the load lasted the whole upgrade.
    writes_after_playbook: int = 0
    write_errors: List[str] = field(default_factory=list)
    lost: Dict[str, Any] = field(default_factory=dict)
    seed_lost: Dict[str, Any] = field(default_factory=dict)
    ledger_keys: int = 0
    ledger_counters: int = 0
    keys_before: int = 0
    keys_after: int = 0
    masters_before: List[str] = field(default_factory=list)
    masters_after: List[str] = field(default_factory=list)
    servers_before: Dict[str, Dict[str, str]] = field(default_factory=dict)
    servers_after: Dict[str, Dict[str, str]] = field(default_factory=dict)
    executables: Dict[str, str] = field(default_factory=dict)
    missing_libraries: Dict[str, List[str]] = field(default_factory=dict)
    units: Dict[str, Dict[str, str]] = field(default_factory=dict)
    other_units: Dict[str, str] = field(default_factory=dict)
    report: Dict[str, Any] = field(default_factory=dict)
    # The same upgrade.yml run again right after: its return code, changed tasks and the run ids it left.
    rerun_returncode: int = -1
    rerun_changed: List[str] = field(default_factory=list)
    rerun_servers: Dict[str, Dict[str, str]] = field(default_factory=dict)
    # The upgrade ran at -vvv while every command line on the controller and in the containers was sampled: where
    # each password of the inventory showed up (nowhere, the test asserts), and how many samples were taken.
    secrets_seen: Dict[str, List[str]] = field(default_factory=dict)
    command_line_samples: Dict[str, int] = field(default_factory=dict)

    def failure_context(self) -> str:
        return f'\n--- upgrade.yml to {self.flavor} {self.version} (rc={self.returncode}), last lines ---\n' + '\n'.join(
            self.output.splitlines()[-60:])


@dataclass
class RefusalRecord:
    """A run of upgrade.yml that must stop in its checks: its recap and the nodes before and after."""
    name: str
    recap: PlaybookRecap
    servers_before: Dict[str, Dict[str, str]]
    servers_after: Dict[str, Dict[str, str]]
    units: Dict[str, Dict[str, str]]


def build_cache_dir() -> str:
    # The base config's redis_install_controller_cache_dir, resolved the way its lookup does.
    return os.path.join(os.environ.get('HASHSLOT_CACHE_DIR') or '/var/cache/hashslot-redis', 'role-builds')


def hosts_under_task(output: str, task_prefix: str, state: str = 'changed') -> List[str]:
    """Hosts that reported `state` under the TASK headers whose name starts with task_prefix."""
    hosts, inside = [], False
    for line in output.splitlines():
        if line.startswith('TASK ['):
            inside = line.split(' : ', 1)[-1].startswith(task_prefix)
        elif inside and line.startswith(f'{state}: ['):
            hosts.append(line.split('[', 1)[1].split(']', 1)[0])
    return sorted(set(hosts))


def node_key(host: str, port: int) -> str:
    """How the records name an instance: container:port."""
    return f'{host}:{port}'


def server_info(cluster) -> Dict[str, Dict[str, str]]:
    """INFO server of every instance, by node_key."""
    keys = ('redis_version', 'valkey_version', 'server_name', 'run_id', 'executable', 'config_file')
    result = {}
    for host, port in cluster.nodes():
        info = cluster.client(host, port).info('server')
        result[node_key(host, port)] = {key: str(info.get(key, '')) for key in keys}
    return result


def running(servers: Dict[str, Dict[str, str]]) -> Dict[str, tuple]:
    """(flavor, version) per instance from INFO server (Valkey reports redis_version 7.2.4 for compatibility)."""
    return {host: (server['server_name'] or 'redis', server['valkey_version'] or server['redis_version'])
            for host, server in servers.items()}


def count_keys(cluster, pattern: str) -> int:
    total = 0
    for address in cluster.masters():
        client = cluster.client_at(address)
        total += sum(1 for dummy in client.scan_iter(match=pattern, count=1000))
    return total


def unit_state(host: str, unit: str) -> Dict[str, str]:
    shown = docker('exec', host, 'systemctl', 'show', '-p', 'ActiveState', '-p', 'UnitFileState', '-p', 'MainPID', unit)
    return dict(line.split('=', 1) for line in shown.splitlines() if '=' in line)


def settle(cluster, timeout: float = 120) -> None:
    """Every node reports cluster_state ok (before a step starts and before reading what it left)."""
    def settled() -> bool:
        return all(cluster.client(host, port).cluster('info').get('cluster_state') == 'ok' for host, port in cluster.nodes())
    cluster.wait_for(settled, timeout, what='cluster_state ok on every node')


def seed(cluster, name: str) -> AckLedger:
    """Keys written before an upgrade: the key count that must not change, values that must survive it."""
    settle(cluster)
    ledger = cluster.ledger(max_writes=SEED_KEYS, max_seconds=120, prefix=f'seed-{name}').start()
    ledger.wait_for_writes(SEED_KEYS, timeout=120)
    ledger.stop()
    assert len(ledger.acknowledged) == SEED_KEYS and not ledger.errors, ledger.errors[:5]
    return ledger


def upgrade(cluster, name: str) -> UpgradeRecord:
    flavor, version, tool_name, dummy = UPGRADES[name]
    record = UpgradeRecord(name, flavor, version, hosts=cluster.hosts())
    # This machine's build, packed into the controller cache the role reads (make test's pytest lane may still be
    # making it: this waits for it), so the containers unpack it rather than compile.
    ensure_build(tool_name)
    extra_vars = upgrade_vars(flavor, version, tool_name)
    if name in FAILBACK:
        extra_vars['redis_rolling_failback'] = True
    pattern = os.path.join(build_cache_dir(), f'{flavor}-{version}-*.tar.gz')
    record.archives_before = sorted(glob.glob(pattern))
    seeded = seed(cluster, name)
    record.servers_before = server_info(cluster)
    record.keys_before = cluster.key_count()
    record.masters_before = cluster.masters()
    prefix = f'load-{name}'
    sampler = ShardSampler(cluster, interval=0.5, timeout=1.0, max_seconds=LOAD_MAX_SECONDS)
    # 64 counters besides the unique keys: an increment lost while a master fails over or restarts shows.
    ledger = paced_ledger(cluster, writes_per_second=WRITES_PER_SECOND, max_seconds=LOAD_MAX_SECONDS, max_writes=10 ** 6,
                          prefix=prefix, counters=64)
    started, started_epoch = time.monotonic(), time.time()
    sampler.start()
    try:
        ledger.start()
        ledger.wait_for_writes(50, timeout=30)
        # Every command line sampled (the controller's every 100 ms). Not at -vvv: with it (and the controller sampled
        # every 50 ms) the upgrade took 577 s in a rehearsal, against 303 s in an earlier one without either; the
        # modules' -vvv output is searched in test_secure_modules.py and the secure scenario's converge.
        with CommandLines(cluster.hosts(), interval=0.1) as lines:
            recap = cluster.playbook('playbooks/upgrade.yml', extra_vars=extra_vars)
        # A few more seconds of writes against the upgraded cluster.
        count = len(ledger.acknowledged)
        ledger.wait_for_writes(count + 200, timeout=15)
        record.writes_after_playbook = len(ledger.acknowledged) - count
    finally:
        ledger.stop()
        sampler.stop()
    record.wall = time.monotonic() - started
    record.returncode, record.output = recap.returncode, recap.output
    record.command_line_samples = dict(lines.container_samples, controller=lines.samples)
    record.secrets_seen = {name: lines.containing(secret) + (['-vvv output'] if secret in recap.output else [])
                           for name, secret in cluster.secrets().items()}
    record.sampler, record.ledger = sampler, ledger
    record.acknowledged, record.write_errors = len(ledger.acknowledged), list(ledger.errors)
    record.archives_after = sorted(glob.glob(pattern))
    record.compiled = hosts_under_task(recap.output, COMPILE_TASK)
    record.unpacked = hosts_under_task(recap.output, UNPACK_TASK)
    record.down_windows = {f'{cluster.address(host)}:{port}': unit_down_windows(host, f'redis@{port}.service', started_epoch - 1)
                           for host, port in cluster.nodes()}
    downtime = {address: [round(ready - stopping, 2) for stopping, ready in windows] for address, windows in record.down_windows.items()}
    print(f'\n[upgrade to {flavor} {version}] rc={recap.returncode}, {record.wall:.0f} s; compiled on {record.compiled or "no host"}, '
          f'unpacked on {record.unpacked}; {record.acknowledged} acknowledged writes, {len(record.write_errors)} refused, '
          f'{record.writes_after_playbook} after the playbook; {sampler.summary()}; unit down (s) per node from the journal {downtime}')
    if recap.returncode == 0:
        read_after(cluster, record, seeded, prefix)
        again = cluster.playbook('playbooks/upgrade.yml', extra_vars=extra_vars)
        record.rerun_returncode, record.rerun_changed = again.returncode, again.changed_tasks()
        record.rerun_servers = server_info(cluster)
    return record


def read_after(cluster, record: UpgradeRecord, seeded: AckLedger, prefix: str) -> None:
    """What the tests check once the upgrade finished: data, versions, binaries, units, the cluster's own report."""
    settle(cluster)
    record.lost = record.ledger.lost()
    record.seed_lost = seeded.lost()
    record.keys_after = cluster.key_count()
    record.masters_after = cluster.masters()
    # The writer's unique keys: every key under its prefix but its counters.
    record.ledger_counters = len(record.ledger.counter_keys)
    record.ledger_keys = count_keys(cluster, f'{prefix}:*') - record.ledger_counters
    record.servers_after = server_info(cluster)
    for host in cluster.hosts():
        record.other_units[host] = docker('exec', host, 'systemctl', 'list-units', '--all', '--plain', '--no-legend', 'valkey@*').strip()
    for host, port in cluster.nodes():
        node = node_key(host, port)
        record.units[node] = unit_state(host, f'redis@{port}')
        # The path the server was started from (the unit's stable link), resolved now. /proc/<pid>/exe is not
        # readable here: the server runs as another user and a container's root has no CAP_SYS_PTRACE.
        executable = record.servers_after[node]['executable']
        record.executables[node] = docker('exec', host, 'readlink', '-f', executable).strip() if executable else ''
        ldd = docker('exec', host, 'ldd', record.executables[node] or executable, check=False)
        record.missing_libraries[node] = [line.strip() for line in ldd.splitlines() if 'not found' in line]
    record.report = cluster.info()


def refuse(cluster, name: str, after: UpgradeRecord) -> RefusalRecord:
    dummy, flavor, version, tool_name, dummy = REFUSALS[name]
    if after.returncode != 0:
        pytest.fail(f'the upgrade to {after.flavor} {after.version} failed, so the switch from it to {flavor} {version} was not tried')
    extra_vars = upgrade_vars(flavor, version, tool_name)
    before = server_info(cluster)
    started = time.monotonic()
    recap = cluster.playbook('playbooks/upgrade.yml', extra_vars=extra_vars)
    print(f'\n[refused {name}] rc={recap.returncode}, {time.monotonic() - started:.0f} s')
    return RefusalRecord(name, recap, before, server_info(cluster),
                         {node_key(host, port): unit_state(host, f'redis@{port}') for host, port in cluster.nodes()})


@pytest.fixture(scope='module')
def valkey81(cluster) -> UpgradeRecord:
    return upgrade(cluster, 'valkey81')


@pytest.fixture(scope='module')
def redis8_after_valkey(cluster, valkey81) -> RefusalRecord:
    return refuse(cluster, 'redis8_after_valkey', valkey81)


@pytest.fixture(scope='module')
def valkey91(cluster, valkey81, redis8_after_valkey) -> UpgradeRecord:
    # After the refusal, which expects the cluster on Valkey 8.1.
    if valkey81.returncode != 0:
        pytest.fail('the upgrade to Valkey 8.1.1 failed, so the one from it to Valkey 9.1.2 was not tried')
    return upgrade(cluster, 'valkey91')


@dataclass
class AtomicRecord:
    """Slots moved to another master and back with atomic slot migration, under the ledger."""
    results: List[Dict[str, Any]]
    output: str
    acknowledged: int
    lost: Dict[str, Any]
    report: Dict[str, Any]
    replication_rules: str


@pytest.fixture(scope='module')
def atomic_moves(cluster, valkey91) -> AtomicRecord:
    if valkey91.returncode != 0:
        pytest.fail('the upgrade to Valkey 9.1.2 failed')
    settle(cluster)
    masters = cluster.masters()
    source, target = masters[0], masters[1]
    slots = cluster.topology()[source]['slots'][0]
    start, dummy, end = slots.partition('-')
    moved = [f'{start}-{int(start) + 999}']
    seed = dict(host=source.split(':')[0], port=int(source.split(':')[1]))
    to_target = dict(host=target.split(':')[0], port=int(target.split(':')[1]))
    to_source = dict(seed)
    common = dict(node=seed, action='move', slots=moved, method='atomic', **cluster.connection())
    ledger = paced_ledger(cluster, writes_per_second=WRITES_PER_SECOND, max_seconds=300, max_writes=10 ** 6, prefix='load-atomic',
                          counters=64)
    ledger.start()
    try:
        ledger.wait_for_writes(100, timeout=30)
        run = run_tasks([{'hashslot.redis.redis_cluster_reshard': dict(common, target=to_target)},
                         {'hashslot.redis.redis_cluster_reshard': dict(common, target=to_source)}])
        count = len(ledger.acknowledged)
        ledger.wait_for_writes(count + 100, timeout=15)
    finally:
        ledger.stop()
    settle(cluster)
    user = str(cluster.host_vars(cluster.hosts()[0]).get('redis_server_replication_user', REPLICATION_USER))
    getuser = cluster.client(cluster.hosts()[0]).execute_command('ACL', 'GETUSER', user)
    rules = str(dict(zip(getuser[0::2], getuser[1::2])).get('commands'))
    record = AtomicRecord(run.results, run.output, len(ledger.acknowledged), ledger.lost(), cluster.info(), rules)
    print(f'\n[atomic moves on Valkey 9.1] {[(result.get("method"), result.get("jobs")) for result in run.results]}; '
          f'{record.acknowledged} writes acknowledged, {len(record.lost)} lost')
    return record


@pytest.fixture(params=list(UPGRADES))
def step(request) -> UpgradeRecord:
    return request.getfixturevalue(request.param)


@pytest.fixture(params=list(REFUSALS))
def refusal(request) -> RefusalRecord:
    return request.getfixturevalue(request.param)


def test_upgrade_playbook_succeeds_from_the_previous_version(step):
    assert set(running(step.servers_before).values()) == {UPGRADES[step.name][3]}, step.servers_before
    assert step.returncode == 0, step.failure_context()


def test_compiled_at_most_once_and_cached_for_the_next_run(step):
    assert step.returncode == 0, step.failure_context()
    hosts = sorted(step.hosts)
    assert len(step.compiled) <= 1, f'{step.flavor} {step.version} compiled on {step.compiled}'
    new_archives = sorted(set(step.archives_after) - set(step.archives_before))
    if step.compiled:
        # First run on this controller: one host built, its build went to the controller cache, the rest unpacked it.
        assert len(new_archives) == 1, (step.archives_before, step.archives_after)
        assert step.unpacked == sorted(set(hosts) - set(step.compiled))
    else:
        # The build was in the cache already: nothing compiled, every host unpacked it.
        assert step.archives_before and not new_archives, (step.archives_before, step.archives_after)
        assert step.unpacked == hosts


def test_never_more_than_one_node_of_a_shard_down(step):
    assert step.returncode == 0, step.failure_context()
    sampler = step.sampler
    assert sampler.failures == [], sampler.failures[:5]
    assert sampler.samples >= 20, sampler.summary()
    assert len(sampler.shards) == 3 and all(len(members) == 2 for members in sampler.shards), sampler.shards
    for index, members in enumerate(sampler.shards):
        assert sampler.max_down[index] <= 1, f'shard {members}: {sampler.worst[index]} ({sampler.summary()})'
    # The journal has every stop, even one shorter than the sampling interval: no two members of a shard were down at
    # the same time (from "Stopping" to the server's ready notification).
    for members in sampler.shards:
        for first, second in [(a, b) for a in members for b in members if a < b]:
            overlaps = [(x, y) for x in step.down_windows[first] for y in step.down_windows[second] if x[0] < y[1] and y[0] < x[1]]
            assert overlaps == [], f'{first} and {second} (one shard) were down at the same time: {overlaps}'


def test_cluster_state_ok_throughout(step):
    assert step.returncode == 0, step.failure_context()
    sampler = step.sampler
    assert sampler.not_ok == [], f'{sampler.not_ok[:20]} ({sampler.summary()})'
    assert set(sampler.states) == {'ok'}, sampler.summary()


def test_every_node_restarted(step):
    """Every node has a new run id (the process was replaced) ..."""
    assert step.returncode == 0, step.failure_context()
    same = [node for node in step.servers_before if step.servers_before[node]['run_id'] == step.servers_after[node]['run_id']]
    assert same == [], f'not restarted: {same}'
    # ... by systemd, each once and back up (the journal's stop/ready pairs).
    assert {address: len(windows) for address, windows in step.down_windows.items()} == dict.fromkeys(step.down_windows, 1), \
        step.down_windows
    assert all(ready != float('inf') for windows in step.down_windows.values() for dummy, ready in windows), step.down_windows


def test_masters_end_where_they_started_with_failback(valkey81):
    assert valkey81.returncode == 0, valkey81.failure_context()
    assert len(valkey81.masters_before) == 3, valkey81.masters_before
    assert valkey81.masters_after == valkey81.masters_before, 'with redis_rolling_failback the masters end where they started'


def test_no_acknowledged_write_lost(step):
    assert step.returncode == 0, step.failure_context()
    assert step.acknowledged >= 1000, f'only {step.acknowledged} writes acknowledged during the upgrade'
    assert step.writes_after_playbook > 0, 'the writer had stopped before the playbook finished'
    assert step.lost == {}, f'{len(step.lost)} of {step.acknowledged} acknowledged writes lost, e.g. {list(step.lost.items())[:5]}'
    assert step.seed_lost == {}, f'{len(step.seed_lost)} of {SEED_KEYS} keys written before the upgrade lost'


def test_no_password_in_the_output_or_on_a_command_line(step):
    """ACL users and TLS on: the upgrade's rolling restart and failovers log in as the admin, and no password of the
    inventory reaches a command line (controller or hosts) or the playbook's output."""
    assert step.returncode == 0, step.failure_context()
    assert min(step.command_line_samples.values()) > 100, step.command_line_samples
    assert step.secrets_seen and all(seen == [] for seen in step.secrets_seen.values()), step.secrets_seen


def test_key_count_unchanged_except_for_the_ledger(step):
    assert step.returncode == 0, step.failure_context()
    # A write that timed out may still have been applied: the ledger's keys are at least the acknowledged ones and at
    # most every attempted one; every other key is the same as before.
    assert step.acknowledged <= step.ledger_keys <= step.acknowledged + len(step.write_errors), \
        (step.acknowledged, step.ledger_keys, len(step.write_errors))
    assert step.keys_after - step.ledger_keys - step.ledger_counters == step.keys_before, \
        (step.keys_before, step.keys_after, step.ledger_keys, step.ledger_counters)
    assert step.keys_before >= SEED_KEYS


def test_every_node_runs_the_new_build(step, cluster):
    assert step.returncode == 0, step.failure_context()
    prefix_root = str(cluster.host_vars(cluster.hosts()[0]).get('redis_install_prefix_root', '/opt/hashslot'))
    for node, server in step.servers_after.items():
        if step.flavor == 'valkey':
            assert server['server_name'] == 'valkey' and server['valkey_version'] == step.version, (node, server)
        else:
            assert server['redis_version'] == step.version and server['server_name'] in ('', 'redis'), (node, server)
        # The unit runs the versioned build through the stable link, not the package's /usr/bin binary.
        assert step.executables[node] == f'{prefix_root}/{step.flavor}-{step.version}/bin/{step.flavor}-server', (node, step.executables[node])
        # The hosts that unpacked another host's build have the libraries it links against.
        assert step.missing_libraries[node] == [], (node, step.missing_libraries[node])


def test_playbook_reports_the_new_version_and_a_second_run_restarts_nothing(step):
    assert step.returncode == 0, step.failure_context()
    assert f'every node runs {step.flavor} {step.version}' in step.output, step.failure_context()
    if step.flavor != UPGRADES[step.name][3][0]:
        # The switch of flavor tells the operator to keep the deployed names in the inventory.
        assert 'redis_server_name: redis' in step.output, step.failure_context()
    assert step.rerun_returncode == 0, step.rerun_changed
    assert step.rerun_changed == [], step.rerun_changed
    assert {node: server['run_id'] for node, server in step.rerun_servers.items()} == \
        {node: server['run_id'] for node, server in step.servers_after.items()}


def test_units_and_paths_keep_their_names(step):
    """redis_server_name stays 'redis', also once Valkey runs: same unit, configuration file and data."""
    assert step.returncode == 0, step.failure_context()
    for node, unit in step.units.items():
        assert unit['ActiveState'] == 'active' and unit['UnitFileState'] == 'enabled', (node, unit)
        port = node.rsplit(':', 1)[1]
        assert step.servers_after[node]['config_file'] == f'/etc/redis/redis-{port}.conf', (node, step.servers_after[node])
    for host, listed in step.other_units.items():
        assert listed == '', (host, listed)


def test_cluster_info_reports_no_problem(step):
    assert step.returncode == 0, step.failure_context()
    report = step.report
    assert report.get('failed') is not True, report
    assert report['cluster_state'] == 'ok'
    assert report['problems'] == [], report['problems']
    assert (report['masters'], report['replicas']) == (3, 3)


def test_impossible_switch_refused_before_any_change(refusal, cluster):
    """upgrade.yml stops in its checks, names every node in the way, and no node restarts or changes."""
    assert_switch_refused(cluster, refusal.recap, REFUSALS[refusal.name][4])
    assert refusal.servers_after == refusal.servers_before
    for node, unit in refusal.units.items():
        assert unit['ActiveState'] == 'active', (node, unit)


def test_atomic_migration_on_the_upgraded_hosts_over_tls_loses_nothing(atomic_moves):
    """Valkey 9 on systemd hosts with the secure defaults: 1000 slots to another master and back with atomic slot
    migration, as the admin over TLS, the source logging in to the target as the replication user (its rules as the
    role writes them for Valkey 9), while the ledger writes."""
    for result in atomic_moves.results:
        assert not result.get('failed'), (result.get('msg'), atomic_moves.output[-3000:])
        assert result['method'] == 'atomic' and result['moved_slots'] == 1000, result
        assert [job['state'] for job in result['jobs']] == ['success'], result['jobs']
    assert 'cluster|syncslots' in atomic_moves.replication_rules, atomic_moves.replication_rules
    assert atomic_moves.acknowledged >= 200 and atomic_moves.lost == {}, (atomic_moves.acknowledged, list(atomic_moves.lost.items())[:5])
    assert atomic_moves.report['problems'] == [], atomic_moves.report['problems']


NODE_TIMEOUT = 5.0  # the redis_server role's default cluster-node-timeout, in seconds


@dataclass
class HandoverRecord:
    """A master's unit stopped with systemctl on Valkey 9, under the ledger: how fast its replica took over."""
    settings: Dict[str, Dict[str, str]]
    zones: Dict[str, str]
    master: str
    replica: str
    took_over: float
    acknowledged: int
    lost: Dict[str, Any]
    back_as: str
    report: Dict[str, Any]


@pytest.fixture(scope='module')
def handover(cluster, atomic_moves) -> HandoverRecord:
    settle(cluster)
    settings = {}
    for host, port in cluster.nodes():
        client = cluster.client(host, port)
        settings[node_key(host, port)] = {name: client.config_get(name)[name] for name in ('availability-zone', 'shutdown-on-sigterm')}
    zones = {node_key(host, port): str(cluster.host_vars(host).get('redis_zone', '')) for host, port in cluster.nodes()}
    topology = cluster.topology()
    master = cluster.masters()[0]
    replica = next(address for address, node in topology.items() if node['master_id'] == topology[master]['id'])
    host, port = cluster.host_of(master), int(master.rsplit(':', 1)[1])
    ledger = paced_ledger(cluster, writes_per_second=WRITES_PER_SECOND, max_seconds=300, max_writes=10 ** 6, prefix='load-handover',
                          counters=64)
    ledger.start()
    try:
        ledger.wait_for_writes(100, timeout=30)
        stopped = time.monotonic()
        docker('exec', host, 'systemctl', 'stop', f'redis@{port}')
        # systemctl returns once the server exited: its shutdown waited for the replica and handed the slots over.
        cluster.wait_for(lambda: cluster.client_at(replica).execute_command('ROLE')[0] == 'master', 60, interval=0.05,
                         what=f'{replica} to take over from the stopped {master}')
        took_over = time.monotonic() - stopped
        docker('exec', host, 'systemctl', 'start', f'redis@{port}')
        cluster.wait_for(lambda: cluster.client_at(master).execute_command('ROLE')[0] in ('slave', 'replica'), 60,
                         what=f'{master} back as a replica')
        count = len(ledger.acknowledged)
        ledger.wait_for_writes(count + 100, timeout=30)
    finally:
        ledger.stop()
    settle(cluster)
    back_as = cluster.client_at(master).execute_command('ROLE')[0]
    record = HandoverRecord(settings, zones, master, replica, took_over, len(ledger.acknowledged), ledger.lost(), back_as, cluster.info())
    print(f'\n[shutdown handover on Valkey 9.1] {master} stopped; {replica} master after {took_over:.2f} s (node timeout '
          f'{NODE_TIMEOUT:.0f} s); {record.acknowledged} writes acknowledged, {len(record.lost)} lost; settings {settings}')
    return record


def test_each_instance_announces_its_zone_and_hands_over_on_shutdown(handover):
    for node, values in handover.settings.items():
        assert values == {'availability-zone': handover.zones[node], 'shutdown-on-sigterm': 'failover'}, (node, values)


def test_a_master_stopped_by_systemd_hands_its_slots_to_its_replica_within_the_node_timeout(handover):
    # Without the handover the replica waits for the master to be flagged failed: more than the node timeout.
    assert handover.took_over < NODE_TIMEOUT, f'{handover.replica} took over after {handover.took_over:.2f} s'
    assert handover.acknowledged >= 200 and handover.lost == {}, (handover.acknowledged, list(handover.lost.items())[:5])
    assert handover.back_as in ('slave', 'replica')
    assert handover.report['problems'] == [], handover.report['problems']
