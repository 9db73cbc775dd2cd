"""A checkout where collection developers put it, .../ansible_collections/hashslot/redis (a git repository), before
`make` has run there (no .collections link, no .venv): ansible-playbook --syntax-check, ansible-lint --profile
production and ansible-test sanity work as they are, with the tools of this checkout's virtualenv on PATH and no
ANSIBLE_* variable set (ansible.cfg finds the collection through ../../..)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from playbook import REPO

BIN = os.path.dirname(sys.executable)


def developer_env() -> dict:
    env = {name: value for name, value in os.environ.items() if not name.startswith('ANSIBLE_')}
    env.update(PATH=f"{BIN}:{env.get('PATH', '')}", NO_COLOR='1', PY_COLORS='0')
    return env


def run(tree: str, *command: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=tree, env=developer_env(), capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope='module')
def checkout(tmp_path_factory) -> str:
    """The tracked files of this checkout and the changes to them not committed yet (as tools/ansible-sanity copies
    them), in a git repository at <tmp>/ansible_collections/hashslot/redis."""
    tree = str(tmp_path_factory.mktemp('developer') / 'ansible_collections' / 'hashslot' / 'redis')
    listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=REPO,
                            capture_output=True, check=True, timeout=60).stdout.decode().split('\0')
    for path in filter(None, listed):
        source = os.path.join(REPO, path)
        if not os.path.lexists(source):
            continue
        target = os.path.join(tree, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.islink(source):
            os.symlink(os.readlink(source), target)
        else:
            shutil.copy2(source, target)
    for command in (['git', 'init', '-q'], ['git', 'add', '-A'],
                    ['git', '-c', 'user.name=developer', '-c', 'user.email=developer@localhost', 'commit', '-qm', 'checkout']):
        subprocess.run(command, cwd=tree, check=True, capture_output=True, timeout=60)
    assert not os.path.exists(os.path.join(tree, '.collections')) and not os.path.exists(os.path.join(tree, '.venv'))
    return tree


def test_every_playbook_passes_the_syntax_check(checkout):
    playbooks = ['site.yml'] + sorted(f'playbooks/{name}' for name in os.listdir(os.path.join(checkout, 'playbooks'))
                                      if name.endswith('.yml'))
    checked = run(checkout, 'ansible-playbook', '--syntax-check', *playbooks)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    assert checked.stdout.count('playbook: ') == len(playbooks), checked.stdout


def test_ansible_lint_production_profile_passes(checkout):
    linted = run(checkout, 'ansible-lint', '--profile', 'production', '--nocolor')
    assert linted.returncode == 0, linted.stdout[-4000:] + linted.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in linted.stdout + linted.stderr


def test_ansible_test_sanity_runs_in_place(checkout):
    """ansible-test itself, no wrapper (this machine reaches only the package index: tools/ansible-sanity's stand-in
    for the pip bootstrap script ansible-test would download is put in its cache first, as on any run here). The
    tests that load the collection the way Galaxy does: the modules' documentation against their argument specs, and
    every Python file compiled and imported as ansible-core imports it."""
    prepared = subprocess.run([os.path.join(REPO, 'tools', 'ansible-sanity'), '--pip-stand-in'], capture_output=True, text=True,
                              timeout=120, check=False)
    assert prepared.returncode == 0, prepared.stderr
    python = f'{sys.version_info[0]}.{sys.version_info[1]}'
    tested = run(checkout, 'ansible-test', 'sanity', '--venv', '--python', python, '--color', 'no',
                 '--test', 'validate-modules', '--test', 'import', '--test', 'compile')
    assert tested.returncode == 0, tested.stdout[-4000:] + tested.stderr[-4000:]
    for name in ('validate-modules', 'import', 'compile'):
        assert f'Running sanity test "{name}"' in tested.stdout, tested.stdout[-3000:]
