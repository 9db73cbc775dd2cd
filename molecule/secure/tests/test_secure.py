"""The secure defaults on three Debian 13 hosts (Valkey 8.1 package): ACL users, TLS everywhere, plaintext off,
secrets that never leak."""

from __future__ import annotations

import datetime
import json
import os
import socket
import ssl
import stat
import time
from typing import Any, Dict

import pytest
import redis
from cryptography import x509
from redis.cluster import ClusterNode, RedisCluster

from containers import CommandLines, docker, exporter_scrape, exporter_target, metric_samples, paced_ledger

testinfra_hosts = ['redis_cluster']
PORTS = (6379, 6380)


@pytest.fixture(scope='session')
def converged(cluster):
    """site.yml at -vvv while every command line is sampled; then site.yml again, which must change nothing."""
    started = time.monotonic()
    with CommandLines(cluster.hosts()) as lines:
        first = cluster.playbook('site.yml', verbosity=3)
    took = time.monotonic() - started
    assert first.returncode == 0, first.output[-6000:]
    second = cluster.playbook('site.yml')
    assert second.returncode == 0, second.output[-6000:]
    print(f'\nconverge at -vvv: {took:.0f} s, {len(first.output)} characters of output, {lines.samples} controller '
          f'samples, container samples {lines.container_samples}; second run changed {second.total("changed")}')
    return first, second, lines


def test_converge_leaks_no_secret(cluster, converged):
    first, dummy, lines = converged
    assert lines.samples > 100 and min(lines.container_samples.values()) > 100, (lines.samples, lines.container_samples)
    # The samplers saw the work: the modules running on the hosts, ansible-playbook on the controller.
    assert any('ansible-playbook' in line for line in lines.controller)
    assert any(f'{cluster.name}-server' in line for container in lines.in_containers.values() for line in container)
    for name, secret in cluster.secrets().items():
        assert secret not in first.output, f'{name} in the -vvv output'
        assert lines.containing(secret) == [], f'{name} on a command line'


def test_second_run_changes_nothing(converged):
    dummy, second, dummy_lines = converged
    assert second.total('changed') == 0, second.output[-6000:]


def test_cluster_is_healthy_over_tls_with_the_admin_user(cluster, converged):
    info = cluster.info(fail_on_problems=True)
    assert not info.get('failed'), (info.get('msg'), info.get('problems'))
    assert info['cluster_state'] == 'ok' and info['masters'] == 3 and info['replicas'] == 3
    assert json.dumps(info).count(cluster.password) == 0


def test_plaintext_is_closed_and_tls_needs_a_client_certificate(cluster, converged):
    host = cluster.hosts()[0]
    for port in PORTS:
        admin = cluster.client(host, port)
        assert admin.config_get('port') == {'port': '0'}
        assert admin.config_get('tls-port') == {'tls-port': str(port)}
        assert {name: admin.config_get(name)[name] for name in ('tls-cluster', 'tls-replication', 'tls-auth-clients')} == {
            'tls-cluster': 'yes', 'tls-replication': 'yes', 'tls-auth-clients': 'yes'}
        # Plaintext RESP on the port gets no answer a client could use.
        with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
            redis.Redis(host=cluster.address(host), port=port, socket_timeout=3, socket_connect_timeout=3).ping()
        # TLS without a client certificate: the handshake is refused.
        with pytest.raises((redis.ConnectionError, ssl.SSLError)):
            cluster.client(host, port, ssl_certfile=None, ssl_keyfile=None).ping()


def test_default_user_and_wrong_passwords_are_refused(cluster, converged):
    host = cluster.hosts()[1]
    with pytest.raises(redis.AuthenticationError):
        cluster.client(host, username=None, password=None).ping()
    with pytest.raises(redis.AuthenticationError):
        cluster.client(host, password='not-the-password').ping()
    with pytest.raises(redis.AuthenticationError):
        cluster.client(host, username='app', password='not-the-password').ping()
    assert cluster.client(host).acl_whoami() == cluster.user


def test_application_users_keep_to_their_rules(cluster, converged):
    first = cluster.host_vars(cluster.hosts()[0])
    app, reader = first['redis_server_acl_users']
    master = cluster.host_of(cluster.masters()[0])
    node = cluster.masters()[0]
    port = int(node.split(':')[1])
    client = cluster.client(master, port, username=app['name'], password=app['password'])
    key = next(f'secure-{index}' for index in range(10000)
               if cluster.client(master, port).cluster('keyslot', f'secure-{index}') in owned_slots(cluster, node))
    client.set(key, 'v')
    assert client.get(key) == 'v'
    for command in (('FLUSHALL',), ('CONFIG', 'GET', 'port'), ('DEBUG', 'SLEEP', '0'), ('ACL', 'LIST'), ('SHUTDOWN',)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
    read_only = cluster.client(master, port, username=reader['name'], password=reader['password'])
    assert read_only.get(key) == 'v'
    with pytest.raises(redis.exceptions.NoPermissionError):
        read_only.set(key, 'w')


def owned_slots(cluster, node):
    slots = set()
    for entry in cluster.topology()[node]['slots']:
        if entry.startswith('['):
            continue
        low, dummy, high = entry.partition('-')
        slots.update(range(int(low), int(high or low) + 1))
    return slots


def test_replicas_catch_up_over_tls_as_the_replication_user(cluster, converged):
    topology = cluster.topology()
    for address, node in topology.items():
        if node['role'] != 'replica':
            continue
        host, port = cluster.host_of(address), int(address.split(':')[1])
        replica = cluster.client(host, port)
        master_address = next(other for other, entry in topology.items() if entry['id'] == node['master_id'])
        master = cluster.client(cluster.host_of(master_address), int(master_address.split(':')[1]))

        def caught_up():
            replication = replica.info('replication')
            return (replication['master_link_status'] == 'up'
                    and replication['slave_repl_offset'] == master.info('replication')['master_repl_offset'])
        cluster.wait_for(caught_up, timeout=30, what=f'{address} catching up with {master_address}')
        assert replica.config_get('masteruser') == {'masteruser': 'hashslot-replication'}
    # The replication user can do nothing but replicate.
    replication_password = cluster.host_vars(cluster.hosts()[0])['redis_server_replication_password']
    with pytest.raises(redis.exceptions.NoPermissionError):
        cluster.client(cluster.hosts()[0], username='hashslot-replication', password=replication_password).get('k')


def test_files_are_root_owned_and_group_readable_only(host, cluster, converged):
    name = cluster.name
    for port in PORTS:
        for path in (f'/etc/{name}/{name}-{port}.conf', f'/etc/{name}/{name}-{port}.acl'):
            entry = host.file(path)
            assert (entry.user, entry.group) == ('root', name), path
            assert entry.mode & (stat.S_IRWXO | stat.S_IWGRP | stat.S_IXGRP) == 0, (path, oct(entry.mode))
        acl = host.file(f'/etc/{name}/{name}-{port}.acl').content_string
        assert acl.splitlines()[0].startswith('user default off ')
        assert '#' in acl and '>' not in acl
    for path in (f'/etc/{name}/tls/ca.crt', f'/etc/{name}/tls/{name}.crt', f'/etc/{name}/tls/{name}.key'):
        entry = host.file(path)
        assert (entry.user, entry.group) == ('root', name), path
        assert entry.mode & (stat.S_IRWXO | stat.S_IWGRP | stat.S_IXGRP) == 0, (path, oct(entry.mode))
    assert host.file(f'/etc/{name}/tls').mode & stat.S_IRWXO == 0
    assert {process.user for process in host.process.filter(comm=f'{name}-server')} == {name}


def test_failover_playbook_swaps_a_shard_and_back_over_tls_losing_nothing(cluster, converged):
    """playbooks/failover.yml with the secure defaults (the admin user over mutual TLS): a replica is named and
    promoted in `default` mode (its master stops writes and it catches up first), then its old master is named and
    promoted back, under the ledger (16 counters): no write or increment lost, every node's role back where it was,
    no password in either run's output."""
    before = cluster.topology()
    replica = sorted(address for address, node in before.items() if node['role'] == 'replica')[0]
    master = next(address for address, node in before.items() if node['id'] == before[replica]['master_id'])
    ledger = paced_ledger(cluster, 100, counters=16, max_seconds=600).start()
    ledger.wait_for_writes(100, timeout=30)
    try:
        swapped = cluster.playbook('playbooks/failover.yml', extra_vars={'redis_failover_node': replica})
        middle = cluster.topology()
        back = cluster.playbook('playbooks/failover.yml', extra_vars={'redis_failover_node': master})
    finally:
        ledger.stop()
    assert swapped.returncode == 0, swapped.output[-4000:]
    assert middle[replica]['role'] == 'master' and middle[master]['master_id'] == before[replica]['id'], middle
    assert back.returncode == 0, back.output[-4000:]
    after = cluster.topology()
    assert {address: node['role'] for address, node in after.items()} == {address: node['role'] for address, node in before.items()}
    lost = ledger.lost()
    print(f'\nfailover.yml over TLS, {replica} and back: {len(ledger.acknowledged)} writes and '
          f'{sum(ledger.counter_acked.values())} increments acknowledged, {len(ledger.errors)} refused, {len(lost)} lost')
    assert lost == {}, dict(list(lost.items())[:10])
    assert len(ledger.acknowledged) >= 100
    for secret in cluster.secrets().values():
        assert secret not in swapped.output and secret not in back.output


def drill_data(client: RedisCluster) -> Dict[str, Any]:
    """Keys of every type the restore must bring back as they were (strings, hashes, lists, sets, sorted sets, and
    strings with a day to live), written through the cluster; returns what each must read back as."""
    expected: Dict[str, Any] = {}
    pipe = client.pipeline()
    for number in range(400):
        pipe.set(f'restore:string:{number}', f'value-{number}')
        expected[f'restore:string:{number}'] = f'value-{number}'
        fields = {f'field-{index}': str(number * index) for index in range(5)}
        pipe.hset(f'restore:hash:{number}', mapping=fields)
        expected[f'restore:hash:{number}'] = fields
        items = [f'item-{number}-{index}' for index in range(4)]
        pipe.rpush(f'restore:list:{number}', *items)
        expected[f'restore:list:{number}'] = items
        members = {f'member-{number}-{index}' for index in range(3)}
        pipe.sadd(f'restore:set:{number}', *members)
        expected[f'restore:set:{number}'] = members
        scores = {f'player-{index}': float(number + index) / 4 for index in range(3)}
        pipe.zadd(f'restore:zset:{number}', scores)
        expected[f'restore:zset:{number}'] = sorted(scores.items(), key=lambda item: (item[1], item[0]))
        pipe.set(f'restore:expiring:{number}', str(number), ex=86400)
        expected[f'restore:expiring:{number}'] = str(number)
    pipe.execute()
    return expected


def read_back(client: RedisCluster, expected: Dict[str, Any]) -> Dict[str, Any]:
    """What the cluster holds now under each key of drill_data(), read the same way."""
    readers = {'hash': client.hgetall, 'list': lambda key: client.lrange(key, 0, -1), 'set': client.smembers,
               'zset': lambda key: client.zrange(key, 0, -1, withscores=True)}
    return {key: readers.get(key.split(':')[1], client.get)(key) for key in expected}


def test_restore_drill_brings_back_every_acknowledged_key_over_tls(cluster, converged, tmp_path):
    """The restore drill on systemd hosts with the secure defaults: backup.yml while the ledger writes, teardown.yml
    (every instance, its data and configuration gone), restore.yml (its refusals are test_site_local_ops.py's);
    then every key written before the backup started reads back with its value (every type, TTLs kept), the cluster
    is healthy over TLS with three masters in three zones, and the application users log in as before. The tests
    after this one (credentials rotated, the exporters) run on the restored cluster."""
    startup = [ClusterNode(cluster.address(host), port) for host, port in cluster.nodes()]
    client = RedisCluster(startup_nodes=startup, decode_responses=True, **cluster.login())
    try:
        expected = drill_data(client)
    finally:
        client.close()
    ledger = paced_ledger(cluster, 100, prefix='restore-ledger', max_seconds=300).start()
    ledger.wait_for_writes(100, timeout=30)
    before = dict(ledger.acknowledged)
    started = time.monotonic()
    backup = cluster.playbook('playbooks/backup.yml', extra_vars={'redis_backup_dir': str(tmp_path)})
    backed_up = time.monotonic() - started
    ledger.stop()
    assert backup.returncode == 0, backup.output[-4000:]
    (stamp,) = os.listdir(tmp_path)
    root = str(tmp_path / stamp)
    manifest = json.loads((tmp_path / stamp / 'manifest.json').read_text())
    assert len(manifest['files']) == 3 and all(entry['server'] == 'valkey' for entry in manifest['files']), manifest['files']

    gone = cluster.playbook('playbooks/teardown.yml', extra_vars={'hashslot_teardown_confirm': 'yes'})
    assert gone.returncode == 0, gone.output[-4000:]
    for host in cluster.hosts():
        left = docker('exec', host, 'sh', '-c', f'ls -d /var/lib/{cluster.name}/{PORTS[0]} /var/lib/{cluster.name}/{PORTS[1]} 2>/dev/null || true')
        assert not left.strip(), (host, left)
    started = time.monotonic()
    restored = cluster.playbook('playbooks/restore.yml', extra_vars={'redis_restore_dir': root})
    took = time.monotonic() - started
    assert restored.returncode == 0, restored.output[-6000:]
    assert 'sampled values compared, 0 differ' in restored.output, restored.output[-4000:]

    client = RedisCluster(startup_nodes=startup, decode_responses=True, **cluster.login())
    try:
        assert read_back(client, expected) == expected
        assert all(0 < client.ttl(key) <= 86400 for key in expected if key.startswith('restore:expiring:'))
        pipe = client.pipeline()
        for key in before:
            pipe.get(key)
        back = dict(zip(before, pipe.execute()))
    finally:
        client.close()
    assert back == before, {key: value for key, value in back.items() if value != before[key]}
    info = cluster.info(fail_on_problems=True)
    assert info['cluster_state'] == 'ok' and info['masters'] == 3 and info['replicas'] == 3, info.get('problems')
    masters = cluster.masters()
    assert sorted(masters) == sorted(entry['address'] for entry in manifest['files'])
    assert len({cluster.zones()[address] for address in masters}) == 3
    users = cluster.host_vars(cluster.hosts()[0])['redis_server_acl_users']
    reader = cluster.client(cluster.hosts()[0], username=users[1]['name'], password=users[1]['password'])
    assert reader.ping()
    for secret in cluster.secrets().values():
        assert secret not in backup.output and secret not in restored.output
    print(f'\nrestore drill over TLS: {len(expected)} keys of five types and {len(before)} ledger writes; backup.yml '
          f'{backed_up:.0f} s, restore.yml after teardown {took:.0f} s, all read back equal')


def served_serial(cluster, host: str, port: int) -> int:
    """The serial number of the certificate an instance presents to a new TLS connection."""
    files = cluster.tls_files()
    context = ssl.create_default_context(cafile=files['ca_certs'])
    context.check_hostname = False
    context.load_cert_chain(files['client_cert'], files['client_key'])
    with socket.create_connection((cluster.address(host), port), timeout=5) as sock, context.wrap_socket(sock) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def test_new_passwords_and_renewed_certificates_roll_out_without_a_restart(cluster, converged):
    """One site.yml run (server and exporter tags, -vvv) rotates credentials: an application password and the admin's
    own change (with its previous one for this run), and redis_server_tls_renew_days longer than the certificates'
    validity has every host's and every exporter's certificate signed anew on the controller. No instance restarts
    (same run_id): they load the ACL users and reload the certificate; the exporters restart with theirs and read the
    servers again; redis_cluster_info reads the new end dates. No secret on a command line or in the output."""
    hosts = cluster.hosts()
    pki = os.path.join(cluster.inventory_dir, 'pki')
    run_ids = {(host, port): cluster.client(host, port).info('server')['run_id'] for host in hosts for port in PORTS}
    served_before = {(host, port): served_serial(cluster, host, port) for host in hosts for port in PORTS}
    exporter_serial = 'openssl x509 -in /etc/redis-exporter/tls/client.crt -noout -serial'
    exporters = {host: docker('exec', host, 'sh', '-c', exporter_serial) for host in hosts}
    users = cluster.host_vars(hosts[0])['redis_server_acl_users']
    old_app, old_admin = users[0]['password'], cluster.password
    new_app, new_admin = 'molecule-App-rotated-61d0', 'molecule-Admin-rotated-0e5b'
    rotation = {'redis_server_acl_users': [dict(users[0], password=new_app)] + users[1:],
                'redis_server_admin_password': new_admin, 'redis_server_admin_previous_password': old_admin,
                'redis_server_tls_renew_days': 3650}
    started = datetime.datetime.now(datetime.timezone.utc)
    with CommandLines(hosts) as lines:
        run = cluster.playbook('site.yml', extra_vars=rotation, tags='server,exporter', verbosity=3)
    assert run.returncode == 0, run.output[-6000:]
    for secret in (new_app, new_admin, old_admin):
        assert lines.containing(secret) == [] and secret not in run.output
    for host in hosts:
        with open(os.path.join(pki, f'{host}.crt'), 'rb') as handle:
            renewed = x509.load_pem_x509_certificate(handle.read())
        assert renewed.not_valid_before_utc >= started - datetime.timedelta(minutes=2), host
        for port in PORTS:
            admin = cluster.client(host, port, password=new_admin)
            assert admin.info('server')['run_id'] == run_ids[(host, port)], f'{host}:{port} restarted'
            assert served_before[(host, port)] != renewed.serial_number
            assert served_serial(cluster, host, port) == renewed.serial_number, f'{host}:{port} serves the old certificate'
            assert cluster.client(host, port, username='app', password=new_app).ping()
            for user, password in (('app', old_app), (cluster.user, old_admin)):
                with pytest.raises(redis.AuthenticationError):
                    cluster.client(host, port, username=user, password=password).ping()
        assert docker('exec', host, 'sh', '-c', exporter_serial) != exporters[host], f'{host}: exporter certificate kept'
        for port in PORTS:
            metrics = exporter_scrape(cluster.address(host), exporter_target(cluster, host, port))
            assert metric_samples(metrics, 'redis_up') == [({}, 1.0)], (host, port)
    report = cluster.info(login_password=new_admin)
    assert report['healthy'], report['problems']
    ends = {node['certificate_expires'][:10] for node in report['nodes']}
    assert len(ends) <= 2 and all(820 < (datetime.date.fromisoformat(end) - started.date()).days <= 826 for end in ends), ends


def test_exporter_logs_in_as_its_own_user_over_tls(cluster, converged):
    """Each host's exporter reads both instances as hashslot-exporter over TLS; that user reads no key and no config."""
    for name in cluster.hosts():
        for port in PORTS:
            target = exporter_target(cluster, name, port)
            assert target.startswith('rediss://')
            metrics = exporter_scrape(cluster.address(name), target)
            assert metric_samples(metrics, 'redis_up') == [({}, 1.0)], (target, metric_samples(metrics, 'redis_up'))
            assert metric_samples(metrics, 'redis_cluster_state') == [({}, 1.0)], target
    password = cluster.host_vars(cluster.hosts()[0])['redis_exporter_acl_password']
    exporter = cluster.client(cluster.hosts()[0], username='hashslot-exporter', password=password)
    assert exporter.ping()
    for forbidden in (lambda: exporter.get('k'), lambda: exporter.config_get('masterauth'), exporter.acl_list):
        with pytest.raises(redis.exceptions.NoPermissionError):
            forbidden()


def test_exporter_has_its_own_client_certificate_and_listens_on_the_host_address(host, cluster, converged):
    """Not the host's server key: a clientAuth-only certificate of its own, signed by the same CA; and the metrics
    port on the host's address only, not on every address."""
    name = host.backend.get_hostname()
    exporter = '/etc/redis-exporter/tls/client.crt'
    server = f'/etc/{cluster.name}/tls/{cluster.name}.crt'
    shown = host.check_output(f'openssl x509 -in {exporter} -noout -subject -ext extendedKeyUsage')
    assert f'CN=hashslot-exporter@{name}' in shown.replace(' = ', '='), shown
    assert 'TLS Web Client Authentication' in shown and 'Server Authentication' not in shown, shown
    assert host.run(f'openssl verify -CAfile /etc/redis-exporter/tls/ca.crt {exporter}').rc == 0
    public_key = 'openssl x509 -in {} -noout -pubkey'
    assert host.check_output(public_key.format(exporter)) != host.check_output(public_key.format(server))
    assert host.socket(f'tcp://{cluster.address(name)}:9121').is_listening
    assert not host.socket('tcp://0.0.0.0:9121').is_listening and not host.socket('tcp://127.0.0.1:9121').is_listening


def test_exporter_secrets_are_readable_by_the_service_only(host, converged):
    for path, mode in (('/etc/redis-exporter/passwords.json', 0o400), ('/etc/redis-exporter/tls/client.key', 0o400),
                       ('/etc/redis-exporter/tls/client.crt', 0o444)):
        entry = host.file(path)
        assert (entry.user, entry.mode) == ('redis-exporter', mode), (path, entry.user, oct(entry.mode))
    assert host.file('/etc/redis-exporter').mode & stat.S_IRWXO == 0
    assert host.service('redis-exporter').is_running and host.process.filter(user='redis-exporter')
