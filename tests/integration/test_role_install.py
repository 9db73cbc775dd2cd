"""The redis_install role on this machine (Debian 12, root, no systemd), through ansible-playbook.

The source method builds a stand-in source tree once for the whole module (the idempotence, build_once and
check-mode cases reuse that install); the real Valkey 8.1.1 build, made by tools/redis-servers with the role's make
flags, reaches the role through its build_once cache.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Iterator, Optional

import pytest
import yaml

from playbook import PlaybookRecap, run_playbook
from servers import source_tarball
DISTRO_PIDFILE = '/run/redis/redis-server.pid'
FACTS_TASK = 'Write the facts for the test'


def tarball(name: str) -> str:
    """The cached upstream source tarball that tools/redis-servers fetched (make test runs `ensure` first)."""
    try:
        return source_tarball(name)[0]
    except RuntimeError as exc:
        pytest.fail(str(exc))


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b''):
            digest.update(chunk)
    return 'sha256:' + digest.hexdigest()


class RoleRun:
    """A playbook applying hashslot.redis.redis_install to local aliases, each host's facts written to a JSON file."""

    def __init__(self, workdir: str, hosts: Dict[str, Dict[str, Any]], write_facts: bool = True, tasks_from: str = ''):
        self.workdir = workdir
        self.facts_dir = os.path.join(workdir, 'facts')
        os.makedirs(self.facts_dir, exist_ok=True)
        self.playbook = os.path.join(workdir, 'play.yml')
        self.inventory = os.path.join(workdir, 'inventory.yml')
        play: Dict[str, Any] = {'hosts': 'all', 'gather_facts': False, 'roles': [{'role': 'hashslot.redis.redis_install'}]}
        if tasks_from:
            del play['roles']
            play['tasks'] = [{'ansible.builtin.include_role': {'name': 'hashslot.redis.redis_install', 'tasks_from': tasks_from}}]
        if write_facts:
            facts = {name: '{{ redis_install_%s }}' % name for name in ('bin_dir', 'server_binary', 'cli_binary', 'installed_version')}
            play['post_tasks'] = [{
                'name': FACTS_TASK,
                'ansible.builtin.copy': {'content': '{{ facts | to_json }}', 'dest': self.facts_dir + '/{{ inventory_hostname }}.json',
                                         'mode': '0644'},
                'vars': {'facts': facts},
                'changed_when': False,
                'check_mode': False,
            }]
        with open(self.playbook, 'w') as handle:
            yaml.safe_dump([play], handle, sort_keys=False)
        inventory_hosts = {name: dict({'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}, **host_vars)
                           for name, host_vars in hosts.items()}
        with open(self.inventory, 'w') as handle:
            yaml.safe_dump({'all': {'hosts': inventory_hosts}}, handle, sort_keys=False)

    def run(self, extra_vars: Optional[Dict[str, Any]] = None, check: bool = False, tags: Optional[str] = None,
            timeout: float = 900, env: Optional[Dict[str, str]] = None) -> PlaybookRecap:
        # 900 s: a compile takes 3-4 minutes on two cores, twice that beside the molecule scenarios.
        for stale in glob.glob(os.path.join(self.facts_dir, '*.json')):
            os.unlink(stale)
        return run_playbook(self.playbook, self.inventory, extra_vars=extra_vars, check=check, tags=tags, timeout=timeout, env=env)

    def facts(self, host: str) -> Dict[str, str]:
        with open(os.path.join(self.facts_dir, f'{host}.json')) as handle:
            return json.load(handle)


def assert_ok(recap: PlaybookRecap) -> None:
    assert recap.returncode == 0, recap.output[-6000:]


def assert_unchanged(recap: PlaybookRecap) -> None:
    assert_ok(recap)
    assert recap.total('changed') == 0, f'changed on a re-run: {recap.changed_tasks()}\n{recap.output[-6000:]}'


@pytest.fixture
def workdir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix='hashslot-install-')
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- package method

def start_packaged_service(directory: str) -> int:
    """Stand in for Debian's redis-server service: the packaged binary with the package's pidfile, on no TCP port."""
    os.makedirs(os.path.dirname(DISTRO_PIDFILE), exist_ok=True)
    subprocess.run(['/usr/bin/redis-server', '--port', '0', '--unixsocket', os.path.join(directory, 'distro.sock'),
                    '--daemonize', 'yes', '--pidfile', DISTRO_PIDFILE, '--dir', directory, '--save', '',
                    '--appendonly', 'no', '--logfile', os.path.join(directory, 'distro.log')], check=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if os.path.exists(DISTRO_PIDFILE):
            with open(DISTRO_PIDFILE) as handle:
                content = handle.read().strip()
            if content.isdigit():
                return int(content)
        time.sleep(0.05)
    raise AssertionError('the stand-in distro redis-server wrote no pidfile')


def process_alive(pid: int) -> bool:
    try:
        with open(f'/proc/{pid}/stat') as handle:
            return handle.read().split(') ', 1)[1][0] != 'Z'
    except (FileNotFoundError, IndexError):
        return False


@pytest.fixture
def distro_rundir() -> Iterator[None]:
    created = not os.path.isdir(os.path.dirname(DISTRO_PIDFILE))
    yield
    if os.path.exists(DISTRO_PIDFILE):
        with open(DISTRO_PIDFILE) as handle:
            content = handle.read().strip()
        if content.isdigit() and process_alive(int(content)):
            os.kill(int(content), signal.SIGTERM)
    if created:
        try:
            os.rmdir(os.path.dirname(DISTRO_PIDFILE))
        except OSError:
            pass  # other pidfiles live there now (redis_server's instances): leave them


def test_package_method_stops_the_distro_service_and_publishes_facts(workdir, distro_rundir):
    if not os.path.exists('/usr/bin/redis-server'):
        pytest.fail('Debian redis-server is not installed; run `tools/redis-servers ensure redis-7.0`')
    role = RoleRun(workdir, {'debian12': {}})

    pid = start_packaged_service(workdir)
    planned = role.run(check=True)
    assert_ok(planned)
    assert planned.changed_tasks() == ['hashslot.redis.redis_install : Stop the running redis-server'], planned.output[-4000:]
    assert process_alive(pid), 'check mode stopped the packaged service'

    first = role.run()
    assert_ok(first)
    assert first.changed_tasks() == ['hashslot.redis.redis_install : Stop the running redis-server'], first.output[-4000:]
    deadline = time.monotonic() + 10
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(pid), 'the packaged redis-server still runs'
    assert role.facts('debian12') == {'bin_dir': '/usr/bin', 'server_binary': '/usr/bin/redis-server',
                                      'cli_binary': '/usr/bin/redis-cli', 'installed_version': '7.0.15'}

    # Pinned to the installed version: nothing to do, and the lists are not refreshed.
    again = role.run(extra_vars={'redis_install_version': '7.0.15'})
    assert_unchanged(again)
    assert role.facts('debian12')['installed_version'] == '7.0.15'


def test_python_client_installed_for_the_system_interpreter(workdir):
    role = RoleRun(workdir, {'debian12': {'ansible_python_interpreter': '/usr/bin/python3'}}, write_facts=False)
    first = role.run(tags='redis_install_python_client')
    assert_ok(first)
    check = subprocess.run(['/usr/bin/python3', '-c', 'import redis; print(redis.__version__)'], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    assert_unchanged(role.run(tags='redis_install_python_client'))


# ------------------------------------------------------------------------------------------------ source method
#
# The role's source path (copy, checksum, unpack, one `make install` run with the role's flags and no inherited
# MAKEFLAGS, link, facts, idempotence, check mode, build_once) is driven with a source tree whose Makefile installs a
# stand-in server in a moment: compiling Valkey here again would take minutes for what `make servers` already proves on
# every fresh machine, since tools/redis-servers builds the same tarball with the role's make flags. The real build
# reaches the role through its build_once cache (test_build_once_unpacks_a_cached_real_build): it runs and links
# OpenSSL and libsystemd.

STUB_MAKEFILE = """\
# A stand-in for Valkey's build: `make install` writes a server that prints Valkey's version line and records the
# flags it was given, the way the role calls it.
install:
\t@test -n "$(PREFIX)"
\tmkdir -p src $(PREFIX)/bin
\tprintf '#!/bin/sh\\necho "Valkey server v=8.1.1 sha=00000000:0 malloc=libc bits=64 build=stand-in"\\n' >src/valkey-server
\tchmod 755 src/valkey-server
\tcp src/valkey-server $(PREFIX)/bin/valkey-server
\tcp src/valkey-server $(PREFIX)/bin/valkey-cli
\techo 'BUILD_TLS=$(BUILD_TLS) USE_SYSTEMD=$(USE_SYSTEMD)' >$(PREFIX)/build-flags
\techo '$(MAKEFLAGS)' >$(PREFIX)/makeflags
"""


def stub_source_archive(directory: str) -> str:
    """A tarball shaped like a release (one top directory, named unlike <flavor>-<version>) holding STUB_MAKEFILE."""
    tree = os.path.join(directory, 'valkey-stand-in-1')
    os.makedirs(tree)
    with open(os.path.join(tree, 'Makefile'), 'w') as handle:
        handle.write(STUB_MAKEFILE)
    archive = os.path.join(directory, 'valkey-stand-in-1.tar.gz')
    subprocess.run(['tar', '-C', directory, '-czf', archive, 'valkey-stand-in-1'], check=True)
    return archive


@pytest.fixture(scope='module')
def valkey_source_install() -> Iterator[Dict[str, Any]]:
    """"Valkey 8.1.1" built by the role from a source archive on the controller into a temporary prefix."""
    root = tempfile.mkdtemp(prefix='hashslot-install-src-')
    archive = stub_source_archive(root)
    install = {
        'root': root,
        'archive': archive,
        'checksum': sha256_of(archive),
        'prefix_root': os.path.join(root, 'opt'),
        'build_dir': os.path.join(root, 'src'),
    }
    install['vars'] = {
        'redis_install_method': 'source',
        'redis_install_flavor': 'valkey',
        'redis_install_version': '8.1.1',
        'redis_install_source_archive': archive,
        'redis_install_source_checksum': install['checksum'],
    }
    install['role'] = RoleRun(os.path.join(root, 'play'), {'builder': {'redis_install_prefix_root': install['prefix_root'],
                                                                       'redis_install_build_dir': install['build_dir']}})
    # Run from inside a make with output sync, as `make test` runs it: the build must not inherit that MAKEFLAGS.
    install['first'] = install['role'].run(extra_vars=install['vars'], env={'MAKEFLAGS': ' -Otarget'})
    yield install
    shutil.rmtree(root, ignore_errors=True)


def test_source_build_from_archive_with_the_role_flags(valkey_source_install):
    first = valkey_source_install['first']
    assert_ok(first)
    changed = first.changed_tasks()
    assert 'hashslot.redis.redis_install : Compile and install valkey 8.1.1' in changed, changed
    prefix_root = valkey_source_install['prefix_root']
    assert os.readlink(os.path.join(prefix_root, 'valkey')) == 'valkey-8.1.1'
    server = os.path.join(prefix_root, 'valkey', 'bin', 'valkey-server')
    assert valkey_source_install['role'].facts('builder') == {
        'bin_dir': os.path.join(prefix_root, 'valkey', 'bin'), 'server_binary': server,
        'cli_binary': os.path.join(prefix_root, 'valkey', 'bin', 'valkey-cli'), 'installed_version': '8.1.1'}
    version = subprocess.run([server, '--version'], capture_output=True, text=True, check=True).stdout
    assert 'v=8.1.1' in version, version
    # One make run with the role's default flags, and none of the calling make's.
    with open(os.path.join(prefix_root, 'valkey-8.1.1', 'build-flags')) as handle:
        assert handle.read().split() == ['BUILD_TLS=yes', 'USE_SYSTEMD=yes']
    with open(os.path.join(prefix_root, 'valkey-8.1.1', 'makeflags')) as handle:
        assert 'target' not in handle.read(), 'the build inherited the output sync of the make that ran ansible'
    # The unpacked tree is the flavor-version directory whatever the archive's top directory was called.
    assert os.path.exists(os.path.join(valkey_source_install['build_dir'], 'valkey-8.1.1', 'src', 'valkey-server'))


def test_source_build_same_version_is_not_rebuilt(valkey_source_install):
    assert_ok(valkey_source_install['first'])
    built = os.path.join(valkey_source_install['build_dir'], 'valkey-8.1.1', 'src', 'valkey-server')
    installed = os.path.join(valkey_source_install['prefix_root'], 'valkey-8.1.1', 'bin', 'valkey-server')
    before = (os.stat(built).st_mtime_ns, os.stat(installed).st_mtime_ns)
    role = valkey_source_install['role']

    planned = role.run(extra_vars=valkey_source_install['vars'], check=True)
    assert_unchanged(planned)
    again = role.run(extra_vars=valkey_source_install['vars'])
    assert_unchanged(again)
    assert (os.stat(built).st_mtime_ns, os.stat(installed).st_mtime_ns) == before, 'rebuilt or reinstalled'
    assert role.facts('builder')['installed_version'] == '8.1.1'


def test_source_check_mode_predicts_and_writes_nothing(workdir, valkey_source_install):
    prefix_root, build_dir = os.path.join(workdir, 'opt'), os.path.join(workdir, 'src')
    role = RoleRun(workdir, {'fresh': {'redis_install_prefix_root': prefix_root, 'redis_install_build_dir': build_dir}})
    planned = role.run(extra_vars=valkey_source_install['vars'], check=True)
    assert_ok(planned)
    assert planned.total('changed') > 0
    assert 'hashslot.redis.redis_install : Copy the verified source archive from the controller' in planned.changed_tasks()
    assert not os.path.exists(prefix_root) and not os.path.exists(build_dir)
    assert role.facts('fresh')['installed_version'] == '8.1.1'


def test_wrong_checksum_fails_before_anything_is_installed(workdir, valkey_source_install):
    prefix_root, build_dir = os.path.join(workdir, 'opt'), os.path.join(workdir, 'src')
    role = RoleRun(workdir, {'mismatch-host': {'redis_install_prefix_root': prefix_root, 'redis_install_build_dir': build_dir}})
    wrong = 'sha256:' + '0' * 64
    failed = role.run(extra_vars=dict(valkey_source_install['vars'], redis_install_source_checksum=wrong))
    assert failed.returncode != 0
    assert 'mismatch-host: checksum mismatch for redis_install_source_archive' in failed.output, failed.output[-4000:]
    assert wrong in failed.output and valkey_source_install['checksum'] in failed.output
    assert failed.total('changed') == 0
    assert not os.path.exists(prefix_root) and not os.path.exists(build_dir)


def test_unknown_version_without_checksum_fails_at_preflight(workdir):
    prefix_root = os.path.join(workdir, 'opt')
    role = RoleRun(workdir, {'host': {'redis_install_prefix_root': prefix_root}})
    failed = role.run(extra_vars={'redis_install_method': 'source', 'redis_install_version': '6.2.99'})
    assert failed.returncode != 0
    assert 'no known sha256 for redis 6.2.99; set redis_install_source_checksum' in failed.output, failed.output[-4000:]
    assert failed.total('changed') == 0 and not os.path.exists(prefix_root)


def test_build_once_copies_the_built_binaries(workdir, valkey_source_install):
    """The host that already has the version packs it; the other host of the group unpacks it without building."""
    assert_ok(valkey_source_install['first'])
    other_prefix, other_build = os.path.join(workdir, 'opt'), os.path.join(workdir, 'src')
    cache = os.path.join(workdir, 'controller-cache')
    role = RoleRun(os.path.join(workdir, 'play'), {
        'builder': {'redis_install_prefix_root': valkey_source_install['prefix_root'],
                    'redis_install_build_dir': valkey_source_install['build_dir']},
        'other': {'redis_install_prefix_root': other_prefix, 'redis_install_build_dir': other_build},
    })
    extra = dict(valkey_source_install['vars'], redis_install_build_once=True, redis_install_controller_cache_dir=cache)

    first = role.run(extra_vars=extra)
    assert_ok(first)
    assert first.stats['other']['changed'] > 0
    assert not any('Compile' in task for task in first.changed_tasks()), first.changed_tasks()
    # Named by what the binaries depend on: version, distribution, architecture, and a digest of checksum + make flags.
    assert len(os.listdir(cache)) == 1, os.listdir(cache)
    assert re.fullmatch(rf'valkey-8\.1\.1-debian-12-{os.uname().machine}-[0-9a-f]{{12}}\.tar\.gz', os.listdir(cache)[0]), os.listdir(cache)
    assert not os.path.exists(other_build), 'the receiving host got a build directory'
    server = os.path.join(other_prefix, 'valkey', 'bin', 'valkey-server')
    assert role.facts('other') == {'bin_dir': os.path.join(other_prefix, 'valkey', 'bin'), 'server_binary': server,
                                   'cli_binary': os.path.join(other_prefix, 'valkey', 'bin', 'valkey-cli'), 'installed_version': '8.1.1'}
    assert role.facts('builder')['installed_version'] == '8.1.1'
    with open(server, 'rb') as copied, open(os.path.join(valkey_source_install['prefix_root'], 'valkey', 'bin', 'valkey-server'), 'rb') as built:
        assert copied.read() == built.read()

    assert_unchanged(role.run(extra_vars=extra))
    assert not os.path.exists(other_build)


def role_build_cache() -> str:
    """The controller cache the molecule scenarios give the role, where tools/redis-servers packs its builds."""
    return os.path.join(os.environ.get('HASHSLOT_CACHE_DIR') or '/var/cache/hashslot-redis', 'role-builds')


@pytest.mark.needs_build('valkey-8.1.1')
def test_build_once_unpacks_a_cached_real_build(workdir):
    """Valkey 8.1.1 from its real tarball, as tools/redis-servers built it with the role's make flags and packed it
    into the role's cache: the role finds its build group's archive there and unpacks it, compiling nothing, and the
    server it installed runs, links OpenSSL (BUILD_TLS) and libsystemd (USE_SYSTEMD) and answers."""
    archive = tarball('valkey-8.1.1')
    checksum = sha256_of(archive)
    cache = os.path.join(workdir, 'controller-cache')
    os.makedirs(cache)
    groups = glob.glob(os.path.join(role_build_cache(), f'valkey-8.1.1-debian-12-{os.uname().machine}-*.tar.gz'))
    if not groups:
        pytest.fail(f'no Valkey 8.1.1 build in {role_build_cache()}; run `tools/redis-servers ensure valkey-8.1.1` (make test does)')
    for group in groups:
        # A copy: the role would write into the cache it is given if it had to build.
        shutil.copy(group, cache)
    prefix_root = os.path.join(workdir, 'opt')
    role = RoleRun(os.path.join(workdir, 'play'), {'host': {'redis_install_prefix_root': prefix_root,
                                                            'redis_install_build_dir': os.path.join(workdir, 'src')}})
    extra = {'redis_install_method': 'source', 'redis_install_flavor': 'valkey', 'redis_install_version': '8.1.1',
             'redis_install_source_archive': archive, 'redis_install_source_checksum': checksum,
             'redis_install_build_once': True, 'redis_install_controller_cache_dir': cache}
    first = role.run(extra_vars=extra)
    assert_ok(first)
    assert 'hashslot.redis.redis_install : Unpack the group\'s archive into the prefix root' in first.changed_tasks(), first.changed_tasks()
    assert not any('Compile' in task for task in first.changed_tasks()), first.changed_tasks()
    assert sorted(os.listdir(cache)) == sorted(os.path.basename(group) for group in groups), 'the role wrote into its cache'
    server = os.path.join(prefix_root, 'valkey', 'bin', 'valkey-server')
    assert role.facts('host')['installed_version'] == '8.1.1'
    linked = subprocess.run(['ldd', server], capture_output=True, text=True, check=True).stdout
    assert 'libssl' in linked and 'libsystemd' in linked, linked
    assert_server_answers(server, os.path.join(prefix_root, 'valkey', 'bin', 'valkey-cli'), workdir)
    assert_unchanged(role.run(extra_vars=extra))


def assert_server_answers(server: str, cli: str, directory: str) -> None:
    """Start the copied server on a unix socket only (no TCP port) and PING it."""
    socket_path = os.path.join(directory, 'copied.sock')
    process = subprocess.Popen([server, '--port', '0', '--unixsocket', socket_path, '--dir', directory, '--save', '',
                                '--appendonly', 'no'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        reply = ''
        while time.monotonic() < deadline:
            reply = subprocess.run([cli, '-s', socket_path, 'PING'], capture_output=True, text=True, check=False).stdout.strip()
            if reply == 'PONG':
                break
            time.sleep(0.1)
        assert reply == 'PONG', reply
    finally:
        process.terminate()
        process.wait(timeout=10)


# ---------------------------------------------------------------------------------------------------- bad input

def test_argument_spec_rejects_an_unknown_method(workdir):
    role = RoleRun(workdir, {'host': {}})
    failed = role.run(extra_vars={'redis_install_method': 'zip'})
    assert failed.returncode != 0
    assert 'redis_install_method' in failed.output and 'zip' in failed.output, failed.output[-4000:]
    assert 'Validating arguments against arg spec' in failed.output
    assert failed.total('changed') == 0


def test_valkey_package_on_debian_12_fails_with_advice(workdir):
    role = RoleRun(workdir, {'host': {}})
    failed = role.run(extra_vars={'redis_install_flavor': 'valkey'})
    assert failed.returncode != 0
    assert 'Debian 12 has no valkey package' in failed.output, failed.output[-4000:]
    assert 'Use redis_install_method=source, or Debian 13 or later' in failed.output
    assert failed.total('changed') == 0


def test_validate_entry_point_rejects_bad_input_and_changes_nothing(workdir):
    role = RoleRun(workdir, {'host': {}}, write_facts=False, tasks_from='validate')
    assert_unchanged(role.run(extra_vars={'redis_install_method': 'source', 'redis_install_flavor': 'valkey'}))
    failed = role.run(extra_vars={'redis_install_method': 'source', 'redis_install_source_checksum': 'md5:1234'})
    assert failed.returncode != 0
    assert 'redis_install_source_checksum md5:1234 is not of the form sha256:<64 hex digits>' in failed.output, failed.output[-4000:]
    failed = role.run(extra_vars={'redis_install_flavor': 'keydb'})
    assert failed.returncode != 0 and 'redis_install_flavor' in failed.output and 'keydb' in failed.output
