"""The cluster of a molecule scenario as the controller sees it across the docker network (used by every scenario's tests).

Molecule runs these tests with its own inventory (MOLECULE_INVENTORY_FILE). The helpers below reach the
containers the way an operator's machine reaches its hosts: redis-py and ansible-playbook from the controller,
`docker` for the faults (kill, pause) that a test injects.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

import redis

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))

from load import AckLedger  # noqa: E402  (the integration tests' writer and its ledger)
from playbook import PlaybookRecap, run_playbook, run_tasks  # noqa: E402
from servers import source_tarball  # noqa: E402

PORT = 6379


class MoleculeCluster:
    """The scenario's hosts (containers), their addresses on the scenario network and the cluster's password."""

    def __init__(self, inventory_file: str):
        # The directory holds molecule's inventory file with group_vars/ and host_vars/ beside it.
        self.inventory_dir = os.path.dirname(inventory_file)
        listing = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-inventory'), '-i', self.inventory_dir,
                                  '--list'], capture_output=True, text=True, check=True, timeout=120)
        self.inventory = json.loads(listing.stdout)

    def hosts(self, group: str = 'redis_cluster') -> List[str]:
        if group == 'all':
            # ansible-inventory --list gives 'all' only children: every host is in some group or under _meta.
            named = {host for name, members in self.inventory.items() if name != '_meta' for host in members.get('hosts', [])}
            return sorted(named | set(self.inventory.get('_meta', {}).get('hostvars', {})))
        return sorted(self.inventory.get(group, {}).get('hosts', []))

    def host_vars(self, host: str) -> Dict[str, Any]:
        return self.inventory['_meta']['hostvars'].get(host, {})

    def ports(self, host: str) -> List[int]:
        """The ports of the host's instances (redis_server_instances; one on 6379 unless the inventory says)."""
        return [int(instance['port']) for instance in self.host_vars(host).get('redis_server_instances') or [{'port': PORT}]]

    def nodes(self) -> List[Tuple[str, int]]:
        """Every instance as (container, port), hosts in name order."""
        return [(host, port) for host in self.hosts() for port in self.ports(host)]

    def node_addresses(self) -> List[str]:
        """Every instance as ip:port on the scenario network."""
        return [f'{self.address(host)}:{port}' for host, port in self.nodes()]

    @property
    def secure(self) -> Dict[str, bool]:
        """Which of the role's secure defaults the inventory keeps: ACL users and TLS (both on unless turned off)."""
        first = self.host_vars(self.hosts()[0])
        return {'acl': bool(first.get('redis_server_acl_enabled', True)), 'tls': bool(first.get('redis_server_tls_enabled', True))}

    @property
    def name(self) -> str:
        """What the instances are named after (units <name>@<port>, /etc/<name>, the service user): the flavor the
        cluster was deployed with, unless the inventory names them (redis_server_name)."""
        first = self.host_vars(self.hosts()[0])
        return str(first.get('redis_server_name') or first.get('redis_install_flavor', 'redis'))

    @property
    def user(self) -> Optional[str]:
        """The ACL admin user, when the inventory has ACL users."""
        return str(self.host_vars(self.hosts()[0]).get('redis_server_admin_user', 'hashslot-admin')) if self.secure['acl'] else None

    @property
    def password(self) -> str:
        """The admin's password with ACL users, otherwise requirepass (empty when none)."""
        name = 'redis_server_admin_password' if self.secure['acl'] else 'redis_server_password'
        return str(self.host_vars(self.hosts()[0]).get(name, '') or '')

    def secrets(self) -> Dict[str, str]:
        """Every password the inventory gives the roles, by what it is (the admin's, the replication user's, the
        exporter's, each ACL user's, requirepass)."""
        first = self.host_vars(self.hosts()[0])
        names = ('redis_server_admin_password', 'redis_server_replication_password', 'redis_exporter_acl_password', 'redis_server_password')
        found = {name: str(first[name]) for name in names if first.get(name)}
        return found | {f"acl user {user['name']}": str(user['password']) for user in first.get('redis_server_acl_users') or []}

    def tls_files(self) -> Dict[str, str]:
        """The CA and a client certificate (the first host's, serverAuth+clientAuth) the role generated on the controller."""
        pki = os.path.join(self.inventory_dir, 'pki')
        first = self.hosts()[0]
        return {'ca_certs': os.path.join(pki, 'ca.crt'), 'client_cert': os.path.join(pki, f'{first}.crt'),
                'client_key': os.path.join(pki, f'{first}.key')}

    def connection(self) -> Dict[str, Any]:
        """The modules' connection options (login_user, login_password, tls and its files) for this inventory."""
        options: Dict[str, Any] = {}
        if self.user:
            options['login_user'] = self.user
        if self.password:
            options['login_password'] = self.password
        if self.secure['tls']:
            options.update(tls=True, **self.tls_files())
        return options

    @staticmethod
    def address(host: str) -> str:
        return docker('inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', host).strip()

    def login(self) -> Dict[str, Any]:
        """redis-py's options to log in as the admin: user, password, TLS with the controller's client certificate."""
        options: Dict[str, Any] = dict(username=self.user, password=self.password or None)
        if self.secure['tls']:
            files = self.tls_files()
            options.update(ssl=True, ssl_ca_certs=files['ca_certs'], ssl_certfile=files['client_cert'],
                           ssl_keyfile=files['client_key'], ssl_check_hostname=True)
        return options

    def client(self, host: str, port: Optional[int] = None, timeout: float = 3, **kwargs: Any) -> redis.Redis:
        """redis-py to one node as the admin (keyword arguments override: username, password, ssl_certfile ...)."""
        options = self.login()
        options.update(kwargs)
        return redis.Redis(host=self.address(host), port=port or self.ports(host)[0], decode_responses=True, socket_timeout=timeout,
                           socket_connect_timeout=timeout, **options)

    def client_at(self, address: str, **kwargs: Any) -> redis.Redis:
        """client() to a node named by its address (ip:port) as the cluster reports it."""
        return self.client(self.host_of(address), int(address.rsplit(':', 1)[1]), **kwargs)

    def host_of(self, address: str) -> str:
        """Container name of a node address (ip:port) as the cluster reports it."""
        ip = address.split(':')[0]
        for host in self.inventory['_meta']['hostvars']:
            if self.address(host) == ip:
                return host
        raise AssertionError(f'no container has the address {address}')

    def topology(self, host: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
        """CLUSTER NODES from one node, keyed by ip:port: role, master id, flags, slots."""
        host = host or self.hosts()[0]
        nodes: Dict[str, Dict[str, Any]] = {}
        for line in self.client(host).execute_command('CLUSTER', 'NODES').splitlines():
            fields = line.split()
            address = fields[1].split('@')[0]
            flags = fields[2].split(',')
            nodes[address] = {'id': fields[0], 'flags': flags, 'master_id': fields[3],
                              'role': 'master' if 'master' in flags else 'replica', 'slots': fields[8:]}
        return nodes

    def masters(self, host: Optional[str] = None) -> List[str]:
        return sorted(address for address, node in self.topology(host).items()
                      if node['role'] == 'master' and node['slots'] and 'fail' not in node['flags'])

    def info(self, **extra: Any) -> Dict[str, Any]:
        """hashslot.redis.redis_cluster_info from the controller (the collection's own cluster check)."""
        first = self.hosts()[0]
        params: Dict[str, Any] = {'node': {'host': self.address(first), 'port': self.ports(first)[0]}}
        params.update(self.connection())
        params['zones'] = self.zones()
        params.update(extra)
        return run_tasks([{'hashslot.redis.redis_cluster_info': params}]).result(0)

    def zones(self) -> Dict[str, str]:
        return {f'{self.address(host)}:{port}': str(self.host_vars(host).get('redis_zone', host)) for host, port in self.nodes()}

    def key_count(self) -> int:
        return sum(int(self.client_at(address).dbsize()) for address in self.masters())

    def ledger(self, **kwargs: Any) -> AckLedger:
        """The acknowledgement ledger's writer, logged in as the admin (over TLS when the cluster runs it)."""
        login = self.login()
        password = login.pop('password')
        return AckLedger(self.node_addresses(), password=password, client_options=login, **kwargs)

    def cli_check(self, container: str, address: str, cli: str = 'redis-cli') -> str:
        """`<cli> --cluster check` inside a container, logged in as the admin, over TLS with the host's own
        certificate when the cluster runs it (see cli_cluster_check)."""
        options: List[str] = ['--user', self.user] if self.user else []
        if self.secure['tls']:
            tls = f'/etc/{self.name}/tls'
            options += ['--tls', '--cacert', f'{tls}/ca.crt', '--cert', f'{tls}/{self.name}.crt', '--key', f'{tls}/{self.name}.key']
        return cli_cluster_check(container, address, self.password, cli=cli, options=options)

    def playbook(self, playbook: str, extra_vars: Optional[Dict[str, Any]] = None, inventory: Optional[str] = None,
                 **kwargs: Any) -> PlaybookRecap:
        """ansible-playbook against the scenario's containers, as the operator runs it from a checkout."""
        env = {'ANSIBLE_PYTHON_INTERPRETER': '/usr/bin/python3', 'ANSIBLE_PIPELINING': 'True', 'ANSIBLE_FORKS': '8'}
        return run_playbook(playbook, inventory or self.inventory_dir, extra_vars=extra_vars, env=env, **kwargs)

    def wait_for(self, predicate, timeout: float, interval: float = 0.5, what: str = 'condition') -> float:
        """Seconds until predicate() is true; fails the test after `timeout`."""
        started = time.monotonic()
        last_error = ''
        while time.monotonic() - started < timeout:
            try:
                if predicate():
                    return time.monotonic() - started
            except (redis.RedisError, OSError, KeyError, AssertionError) as exc:
                last_error = f' (last error: {exc})'
            time.sleep(interval)
        raise AssertionError(f'{what} not reached within {timeout:.0f} s{last_error}')


def upgrade_vars(flavor: str, version: str, tool_name: str) -> Dict[str, str]:
    """upgrade.yml's extra variables for a source build of tools/redis-servers' NAME (its tarball from the controller)."""
    archive, checksum = source_tarball(tool_name)
    return {'redis_install_flavor': flavor, 'redis_install_method': 'source', 'redis_install_version': version,
            'redis_install_source_archive': archive, 'redis_install_source_checksum': checksum}


def assert_switch_refused(cluster: MoleculeCluster, recap: PlaybookRecap, named: str) -> None:
    """upgrade.yml stopped in its checks, naming every node of the cluster ('<address> runs Redis 8.0.2'), with no
    task changed."""
    tail = '\n'.join(recap.output.splitlines()[-40:])
    assert recap.returncode != 0, tail
    assert 'Refusing the upgrade, nothing was changed' in recap.output, tail
    for address in cluster.node_addresses():
        assert f'{address} {named}' in recap.output, (address, tail)
    assert recap.total('changed') == 0, recap.changed_tasks()


EXPORTER_PORT = 9121


def exporter_target(cluster: MoleculeCluster, host: str, port: int = PORT) -> str:
    """The URI the redis_exporter role gives an instance of `host` (redis_exporter_redis_host: ansible_host, else the
    inventory name), the key of its password file and its `instance` label."""
    scheme = 'rediss' if cluster.secure['tls'] else 'redis'
    return f"{scheme}://{cluster.host_vars(host).get('ansible_host', host)}:{port}"


def exporter_scrape(address: str, target: Optional[str] = None, port: int = EXPORTER_PORT, timeout: float = 10) -> str:
    """What Prometheus gets from an exporter: /scrape?target=<uri> (multi-target) or /metrics."""
    path = '/scrape?' + urllib.parse.urlencode({'target': target}) if target else '/metrics'
    with urllib.request.urlopen(f'http://{address}:{port}{path}', timeout=timeout) as response:
        return response.read().decode()


def metric_samples(text: str, name: str) -> List[tuple]:
    """The samples of one metric in the text exposition format, as (labels, value) pairs."""
    samples = []
    for line in text.splitlines():
        if not line.startswith(name) or line[len(name):len(name) + 1] not in ('{', ' '):
            continue
        labels: Dict[str, str] = {}
        head, value = line.rsplit(' ', 1)
        if '{' in head:
            for pair in head[head.index('{') + 1:head.rindex('}')].split('",'):
                if '=' in pair:
                    key, raw = pair.split('=', 1)
                    labels[key.strip(',')] = raw.strip('"')
        samples.append((labels, float(value)))
    return samples


def docker(*args: str, check: bool = True) -> str:
    completed = subprocess.run(['docker', *args], capture_output=True, text=True, timeout=120, check=False)
    if check and completed.returncode != 0:
        raise AssertionError(f'docker {" ".join(args)} failed: {completed.stderr.strip()}')
    return completed.stdout


# ---------------------------------------------------------------------------------------------------------------------
# Added for the upgrade tests (molecule/default/tests/test_upgrade.py): a write load that stays small over a long operation, and a
# sampler that watches how many members of each shard are down at once and what the cluster reports meanwhile.
# ---------------------------------------------------------------------------------------------------------------------

import collections  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402


class PacedLedger(AckLedger):
    """AckLedger writing at most `writes_per_second`.

    An upgrade that compiles a server runs for many minutes: at the default rate, the writer would put millions of
    keys into 128 MB instances and make the final read-back of the ledger take longer than the upgrade.
    """

    def __init__(self, addresses: List[str], writes_per_second: float = 200.0, **kwargs: Any):
        super().__init__(addresses, rate=writes_per_second, **kwargs)


def paced_ledger(cluster: MoleculeCluster, writes_per_second: float = 200.0, **kwargs: Any) -> PacedLedger:
    """cluster.ledger(...) at a bounded write rate (same nodes, same login)."""
    login = cluster.login()
    password = login.pop('password')
    return PacedLedger(cluster.node_addresses(), writes_per_second=writes_per_second, password=password, client_options=login, **kwargs)


class ShardSampler:
    """Samples every node about every `interval` seconds while an operation runs, in a thread that stops by itself.

    A node is down when it does not answer PING with PONG within `timeout` (refused, timed out, LOADING, ...).
    The shards are the groups master + replicas found when the sampler is made; a failover swaps roles inside a
    group, so the groups stay valid through a rolling restart. Each sample also asks CLUSTER INFO of one node that
    answered this sample and the previous one (a node that has just started may not have heard from the others yet).
    """

    def __init__(self, cluster: MoleculeCluster, interval: float = 0.5, timeout: float = 1.0, max_seconds: float = 1800.0):
        topology = cluster.topology()
        by_id = {node['id']: address for address, node in topology.items()}
        groups: Dict[str, List[str]] = {address: [address] for address, node in topology.items()
                                        if node['role'] == 'master' and node['slots']}
        for address, node in topology.items():
            if node['role'] == 'replica' and by_id.get(node['master_id']) in groups:
                groups[by_id[node['master_id']]].append(address)
        self.shards: List[List[str]] = [sorted(members) for dummy, members in sorted(groups.items())]
        self.addresses = sorted(address for members in self.shards for address in members)
        self.interval = interval
        self.max_seconds = max_seconds
        self._clients = {address: redis.Redis(host=address.rsplit(':', 1)[0], port=int(address.rsplit(':', 1)[1]), decode_responses=True,
                                              socket_timeout=timeout, socket_connect_timeout=timeout, **cluster.login())
                         for address in self.addresses}
        self.samples = 0
        self.max_down = [0] * len(self.shards)
        # For each shard, when (seconds after start) and which nodes were down at its worst sample.
        self.worst: List[tuple] = [(0.0, [])] * len(self.shards)
        self.down_samples: Dict[str, int] = {address: 0 for address in self.addresses}
        self.states: collections.Counter = collections.Counter()
        self.not_ok: List[tuple] = []
        # Exceptions of the sampler itself (not of the nodes): a test should see them rather than fewer samples.
        self.failures: List[str] = []
        self.started = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='shard-sampler', daemon=True)

    def _answers(self, address: str) -> bool:
        try:
            return self._clients[address].ping() is True
        except (redis.RedisError, OSError):
            return False

    def _cluster_state(self, address: str) -> str:
        try:
            return str(self._clients[address].cluster('info').get('cluster_state', 'missing'))
        except (redis.RedisError, OSError) as exc:
            return f'error: {type(exc).__name__}'

    def _sample(self, pool: ThreadPoolExecutor, previous_up: set) -> set:
        answers = dict(zip(self.addresses, pool.map(self._answers, self.addresses)))
        elapsed = time.monotonic() - self.started
        up = {address for address, answered in answers.items() if answered}
        for index, members in enumerate(self.shards):
            down = [address for address in members if address not in up]
            if len(down) > self.max_down[index]:
                self.max_down[index] = len(down)
                self.worst[index] = (round(elapsed, 1), down)
        for address in self.addresses:
            if address not in up:
                self.down_samples[address] += 1
        witnesses = [address for address in self.addresses if address in up and address in previous_up] or sorted(up)
        if witnesses:
            state = self._cluster_state(witnesses[0])
            if state != 'ok':
                self.not_ok.append((round(elapsed, 1), witnesses[0], state))
        else:
            state = 'no node answered'
            self.not_ok.append((round(elapsed, 1), '-', state))
        self.states[state] += 1
        self.samples += 1
        return up

    def _run(self) -> None:
        deadline = self.started + self.max_seconds
        previous_up = set(self.addresses)
        with ThreadPoolExecutor(max_workers=len(self.addresses), thread_name_prefix='shard-sampler-ping') as pool:
            while not self._stop.is_set() and time.monotonic() < deadline:
                began = time.monotonic()
                try:
                    previous_up = self._sample(pool, previous_up)
                except Exception as exc:  # noqa: BLE001  (kept for the test to report; the sampling goes on)
                    self.failures.append(f'{type(exc).__name__}: {exc}')
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))
        for client in self._clients.values():
            client.close()

    def start(self) -> 'ShardSampler':
        self.started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def summary(self) -> str:
        shards = ', '.join(f'{"+".join(members)}: max {self.max_down[index]} down'
                           for index, members in enumerate(self.shards))
        return (f'{self.samples} samples; {shards}; cluster_state {dict(self.states)}; '
                f'samples down per node {self.down_samples}' + (f'; sampler errors {self.failures[:3]}' if self.failures else ''))


# systemd's catalog ids of "Stopping <unit>" and "Started <unit>" (the latter sent once a Type=notify server is ready).
UNIT_STOPPING = 'de5b426a63be47a7b6ac3eaac82e2f6f'
UNIT_STARTED = '39f53479d3a045ac8e11786248231fbf'


def unit_down_windows(container: str, unit: str, since: float) -> List[tuple]:
    """(stopping, ready) wall-clock times of each stop of `unit` since `since` (epoch seconds), from the container's journal.

    Exact where a sampler only probes: a restart shorter than the sampling interval still shows here. A stop with no
    "Started" after it gives (stopping, inf). Containers share the controller's clock.
    """
    output = docker('exec', container, 'journalctl', '--no-pager', '-o', 'json', '--output-fields', 'MESSAGE_ID,UNIT',
                    '--since', f'@{int(since)}', f'UNIT={unit}')
    windows: List[tuple] = []
    stopping: Optional[float] = None
    for line in output.splitlines():
        entry = json.loads(line)
        when = int(entry['__REALTIME_TIMESTAMP']) / 1e6
        if entry.get('MESSAGE_ID') == UNIT_STOPPING and stopping is None:
            stopping = when
        elif entry.get('MESSAGE_ID') == UNIT_STARTED and stopping is not None:
            windows.append((stopping, when))
            stopping = None
    if stopping is not None:
        windows.append((stopping, float('inf')))
    return windows


# --- faults (molecule/scale/tests/test_faults.py) --------------------------------------------------------------------

def cli_cluster_check(container: str, address: str, password: str, cli: str = 'redis-cli', options: Optional[List[str]] = None) -> str:
    """`<cli> --cluster check` inside a container, for hosts whose tools are Valkey's (valkey-cli, no redis-cli).

    valkey-cli 8 reads the password from REDISCLI_AUTH like redis-cli (it does not know VALKEYCLI_AUTH), so the
    secret stays off the command line: `docker exec -e REDISCLI_AUTH` copies it from docker's own environment, so it
    is not on the controller's command lines either.
    """
    command = ['exec']
    environment = dict(os.environ)
    if password:
        command += ['-e', 'REDISCLI_AUTH']
        environment['REDISCLI_AUTH'] = password
    completed = subprocess.run(['docker', *command, container, cli, *(options or []), '--cluster', 'check', address],
                               capture_output=True, text=True, timeout=120, env=environment, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


# --- secure scenario: every command line on the controller and in the containers, while a playbook runs ---------

# Runs inside a container (its text carries no secret): the distinct command lines of every process, every 20 ms,
# into /run/hs-cmdlines.txt until /run/hs-cmdlines.stop appears (or 30 minutes pass). A process is read at every sample
# for its first 2 s (its command line may change when it execs) and every 50th sample after that: reading every
# /proc/<pid>/cmdline every 20 ms cost a good part of a core, taken from the playbook under test.
_CONTAINER_SAMPLER = r"""
import os, time
seen, first_seen, samples, deadline = set(), {}, 0, time.time() + 1800
while not os.path.exists('/run/hs-cmdlines.stop') and time.time() < deadline:
    now, pids = time.monotonic(), [pid for pid in os.listdir('/proc') if pid.isdigit()]
    first_seen = {pid: first_seen.get(pid, now) for pid in pids}
    for pid in pids:
        if now - first_seen[pid] < 2 or samples % 50 == 0:
            try:
                seen.add(open('/proc/%s/cmdline' % pid, 'rb').read().replace(b'\0', b' ').decode('utf-8', 'replace'))
            except OSError:
                pass
    samples += 1
    time.sleep(0.02)
with open('/run/hs-cmdlines.txt', 'w') as out:
    out.write('%d\n' % samples + '\n'.join(sorted(seen)))
"""


class CommandLines:
    """The distinct command lines seen on the controller and in each container while the block runs."""

    def __init__(self, containers: List[str], interval: float = 0.01):
        self.containers = containers
        self.interval = interval
        self.controller: set = set()
        self.samples = 0
        self.in_containers: Dict[str, List[str]] = {}
        self.container_samples: Dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # As the container sampler: each process at every sample for its first 2 s, every 50th sample after that.
        first_seen: Dict[str, float] = {}
        while not self._stop.is_set():
            now = time.monotonic()
            pids = [pid for pid in os.listdir('/proc') if pid.isdigit()]
            first_seen = {pid: first_seen.get(pid, now) for pid in pids}
            for pid in pids:
                if now - first_seen[pid] < 2 or self.samples % 50 == 0:
                    try:
                        with open(f'/proc/{pid}/cmdline', 'rb') as handle:
                            self.controller.add(handle.read().replace(b'\0', b' ').decode('utf-8', 'replace'))
                    except OSError:
                        pass
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> 'CommandLines':
        for container in self.containers:
            docker('exec', container, 'rm', '-f', '/run/hs-cmdlines.stop', '/run/hs-cmdlines.txt')
            docker('exec', '-d', container, 'python3', '-c', _CONTAINER_SAMPLER)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for container in self.containers:
            docker('exec', container, 'touch', '/run/hs-cmdlines.stop')
        for container in self.containers:
            deadline = time.monotonic() + 30
            text = ''
            while time.monotonic() < deadline:
                text = docker('exec', container, 'cat', '/run/hs-cmdlines.txt', check=False)
                if text:
                    break
                time.sleep(0.2)
            lines = text.splitlines()
            self.container_samples[container] = int(lines[0]) if lines else 0
            self.in_containers[container] = lines[1:]

    def containing(self, secret: str) -> List[str]:
        """Every command line (where: line) that holds the secret."""
        hits = [f'controller: {line}' for line in self.controller if secret in line]
        for container, lines in self.in_containers.items():
            hits += [f'{container}: {line}' for line in lines if secret in line]
        return hits
