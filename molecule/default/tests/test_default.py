"""After site.yml on three Debian 12 containers in three zones, two instances each: what an operator checks on each host
and on the cluster."""

from __future__ import annotations

import stat

import pytest

from containers import EXPORTER_PORT, PORT, docker, exporter_scrape, exporter_target, metric_samples

# testinfra runs every test that takes `host` once per inventory host.
testinfra_hosts = ['redis_cluster']
# Each host's instances (redis_server_instances in molecule.yml).
PORTS = (PORT, PORT + 1)

SYSCTL = {'vm.overcommit_memory': '1', 'net.core.somaxconn': '65535', 'net.ipv4.tcp_max_syn_backlog': '65535',
          'vm.swappiness': '1'}


def test_instance_service_enabled_and_running(host, cluster):
    for port in cluster.ports(host.backend.get_hostname()):
        service = host.service(f'redis@{port}')
        assert service.is_enabled, port
        assert service.is_running, port
    # The package's own unit must not compete for the port.
    assert not host.service('redis-server').is_running


def test_ports_listening_on_the_scenario_network(host, cluster):
    name = host.backend.get_hostname()
    address = cluster.address(name)
    for port in cluster.ports(name):
        for listening in (port, port + 10000):
            assert host.socket(f'tcp://{address}:{listening}').is_listening, f'{address}:{listening} (cluster bus: {listening != port})'
        assert host.socket(f'tcp://127.0.0.1:{port}').is_listening


def test_process_runs_as_the_service_user(host):
    processes = host.process.filter(comm='redis-server')
    assert processes, 'no redis-server process'
    assert {process.user for process in processes} == {'redis'}


@pytest.mark.parametrize('port', PORTS)
def test_config_and_acl_files_hold_the_secrets_and_are_not_world_readable(host, port):
    for path in (f'/etc/redis/redis-{port}.conf', f'/etc/redis/redis-{port}.acl'):
        entry = host.file(path)
        assert entry.exists, path
        assert entry.group == 'redis', path
        # root owns them so that the server cannot rewrite its own config (CONFIG SET dir + CONFIG REWRITE) or ACL
        # file (ACL SAVE); the service user reads them through its group; nobody else reads them at all.
        assert entry.user in ('root', 'redis'), path
        assert entry.mode & stat.S_IRWXO == 0, (path, oct(entry.mode))
        assert entry.mode & stat.S_IWGRP == 0, (path, oct(entry.mode))
    config = host.file(f'/etc/redis/redis-{port}.conf')
    # The secure defaults: ACL users from the file, the replicas log in as the replication user, no shared password.
    assert config.contains(f'^aclfile .*/etc/redis/redis-{port}.acl')
    assert config.contains('^masteruser .*hashslot-replication')
    assert config.contains('^masterauth ')
    assert not config.contains('^requirepass ')
    assert host.file(f'/etc/redis/redis-{port}.acl').content_string.splitlines()[0].startswith('user default off ')


@pytest.mark.parametrize('port', PORTS)
def test_data_and_cluster_state_belong_to_the_service_user(host, port):
    data_dir = host.file(f'/var/lib/redis/{port}')
    assert data_dir.is_directory
    assert data_dir.user == 'redis'
    assert data_dir.mode & stat.S_IRWXO == 0, oct(data_dir.mode)
    nodes_conf = host.file(f'/var/lib/redis/{port}/nodes-{port}.conf')
    assert nodes_conf.exists
    assert nodes_conf.user == 'redis'
    assert nodes_conf.mode & stat.S_IRWXO == 0, oct(nodes_conf.mode)


def test_kernel_tuning_applied_where_the_kernel_allows(host):
    persisted = host.file('/etc/sysctl.d/90-redis-tuning.conf')
    assert persisted.exists
    for key, wanted in SYSCTL.items():
        assert persisted.contains(f'^{key} *= *{wanted}$'), key
        path = '/proc/sys/' + key.replace('.', '/')
        current = host.file(path).content_string.strip()
        writable = host.run(f'test -w {path}').rc == 0
        # Docker mounts /proc/sys read-only: there the value is persisted for the host's next boot instead.
        assert current == wanted or not writable, f'{key}: {current}, wanted {wanted}, and {path} is writable'
    limits = host.file('/etc/security/limits.d/90-redis-tuning.conf')
    assert limits.contains('^redis soft nofile 65536$')
    assert limits.contains('^redis hard nofile 65536$')
    # The boot-time unit for transparent huge pages is installed and enabled (systemd is PID 1 here).
    assert host.service('redis-tuning-thp').is_enabled


def open_files_limit(host, pid) -> tuple:
    for line in host.file(f'/proc/{pid}/limits').content_string.splitlines():
        if line.startswith('Max open files'):
            return tuple(int(value) for value in line.split()[3:5])
    raise AssertionError(f'no open-files limit for pid {pid}')


@pytest.mark.parametrize('port', PORTS)
def test_server_limits_come_from_the_unit(host, port):
    pid = host.check_output(f'systemctl show -p MainPID --value redis@{port}')
    # LimitNOFILE=65536 in the unit; a container's systemd cannot go past the hard limit it was started with.
    ceiling = open_files_limit(host, 1)[1]
    wanted = min(65536, ceiling)
    assert open_files_limit(host, pid) == (wanted, wanted)


def test_cluster_info_reports_no_problem(cluster):
    report = cluster.info()
    assert report.get('failed') is not True, report
    assert report['cluster_state'] == 'ok'
    assert report['problems'] == [], report['problems']
    assert report['masters'] == 3
    assert report['replicas'] == 3


def test_every_replica_in_another_zone_than_its_master(cluster):
    zones = cluster.zones()
    topology = cluster.topology()
    by_id = {node['id']: address for address, node in topology.items()}
    replicas = [address for address, node in topology.items() if node['role'] == 'replica']
    assert len(replicas) == 3
    for address in replicas:
        master = by_id[topology[address]['master_id']]
        assert zones[address] != zones[master], f'{address} and its master {master} are both in zone {zones[address]}'


def test_redis_cli_cluster_check_is_clean(cluster):
    first = cluster.hosts()[0]
    output = cluster.cli_check(first, cluster.node_addresses()[0])
    assert '[OK] All nodes agree about slots configuration.' in output
    assert '[OK] All 16384 slots covered.' in output
    assert '[ERR]' not in output and '[WARNING]' not in output, output


def test_clients_need_tls_a_certificate_and_a_user(cluster):
    import ssl

    import redis

    first = cluster.hosts()[0]
    # Plaintext RESP gets no answer; TLS without a client certificate is refused; the default user is off.
    with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
        redis.Redis(host=cluster.address(first), port=PORTS[0], socket_timeout=3, socket_connect_timeout=3).ping()
    with pytest.raises((redis.ConnectionError, ssl.SSLError)):
        cluster.client(first, ssl_certfile=None, ssl_keyfile=None).ping()
    with pytest.raises(redis.AuthenticationError):
        cluster.client(first, username=None, password=None).ping()
    assert cluster.client(first).acl_whoami() == cluster.user


def test_exporter_runs_as_its_own_user_in_place_of_the_package_service(host, cluster):
    service = host.service('redis-exporter')
    assert service.is_enabled
    assert service.is_running
    # On the host's address, not on every address.
    assert host.socket(f'tcp://{cluster.address(host.backend.get_hostname())}:{EXPORTER_PORT}').is_listening
    assert not host.socket(f'tcp://0.0.0.0:{EXPORTER_PORT}').is_listening
    # Debian's package starts its own exporter on the same port: the role stops and disables it.
    assert not host.service('prometheus-redis-exporter').is_running
    assert not host.service('prometheus-redis-exporter').is_enabled
    processes = host.process.filter(user='redis-exporter')
    assert processes, 'no process of the redis-exporter user'


def test_exporter_binary_from_the_package_or_the_checksummed_archive(host, cluster):
    name = host.backend.get_hostname()
    method = cluster.host_vars(name).get('redis_exporter_install_method', 'package')
    unit = host.file('/etc/systemd/system/redis-exporter.service').content_string
    if method == 'archive':
        binary = '/opt/hashslot/redis_exporter/1.45.0/redis_exporter'
        assert host.file(binary).is_file and host.file(binary).mode & 0o111
        assert not host.package('prometheus-redis-exporter').is_installed
    else:
        binary = '/usr/bin/prometheus-redis-exporter'
        assert host.package('prometheus-redis-exporter').is_installed
    assert f'ExecStart={binary}' in unit


def test_exporter_password_file_is_readable_by_the_service_only(host, cluster):
    passwords = host.file('/etc/redis-exporter/passwords.json')
    assert passwords.user == 'redis-exporter'
    assert passwords.mode == 0o400, oct(passwords.mode)
    assert host.file('/etc/redis-exporter').mode & 0o007 == 0
    # The exporter's own password is in that file, and nowhere else the exporter reads; the admin's is in none.
    own = str(cluster.host_vars(host.backend.get_hostname())['redis_exporter_acl_password'])
    assert own in passwords.content_string
    for path in ('/etc/redis-exporter/redis-exporter.env', '/etc/systemd/system/redis-exporter.service'):
        assert own not in host.file(path).content_string, path
    for path in ('/etc/redis-exporter/passwords.json', '/etc/redis-exporter/redis-exporter.env', '/etc/systemd/system/redis-exporter.service'):
        assert cluster.password not in host.file(path).content_string, path


def test_exporter_reports_every_instance_up_and_the_cluster_ok(cluster):
    topology = cluster.topology()
    for name, port in cluster.nodes():
        address = cluster.address(name)
        metrics = exporter_scrape(address, exporter_target(cluster, name, port))
        node = f'{name}:{port}'
        assert metric_samples(metrics, 'redis_up') == [({}, 1.0)], f'{node}: {metric_samples(metrics, "redis_up")}'
        assert metric_samples(metrics, 'redis_cluster_state') == [({}, 1.0)], node
        assert metric_samples(metrics, 'redis_cluster_slots_ok') == [({}, 16384.0)], node
        assert metric_samples(metrics, 'redis_cluster_slots_fail') == [({}, 0.0)], node
        roles = {labels['role'] for labels, dummy in metric_samples(metrics, 'redis_instance_info')}
        expected = {'master': 'master', 'replica': 'slave'}[topology[f'{address}:{port}']['role']]
        assert roles == {expected}, f'{node}: exporter says {roles}, CLUSTER NODES says {expected}'
        # Multi-target mode: /metrics carries the exporter's own metrics, no instance's.
        assert metric_samples(exporter_scrape(address), 'redis_up') == [], name


def test_exporter_mode_switch_replaces_the_services(cluster):
    """Last (it changes the deployment): per_instance with --tags exporter stops and disables the multi-target
    service, which held the port the first instance's exporter takes (9121; the second's is 9122)."""
    run = cluster.playbook('site.yml', extra_vars={'redis_exporter_mode': 'per_instance'}, tags='exporter')
    assert run.returncode == 0, run.output[-6000:]
    for name in cluster.hosts():
        units = [f'redis-exporter@{port}' for port in cluster.ports(name)]
        states = docker('exec', name, 'systemctl', 'is-active', *units, 'redis-exporter', check=False).split()
        enabled = docker('exec', name, 'systemctl', 'is-enabled', 'redis-exporter', check=False).split()
        assert states == ['active'] * len(units) + ['inactive'] and enabled == ['disabled'], (name, states, enabled)
        for index, port in enumerate(cluster.ports(name)):
            scraped = exporter_scrape(cluster.address(name), port=EXPORTER_PORT + index)
            assert metric_samples(scraped, 'redis_up') == [({}, 1.0)], (name, port)
