"""The modules against servers secured like production: TLS only (port 0), cluster bus and replication over TLS,
client certificates required, ACL users from the rendered ACL file with the default user off.

One 6-node cluster per build, formed by redis_cluster_create in a single -vvv --diff run under a command-line
sampler; the tests read that run and then probe the cluster.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List

import pytest
import redis
from cryptography import x509
from redis.crc import key_slot

from cmdline_sampler import CommandLineSampler
from load import AckLedger
from pki import LoopbackPki, make_loopback_pki
from playbook import PlaybookRun, run_tasks
from servers import RedisServer, cluster_info, cluster_nodes_snapshot, raw_command

from ansible_collections.hashslot.redis.plugins.module_utils.acl import (
    ADMIN_RULES, APPLICATION_RULES, acl_file_lines, replication_rules,
)

ADMIN = ('hashslot-admin', 'admin-Tls-7c21e9d4')
REPLICATION = ('hashslot-replication', 'repl-Tls-3b8d40f2')
APP = ('app', 'app-Tls-91f0aa5e')
WRONG_PASSWORD = 'wrong-Tls-5d17c3b8'
ZONES = 'abc'


@pytest.fixture(scope='session')
def pki(tmp_path_factory) -> LoopbackPki:
    return make_loopback_pki(str(tmp_path_factory.mktemp('pki')))


@dataclass
class SecuredNodes:
    nodes: List[RedisServer]
    pki: LoopbackPki

    @property
    def spec(self) -> List[Dict[str, Any]]:
        return [dict(node.node, zone=ZONES[index % len(ZONES)]) for index, node in enumerate(self.nodes)]

    @property
    def zones(self) -> Dict[str, str]:
        return {node.address: ZONES[index % len(ZONES)] for index, node in enumerate(self.nodes)}

    def new_node(self, factory) -> RedisServer:
        """One more empty node secured like these (TLS only, the same ACL file, the replication user), the test's
        clients logging in as the admin."""
        acl = os.path.join(factory.root, 'users.acl')
        node = factory.start(1, tls=self.pki.as_server_tls(), aclfile=acl, masteruser=REPLICATION[0])[0]
        node.auth = ADMIN
        raw_command(node, 'CONFIG', 'SET', 'masterauth', REPLICATION[1])
        return node

    def app_ledger(self) -> AckLedger:
        """The application user writing through a TLS cluster client (unique keys and 64 counters), started."""
        login = dict(username=APP[0], ssl=True, ssl_ca_certs=self.pki.ca, ssl_certfile=self.pki.cert, ssl_keyfile=self.pki.key)
        return AckLedger([node.address for node in self.nodes], password=APP[1], counters=64, client_options=login).start()

    def login(self, user=ADMIN, **overrides: Any) -> Dict[str, Any]:
        """The modules' connection options: TLS with the client certificate, as `user`; overrides drop (None) or replace."""
        options = dict(login_user=user[0], login_password=user[1], tls=True, ca_certs=self.pki.ca,
                       client_cert=self.pki.cert, client_key=self.pki.key)
        options.update(overrides)
        return {name: value for name, value in options.items() if value is not None}


@pytest.fixture(scope='module')
def secured(module_servers, pki) -> SecuredNodes:
    acl = os.path.join(module_servers.root, 'users.acl')
    users = [
        {'name': ADMIN[0], 'password': ADMIN[1], 'rules': list(ADMIN_RULES)},
        {'name': REPLICATION[0], 'password': REPLICATION[1],
         'rules': replication_rules(module_servers.build.flavor, module_servers.build.version)},
        {'name': APP[0], 'password': APP[1], 'rules': list(APPLICATION_RULES)},
    ]
    with open(acl, 'w') as handle:
        handle.write('\n'.join(acl_file_lines(users)) + '\n')
    nodes = module_servers.start(6, tls=pki.as_server_tls(), aclfile=acl, masteruser=REPLICATION[0])
    for node in nodes:
        node.auth = ADMIN
        # After start, so that no secret is on a server's command line either.
        raw_command(node, 'CONFIG', 'SET', 'masterauth', REPLICATION[1])
    return SecuredNodes(nodes, pki)


@dataclass
class FormedRun:
    run: PlaybookRun
    sampler: CommandLineSampler


@pytest.fixture(scope='module')
def formed(secured) -> FormedRun:
    """Create, create again, check, and one runtime setting (with a secret one already in place), all at -vvv --diff."""
    login = secured.login()
    tasks = [
        {'hashslot.redis.redis_cluster_create': {'nodes': secured.spec, 'replicas': 1, **login}},
        {'hashslot.redis.redis_cluster_create': {'nodes': secured.spec, 'replicas': 1, **login}},
        {'hashslot.redis.redis_cluster_info': {'node': secured.nodes[0].node, 'zones': secured.zones, 'fail_on_problems': True, **login}},
        {'hashslot.redis.redis_config': {'node': secured.nodes[1].node, **login,
                                         'settings': {'maxmemory-policy': 'allkeys-lru', 'masterauth': REPLICATION[1]}}},
    ]
    with CommandLineSampler(ADMIN[1], REPLICATION[1]) as sampler:
        run = run_tasks(tasks, verbosity=3, diff=True)
    return FormedRun(run, sampler)


def speaks_plain_resp(port: int) -> bool:
    """Whether a plaintext client gets a RESP reply (any +, - or : line) to PING on the port."""
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=3) as sock:
            sock.sendall(b'PING\r\n')
            reply = sock.recv(64)
    except OSError:
        return False
    return reply[:1] in (b'+', b'-', b':')


def config_get(node: RedisServer, name: str) -> str:
    reply = raw_command(node, 'CONFIG', 'GET', name)
    return dict(zip(reply[0::2], reply[1::2]))[name]


def test_cluster_forms_over_tls_as_the_admin_user_then_is_unchanged(secured, formed):
    created, again, info, configured = formed.run.results
    assert not created.get('failed'), created.get('msg')
    assert created['changed'] is True
    masters = [node for node in created['cluster'] if node['role'] == 'master']
    replicas = [node for node in created['cluster'] if node['role'] == 'replica']
    assert len(masters) == 3 and len(replicas) == 3
    zone_of = {node['address']: node['zone'] for node in created['cluster']}
    assert all(zone_of[replica['address']] != zone_of[replica['master_address']] for replica in replicas)

    assert not again.get('failed'), again.get('msg')
    assert again['changed'] is False and again['actions'] == []
    assert not info.get('failed'), (info.get('msg'), info.get('problems'))
    assert info['healthy'] is True and info['masters'] == 3 and info['replicas'] == 3

    assert not configured.get('failed'), configured.get('msg')
    assert configured['changed'] is True and configured['settings_changed'] == ['maxmemory-policy']
    assert config_get(secured.nodes[1], 'maxmemory-policy') == 'allkeys-lru'

    # The cluster formed although no node listens in plaintext: its bus runs over TLS.
    for node in secured.nodes:
        assert config_get(node, 'port') == '0' and config_get(node, 'tls-port') == str(node.port)
        assert config_get(node, 'tls-cluster') == 'yes' and config_get(node, 'tls-replication') == 'yes'
        assert cluster_info(node)['cluster_state'] == 'ok'
        assert not speaks_plain_resp(node.port), f'{node.address} answered a plaintext PING'


def test_replica_catches_up_over_tls_as_the_replication_user(secured, formed):
    created = formed.run.result(0)
    by_address = {node.address: node for node in secured.nodes}
    replica_entry = next(node for node in created['cluster'] if node['role'] == 'replica')
    master_entry = next(node for node in created['cluster'] if node['address'] == replica_entry['master_address'])
    master, replica = by_address[master_entry['address']], by_address[replica_entry['address']]
    owned = [tuple(int(bound) for bound in (text.split('-') * 2)[:2]) for text in master_entry['slots']]
    key = next(name for name in (f'secure:{index}' for index in range(10000))
               if any(start <= key_slot(name.encode()) <= end for start, end in owned))

    master.client().set(key, 'over-tls')
    reader = replica.client(single_connection_client=True)
    reader.execute_command('READONLY')
    deadline = time.monotonic() + 20
    while reader.get(key) != 'over-tls':
        assert time.monotonic() < deadline, reader.info('replication')
        time.sleep(0.05)
    assert reader.info('replication')['master_link_status'] == 'up'
    # The master sees its replica's link as a client of the replication user, over the TLS port.
    links = master.client().client_list(_type='replica')
    assert [link['user'] for link in links] == [REPLICATION[0]], links


@pytest.mark.one_build
def test_bad_credentials_fail_naming_the_node_and_change_nothing(secured, formed):
    first = secured.nodes[0]
    before = cluster_nodes_snapshot(secured.nodes)
    cases = {
        'wrong password': ('redis_cluster_create', {'nodes': secured.spec, **secured.login(login_password=WRONG_PASSWORD)},
                           'authentication failed'),
        'no client certificate': ('redis_cluster_info', {'node': first.node, **secured.login(client_cert=None, client_key=None)},
                                  'TLS handshake failed'),
        'plaintext to a TLS port': ('redis_cluster_info', {'node': first.node, **secured.login(tls=False)}, 'set tls=true'),
        'application user checks the cluster': ('redis_cluster_info', {'node': first.node, **secured.login(APP)}, 'no permissions'),
        'application user configures': ('redis_config', {'node': first.node, 'settings': {'maxmemory': '16mb'}, **secured.login(APP)},
                                        'no permissions'),
    }
    run = run_tasks([{f'hashslot.redis.{module}': params} for module, params, dummy in cases.values()])
    for (name, (dummy, dummy, reason)), result in zip(cases.items(), run.results):
        assert result.get('failed'), (name, result)
        assert first.address in result['msg'] and reason in result['msg'], (name, result['msg'])
        assert result['changed'] is False and 'Traceback' not in result['msg'] and 'MODULE FAILURE' not in result['msg'], (name, result)
    assert cluster_nodes_snapshot(secured.nodes) == before
    assert config_get(first, 'maxmemory') == '0'
    assert WRONG_PASSWORD not in run.output and WRONG_PASSWORD not in json.dumps(run.results)


@pytest.mark.one_build
def test_no_password_on_any_command_line_in_the_output_or_in_a_result(formed):
    assert formed.sampler.samples > 10 and formed.sampler.hits == []
    results = json.dumps(formed.run.results)
    for secret in (ADMIN[1], REPLICATION[1]):
        assert secret not in formed.run.output
        assert secret not in results
    # -vvv prints every module's arguments: the password and the secret setting are there, masked.
    assert '"login_password": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"' in formed.run.output
    assert '"masterauth": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"' in formed.run.output


def served_certificate(node: RedisServer, pki: LoopbackPki) -> x509.Certificate:
    """The certificate a node presents to a new TLS connection."""
    context = ssl.create_default_context(cafile=pki.ca)
    context.check_hostname = False
    context.load_cert_chain(pki.cert, pki.key)
    with socket.create_connection(('127.0.0.1', node.port), timeout=5) as sock, context.wrap_socket(sock) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def run_id(node: RedisServer) -> str:
    return re.search(r'run_id:(\w+)', raw_command(node, 'INFO', 'server')).group(1)


@pytest.mark.per_lineage
def test_renewed_certificate_is_reloaded_without_a_restart_and_its_end_reported(secured, formed):
    """A certificate renewed in place (same key and CA, 10 days left) is served by the node told to reload it, with no
    restart; redis_cluster_info reports it as expiring (30 days by default) and a scheduled check fails on it."""
    first, seed = secured.nodes[0], secured.nodes[1]
    pki, login = secured.pki, secured.login()
    with open(pki.cert, 'rb') as handle:
        original = handle.read()
    before, started_as = served_certificate(first, pki), run_id(first)
    reload = {'node': first.node, 'settings': {}, 'reload_tls': True, **login}
    info = {'node': seed.node, 'zones': secured.zones, **login}
    try:
        with open(pki.cert, 'wb') as handle:
            handle.write(pki.issue(days=10))
        run = run_tasks([
            {'hashslot.redis.redis_config': reload, 'check_mode': True},
            {'hashslot.redis.redis_cluster_info': info},
            {'hashslot.redis.redis_config': reload},
            {'hashslot.redis.redis_cluster_info': info},
            {'hashslot.redis.redis_cluster_info': dict(info, certificate_expiry_days=5, fail_on_problems=True)},
            {'hashslot.redis.redis_cluster_info': dict(info, fail_on_problems=True)},
        ])
        planned, untouched, reloaded, reported, narrow, alert = run.results
        renewed = served_certificate(first, pki)
    finally:
        with open(pki.cert, 'wb') as handle:
            handle.write(original)
        raw_command(first, 'CONFIG', 'SET', 'tls-cert-file', pki.cert)
    assert planned['changed'] and planned['tls_reloaded'] and not planned.get('failed')
    # Check mode changed nothing: every node still serves the 400-day certificate.
    assert untouched['healthy'], untouched['problems']
    assert {node['certificate_expires'][:10] for node in untouched['nodes']} == {before.not_valid_after_utc.strftime('%Y-%m-%d')}
    assert reloaded['changed'] and reloaded['tls_reloaded'] and reloaded['settings_changed'] == []
    assert renewed.serial_number != before.serial_number
    assert abs((renewed.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)).total_seconds() - 10 * 86400) < 600
    assert run_id(first) == started_as, 'the node restarted'
    # The cluster bus and the modules took the new certificate; the one problem is its end, named.
    assert reported['cluster_state'] == 'ok'
    assert [(problem['kind'], problem['node']) for problem in reported['problems']] == [('certificate_expiring', first.address)]
    assert re.search(r'in (9\.9|10\.0) day\(s\)', reported['problems'][0]['detail']), reported['problems'][0]
    expires = {node['address']: node['certificate_expires'] for node in reported['nodes']}
    assert expires[first.address] == renewed.not_valid_after_utc.strftime('%Y-%m-%dT%H:%M:%SZ')
    assert not narrow.get('failed') and narrow['healthy']
    assert alert.get('failed') and first.address in alert['msg'] and 'certificate_expiring' in alert['msg']
    # Put back (the finally above), the 400-day certificate is served again and the cluster is healthy.
    assert served_certificate(first, pki).serial_number == before.serial_number
    assert cluster_info(first)['cluster_state'] == 'ok'


class Monitor:
    """MONITOR on one node in a thread, every line kept, until stopped (or `max_seconds` pass)."""

    def __init__(self, node: RedisServer, max_seconds: float = 600):
        self.node = node
        self.lines: List[str] = []
        self.errors: List[str] = []
        self.max_seconds = max_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f'monitor-{node.port}', daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        client = self.node.client(socket_timeout=10)
        connection = client.connection_pool.get_connection()
        try:
            connection.send_command('MONITOR')
            connection.read_response()
            while not self._stop.is_set() and time.monotonic() < deadline:
                if connection.can_read(timeout=0.2):
                    self.lines.append(str(connection.read_response()))
        except (redis.RedisError, OSError) as exc:
            self.errors.append(f'{type(exc).__name__}: {exc}')
        finally:
            connection.disconnect()

    def start(self) -> 'Monitor':
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.mark.atomic_migration
def test_atomic_migration_over_tls_as_the_replication_user_loses_nothing(build, module_servers, secured, formed):
    """Valkey 9's atomic slot migration under the secure defaults: the source logs in to the target over TLS as the
    replication user (the rules the role grants on Valkey 9) and replays the slots' keys and the application's writes
    as that user. A new master is rebalanced onto and drained again while the application user writes through a TLS
    cluster client; the replication user still cannot read keys or change the configuration."""
    new = secured.new_node(module_servers)
    ledger = secured.app_ledger()
    login = secured.login()
    seed = secured.nodes[0].node
    tasks = [
        {'hashslot.redis.redis_cluster_node': {'cluster': seed, 'node': new.node, 'role': 'master', **login}},
        {'hashslot.redis.redis_cluster_reshard': {'node': seed, 'method': 'atomic', **login}},
        {'hashslot.redis.redis_cluster_reshard': {'node': seed, 'action': 'drain', 'source': new.node, **login}},
        {'hashslot.redis.redis_cluster_node': {'cluster': seed, 'node': new.node, 'state': 'absent', **login}},
        {'hashslot.redis.redis_cluster_info': {'node': seed, 'zones': secured.zones, **login}},
    ]
    try:
        ledger.wait_for_writes(2000, timeout=60)
        run = run_tasks(tasks)
        ledger.wait_for_writes(len(ledger.acknowledged) + 250, timeout=30)
    finally:
        ledger.stop()
    joined, rebalanced, drained, removed, report = run.results
    for name, result in (('join', joined), ('rebalance', rebalanced), ('drain', drained), ('remove', removed)):
        assert not result.get('failed') and result['changed'] is True, (name, result.get('msg'), run.output[-3000:])
    for result in (rebalanced, drained):
        assert result['method'] == 'atomic' and result['moved_slots'] == 4096 and result['moved_keys'] > 0, result
        assert all(job['state'] == 'success' and job['attempts'] == 1 for job in result['jobs']), result['jobs']
    assert [problem['kind'] for problem in report['problems']] == [], report['problems']
    assert len(ledger.acknowledged) >= 2250 and ledger.lost() == {}, (len(ledger.acknowledged), ledger.errors[:5])
    replication = secured.nodes[0].client(username=REPLICATION[0], password=REPLICATION[1])
    for command in (('GET', 'ledger:1'), ('KEYS', '*'), ('CONFIG', 'GET', 'dir'), ('FLUSHALL',)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            replication.execute_command(*command)
    print(f"\natomic over TLS: {len(ledger.acknowledged)} writes acknowledged, 0 lost; rebalance "
          f"{[(job['slot_count'], job['keys'], job['seconds']) for job in rebalanced['jobs']]}, drain "
          f"{[(job['slot_count'], job['keys'], job['seconds']) for job in drained['jobs']]} (slots, keys, s per job)")


@pytest.mark.one_build
def test_reshard_drain_and_failover_over_tls_under_load_leak_no_secret(build, module_servers, secured, formed):
    """The production path under the secure defaults: a new master joins and is rebalanced onto (`MIGRATE ... AUTH2`
    between TLS-only nodes), drained again, and a replica is promoted (`default` mode), at -vvv, as the admin user,
    while the application user writes through a TLS cluster client (unique keys and 64 counters) and MONITOR on every
    node, each node's SLOWLOG (every command logged) and every command line on this machine are searched for the
    passwords. Last in the file: it changes the cluster the tests above read."""
    new = secured.new_node(module_servers)
    everyone = secured.nodes + [new]
    for node in everyone:
        raw_command(node, 'CONFIG', 'SET', 'slowlog-log-slower-than', '0')
        raw_command(node, 'CONFIG', 'SET', 'slowlog-max-len', '200000')
        raw_command(node, 'SLOWLOG', 'RESET')
    replica = next(node for node in formed.run.result(0)['cluster'] if node['role'] == 'replica')
    replica_node = {'host': '127.0.0.1', 'port': int(replica['address'].rsplit(':', 1)[1])}
    monitors = [Monitor(node).start() for node in everyone]
    ledger = secured.app_ledger()
    login = secured.login()
    seed = secured.nodes[0].node
    tasks = [
        {'hashslot.redis.redis_cluster_node': {'cluster': seed, 'node': new.node, 'role': 'master', **login}},
        # The keys method: MIGRATE ... AUTH2 is what MONITOR and SLOWLOG are searched for.
        {'hashslot.redis.redis_cluster_reshard': {'node': seed, 'method': 'keys', **login}},
        {'hashslot.redis.redis_cluster_reshard': {'node': seed, 'action': 'drain', 'source': new.node, 'method': 'keys', **login}},
        {'hashslot.redis.redis_failover': {'node': replica_node, **login}},
        {'hashslot.redis.redis_cluster_info': {'node': seed, 'zones': secured.zones, **login}},
    ]
    try:
        ledger.wait_for_writes(2000, timeout=60)
        with CommandLineSampler(ADMIN[1], REPLICATION[1], APP[1]) as sampler:
            run = run_tasks(tasks, verbosity=3)
        ledger.wait_for_writes(len(ledger.acknowledged) + 250, timeout=30)
    finally:
        ledger.stop()
        for monitor in monitors:
            monitor.stop()
    joined, rebalanced, drained, failed_over, report = run.results
    for name, result in (('join', joined), ('rebalance', rebalanced), ('drain', drained), ('failover', failed_over)):
        assert not result.get('failed') and result['changed'] is True, (name, result.get('msg'), run.output[-3000:])
    assert rebalanced['moved_slots'] == 4096 and rebalanced['moved_keys'] > 0, rebalanced
    assert drained['moved_slots'] == 4096 and drained['moved_keys'] > 0, drained
    assert failed_over['actions'][0]['old_master'] and not report.get('failed'), report
    assert [problem['kind'] for problem in report['problems']] == [], report['problems']

    assert len(ledger.acknowledged) >= 2250 and ledger.lost() == {}, (len(ledger.acknowledged), ledger.errors[:5])
    secrets = {'admin': ADMIN[1], 'replication': REPLICATION[1], 'application': APP[1]}
    # The migration ran through these servers' MONITOR and SLOWLOG: the AUTH2 of every MIGRATE is there, its password not.
    assert all(monitor.errors == [] for monitor in monitors), [monitor.errors for monitor in monitors]
    migrates = [line for monitor in monitors for line in monitor.lines if '"MIGRATE"' in line.upper()]
    assert migrates and all('"AUTH2"' in line.upper() for line in migrates), migrates[:3]
    slowlog = [' '.join(str(argument) for argument in entry['command'] if argument is not None) if isinstance(entry['command'], list)
               else str(entry['command']) for node in everyone for entry in node.client().slowlog_get(200000)]
    assert any('MIGRATE' in line.upper() for line in slowlog), slowlog[:5]
    assert sampler.samples > 10 and sampler.hits == []
    print(f'\nsecure operations: {len(ledger.acknowledged)} writes and {sum(ledger.counter_acked.values())} increments acknowledged, '
          f'{rebalanced["moved_keys"]} + {drained["moved_keys"]} keys moved, {len(migrates)} MIGRATE in MONITOR '
          f'(e.g. {migrates[0][:160]}), {len(slowlog)} SLOWLOG entries, {sampler.samples} command-line samples')
    results = json.dumps(run.results)
    for name, secret in secrets.items():
        assert secret not in run.output and secret not in results, f'{name} password in the -vvv output'
        assert not [line for monitor in monitors for line in monitor.lines if secret in line], f'{name} password in MONITOR'
        assert not [line for line in slowlog if secret in line], f'{name} password in SLOWLOG'
