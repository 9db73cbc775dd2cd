"""The redis_tuning role against this machine's real kernel (/proc/sys, /sys/kernel/mm/transparent_hugepage).

Every test starts from an untuned kernel (the values a stock Debian host has) and the module fixture puts the
machine's own values and files back afterwards. The "kernel cannot be changed" case runs ansible-playbook inside a
private mount namespace where parts of /proc/sys and /sys are bind-remounted read-only, as in a container.

Not exercised here: the systemd boot unit install (PID 1 on this machine is not systemd, so the role takes its
runtime-only branch); test_boot_unit_is_valid_and_ordered_before_basic_target checks the unit file it would write.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Dict, List, Optional

import pytest
import yaml

from playbook import REPO, PlaybookRecap, ansible_env, parse_recap, run_playbook

ROLE = os.path.join(REPO, 'roles', 'redis_tuning')
SYSCTL_FILE = '/etc/sysctl.d/90-redis-tuning.conf'
LIMITS_FILE = '/etc/security/limits.d/90-redis-tuning.conf'
THP_DIR = '/sys/kernel/mm/transparent_hugepage'
REPORT_TASK = 'TASK [hashslot.redis.redis_tuning : Report the kernel settings this host did not let the role apply]'

# The role's documented production defaults, and a stock kernel's values to start each test from.
TUNED = {'vm.overcommit_memory': '1', 'net.core.somaxconn': '65535', 'net.ipv4.tcp_max_syn_backlog': '65535', 'vm.swappiness': '1'}
UNTUNED = {'vm.overcommit_memory': '0', 'net.core.somaxconn': '4096', 'net.ipv4.tcp_max_syn_backlog': '2048', 'vm.swappiness': '60'}
EXTRA_KEY = 'net.core.netdev_max_backlog'
WATCHED_KEYS = list(TUNED) + [EXTRA_KEY]
WATCHED_FILES = [SYSCTL_FILE, LIMITS_FILE]


def proc_path(key: str) -> str:
    return '/proc/sys/' + key.replace('.', '/')


def read_sysctl(key: str) -> str:
    with open(proc_path(key)) as handle:
        return ' '.join(handle.read().split())


def write_sysctl(key: str, value: str) -> None:
    with open(proc_path(key), 'w') as handle:
        handle.write(value)


def read_thp(name: str) -> str:
    with open(os.path.join(THP_DIR, name)) as handle:
        return next(word[1:-1] for word in handle.read().split() if word.startswith('['))


def write_thp(name: str, value: str) -> None:
    with open(os.path.join(THP_DIR, name), 'w') as handle:
        handle.write(value)


def read_file(path: str) -> Optional[str]:
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def settings(path: str) -> Dict[str, str]:
    """key = value lines of a sysctl.d file (comments dropped)."""
    found = {}
    for line in (read_file(path) or '').splitlines():
        if line.strip() and not line.lstrip().startswith(('#', ';')):
            key, value = line.split('=', 1)
            found[key.strip()] = value.strip()
    return found


def untune() -> None:
    """A stock kernel and none of the role's files: what the role meets on a fresh host."""
    for key, value in UNTUNED.items():
        write_sysctl(key, value)
    write_thp('enabled', 'madvise')
    for path in WATCHED_FILES:
        if os.path.exists(path):
            os.remove(path)


def assert_untouched() -> None:
    assert {key: read_sysctl(key) for key in UNTUNED} == UNTUNED
    assert read_thp('enabled') == 'madvise'
    assert [path for path in WATCHED_FILES if os.path.exists(path)] == []


def systemd_is_pid1() -> bool:
    return os.path.isdir('/run/systemd/system')


@pytest.fixture(scope='module')
def machine():
    """Record the kernel values and files the role touches, and put them back at the end."""
    if os.geteuid() != 0:
        pytest.skip('redis_tuning writes /proc/sys, /sys and /etc: needs root')
    for key in WATCHED_KEYS:
        if not os.access(proc_path(key), os.W_OK):
            pytest.skip(f'{proc_path(key)} is not writable on this machine')
    if not os.access(os.path.join(THP_DIR, 'enabled'), os.W_OK):
        pytest.skip(f'{THP_DIR}/enabled is not writable on this machine')
    kernel = {key: read_sysctl(key) for key in WATCHED_KEYS}
    thp = {name: read_thp(name) for name in ('enabled', 'defrag')}
    files = {path: read_file(path) for path in WATCHED_FILES}
    yield
    for key, value in kernel.items():
        write_sysctl(key, value)
    for name, value in thp.items():
        write_thp(name, value)
    for path, content in files.items():
        if content is None:
            if os.path.exists(path):
                os.remove(path)
        else:
            with open(path, 'w') as handle:
                handle.write(content)


@pytest.fixture(scope='module')
def playbooks(tmp_path_factory):
    """The role as an operator applies it: once after fact gathering, once in a play that gathers none."""
    workdir = tmp_path_factory.mktemp('redis-tuning')
    paths = {}
    for name, gather in (('site', True), ('nofacts', False)):
        path = workdir / f'{name}.yml'
        path.write_text(yaml.safe_dump([{
            'name': 'Tune the kernel for Redis',
            'hosts': 'localhost',
            'connection': 'local',
            'gather_facts': gather,
            'roles': ['hashslot.redis.redis_tuning'],
        }], sort_keys=False))
        paths[name] = str(path)
    return paths


def run_role(playbooks, extra_vars=None, check=False, tags=None, gather=True) -> PlaybookRecap:
    return run_playbook(playbooks['site' if gather else 'nofacts'], 'localhost,', extra_vars=extra_vars, check=check, tags=tags)


def assert_ok(recap: PlaybookRecap) -> None:
    assert recap.returncode == 0, recap.output


def assert_idempotent(recap: PlaybookRecap) -> None:
    assert_ok(recap)
    assert recap.total('changed') == 0, f'changed on a second run: {recap.changed_tasks()}\n{recap.output}'


def test_tunes_an_untuned_host_then_changes_nothing(machine, playbooks):
    untune()
    first = run_role(playbooks)
    assert_ok(first)
    assert first.total('changed') > 0
    assert {key: read_sysctl(key) for key in TUNED} == TUNED
    assert read_thp('enabled') == 'never'
    assert settings(SYSCTL_FILE) == TUNED
    assert os.stat(SYSCTL_FILE).st_mode & 0o777 == 0o644
    limits = [line.split() for line in read_file(LIMITS_FILE).splitlines() if line.strip() and not line.startswith('#')]
    assert limits == [['redis', 'soft', 'nofile', '65536'], ['redis', 'hard', 'nofile', '65536']]
    if not systemd_is_pid1():
        # The runtime-only branch says so, once, in the role's single report.
        assert first.output.count(REPORT_TASK) == 1
        assert 'no boot unit (redis-tuning-thp.service)' in first.output
        assert not os.path.exists('/etc/systemd/system/redis-tuning-thp.service')
    assert_idempotent(run_role(playbooks))


def test_check_mode_predicts_changes_and_writes_nothing(machine, playbooks):
    untune()
    assert_ok(run_role(playbooks))
    assert_idempotent(run_role(playbooks, check=True))

    untune()
    predicted = run_role(playbooks, check=True)
    assert_ok(predicted)
    assert predicted.total('changed') > 0
    for key in TUNED:
        assert f'{key}: {UNTUNED[key]} -> {TUNED[key]}' in predicted.output
    assert 'enabled: madvise -> never' in predicted.output
    assert_untouched()


def test_extra_settings_merge_and_a_null_drops_a_key(machine, playbooks, tmp_path):
    untune()
    sysctl_file = str(tmp_path / 'sysctl.d' / '60-redis.conf')
    limits_file = str(tmp_path / 'limits.d' / '60-valkey.conf')
    base = {'redis_tuning_sysctl_file': sysctl_file, 'redis_tuning_limits_file': limits_file}
    assert_ok(run_role(playbooks, extra_vars=base))
    assert settings(sysctl_file) == TUNED

    backlog = str(int(read_sysctl(EXTRA_KEY)) + 1000)
    overrides = dict(base,
                     redis_tuning_sysctl_extra={EXTRA_KEY: int(backlog), 'net.core.somaxconn': 8192, 'vm.swappiness': None},
                     redis_tuning_service_user='valkey', redis_tuning_nofile=100000,
                     redis_tuning_transparent_hugepages='madvise', redis_tuning_transparent_hugepages_defrag='defer+madvise')
    changed = run_role(playbooks, extra_vars=overrides)
    assert_ok(changed)
    assert changed.total('changed') > 0
    # The role owns the file whole: a key dropped from the settings leaves it (and the kernel value is left alone).
    assert settings(sysctl_file) == {'vm.overcommit_memory': '1', 'net.core.somaxconn': '8192', 'net.ipv4.tcp_max_syn_backlog': '65535',
                                     EXTRA_KEY: backlog}
    assert read_sysctl(EXTRA_KEY) == backlog
    assert read_sysctl('net.core.somaxconn') == '8192'
    assert read_sysctl('vm.swappiness') == TUNED['vm.swappiness']
    assert (read_thp('enabled'), read_thp('defrag')) == ('madvise', 'defer+madvise')
    assert 'valkey hard nofile 100000' in read_file(limits_file)
    assert_idempotent(run_role(playbooks, extra_vars=overrides))


def test_tags_run_one_phase(machine, playbooks):
    untune()
    limits_only = run_role(playbooks, tags='redis_tuning_limits')
    assert_ok(limits_only)
    assert os.path.exists(LIMITS_FILE)
    assert not os.path.exists(SYSCTL_FILE)
    assert read_sysctl('vm.swappiness') == UNTUNED['vm.swappiness']
    assert read_thp('enabled') == 'madvise'

    thp_only = run_role(playbooks, tags='redis_tuning_thp')
    assert_ok(thp_only)
    assert read_thp('enabled') == 'never'
    assert not os.path.exists(SYSCTL_FILE)
    assert read_sysctl('vm.swappiness') == UNTUNED['vm.swappiness']


@pytest.mark.parametrize('extra_vars, named', [
    ({'redis_tuning_transparent_hugepages': 'sometimes'}, 'redis_tuning_transparent_hugepages'),
    ({'redis_tuning_transparent_hugepages_defrag': 'often'}, 'redis_tuning_transparent_hugepages_defrag'),
    ({'redis_tuning_nofile': 'lots'}, 'redis_tuning_nofile'),
    ({'redis_tuning_sysctl': ['vm.swappiness=1']}, 'redis_tuning_sysctl'),
    ({'redis_tuning_sysctl_extra': {'vm.swappiness': True}}, 'vm.swappiness=True'),
    ({'redis_tuning_sysctl_extra': {'vm.swappiness; rm -rf /': 1}}, 'vm.swappiness; rm -rf /'),
    ({'redis_tuning_nofile': 100}, 'redis_tuning_nofile'),
    ({'redis_tuning_nofile': 1 << 30}, 'fs.nr_open'),
    ({'redis_tuning_service_user': 'redis server'}, 'redis_tuning_service_user'),
], ids=['thp-choice', 'defrag-choice', 'nofile-type', 'sysctl-type', 'sysctl-bool', 'sysctl-key', 'nofile-low', 'nofile-nr-open', 'user'])
def test_bad_input_fails_before_any_change(machine, playbooks, extra_vars, named):
    untune()
    recap = run_role(playbooks, extra_vars=extra_vars)
    assert recap.returncode != 0
    assert 'failed=1' in recap.output
    assert named in recap.output
    assert recap.total('changed') == 0
    assert_untouched()


def test_validate_entry_point_checks_without_changing(machine, tmp_path):
    """site.yml includes every role with tasks_from: validate before any role runs."""
    untune()
    playbook = tmp_path / 'validate.yml'
    playbook.write_text(yaml.safe_dump([{
        'hosts': 'localhost',
        'connection': 'local',
        'gather_facts': False,
        'tasks': [{'ansible.builtin.include_role': {'name': 'hashslot.redis.redis_tuning', 'tasks_from': 'validate'}}],
    }], sort_keys=False))
    good = run_playbook(str(playbook), 'localhost,')
    assert_idempotent(good)
    for extra_vars, named in (({'redis_tuning_transparent_hugepages': 'sometimes'}, 'redis_tuning_transparent_hugepages'),
                              ({'redis_tuning_sysctl_extra': {'vm.swappiness': [1]}}, 'vm.swappiness=[1]'),
                              ({'redis_tuning_service_user': 'redis server'}, 'redis_tuning_service_user')):
        bad = run_playbook(str(playbook), 'localhost,', extra_vars=extra_vars)
        assert bad.returncode != 0 and named in bad.output, bad.output
    assert_untouched()


def unshare_works() -> bool:
    if not shutil.which('unshare'):
        return False
    probe = subprocess.run(['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
                            'mount --bind /proc/sys/vm /proc/sys/vm && mount -o remount,bind,ro /proc/sys/vm'],
                           capture_output=True, text=True, check=False)
    return probe.returncode == 0


def run_role_read_only(playbook: str, read_only: List[str], check: bool = False) -> PlaybookRecap:
    """ansible-playbook in a private mount namespace where the `read_only` directories are read-only bind mounts.

    Only the mount namespace is private: writes that do go through reach the real kernel.
    """
    remount = ' && '.join(f'mount --bind {path} {path} && mount -o remount,bind,ro {path}' for path in read_only)
    command = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', remount + ' && exec "$@"', 'sh',
               os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'localhost,', playbook]
    if check:
        command.append('--check')
    completed = subprocess.run(command, cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=900, check=False)
    output = completed.stdout + completed.stderr
    return PlaybookRecap(completed.returncode, output, parse_recap(completed.stdout))


def test_read_only_kernel_is_reported_once_and_persisted(machine, playbooks):
    """A container's view: /proc/sys/vm and THP read-only, the network namespace's keys writable."""
    if not unshare_works():
        pytest.skip('cannot make a read-only bind mount in a private mount namespace here (unshare --mount)')
    untune()
    read_only = ['/proc/sys/vm', THP_DIR]
    first = run_role_read_only(playbooks['nofacts'], read_only)
    assert_ok(first)
    assert first.total('changed') > 0

    # What could be changed was, what could not was left alone, and the file holds every setting for the next boot.
    assert read_sysctl('net.core.somaxconn') == TUNED['net.core.somaxconn']
    assert read_sysctl('net.ipv4.tcp_max_syn_backlog') == TUNED['net.ipv4.tcp_max_syn_backlog']
    assert read_sysctl('vm.swappiness') == UNTUNED['vm.swappiness']
    assert read_sysctl('vm.overcommit_memory') == UNTUNED['vm.overcommit_memory']
    assert read_thp('enabled') == 'madvise'
    assert settings(SYSCTL_FILE) == TUNED
    assert os.path.exists(LIMITS_FILE)

    # One message for the host, naming each setting not applied and only those.
    assert first.output.count(REPORT_TASK) == 1
    report = first.output.split(REPORT_TASK, 1)[1].split('PLAY RECAP', 1)[0]
    assert report.count('sysctl vm.swappiness=1 not applied (the kernel has 60): /proc/sys/vm/swappiness is read-only') == 1
    assert report.count('sysctl vm.overcommit_memory=1 not applied (the kernel has 0)') == 1
    assert 'net.core.somaxconn' not in report
    assert report.count(f'transparent_hugepage/enabled=never not applied (the kernel has madvise): {THP_DIR}/enabled is read-only') == 1
    assert 'FAILED' not in first.output and 'fatal' not in first.output

    assert_idempotent(run_role_read_only(playbooks['nofacts'], read_only))
    assert_idempotent(run_role_read_only(playbooks['site'], read_only, check=True))
    assert read_sysctl('vm.swappiness') == UNTUNED['vm.swappiness']


def test_boot_unit_is_valid_and_ordered_before_basic_target(machine, tmp_path):
    """The unit the role installs where systemd runs, rendered from the role's own template and variables.

    systemd-analyze checks its syntax offline and `systemctl --root` shows where [Install] hooks it.
    """
    if not (shutil.which('systemd-analyze') and shutil.which('systemctl')):
        pytest.skip('systemd-analyze / systemctl are not installed here')
    root = tmp_path / 'root'
    unit = root / 'etc' / 'systemd' / 'system' / 'redis-tuning-thp.service'
    unit.parent.mkdir(parents=True)
    playbook = tmp_path / 'render.yml'
    playbook.write_text(yaml.safe_dump([{
        'hosts': 'localhost',
        'connection': 'local',
        'gather_facts': False,
        'vars_files': [os.path.join(ROLE, 'defaults', 'main.yml'), os.path.join(ROLE, 'vars', 'main.yml')],
        'tasks': [{'ansible.builtin.template': {'src': os.path.join(ROLE, 'templates', 'thp.service.j2'), 'dest': str(unit), 'mode': '0644'}}],
    }], sort_keys=False))
    assert_ok(run_playbook(str(playbook), 'localhost,', extra_vars={'redis_tuning_transparent_hugepages_defrag': 'madvise'}))

    lines = unit.read_text().splitlines()
    for expected in ('DefaultDependencies=no', 'Before=basic.target', 'WantedBy=basic.target', 'Type=oneshot',
                     f"ExecStart=/bin/sh -c 'echo never > {THP_DIR}/enabled'",
                     f"ExecStart=/bin/sh -c 'echo madvise > {THP_DIR}/defrag'"):
        assert expected in lines, unit.read_text()
    verify = subprocess.run(['systemd-analyze', 'verify', '--man=no', str(unit)], capture_output=True, text=True, check=False)
    assert verify.returncode == 0 and verify.stderr.strip() == '', verify.stderr
    enable = subprocess.run(['systemctl', f'--root={root}', 'enable', unit.name], capture_output=True, text=True, check=False)
    assert enable.returncode == 0, enable.stderr
    assert (root / 'etc' / 'systemd' / 'system' / 'basic.target.wants' / unit.name).is_symlink()
