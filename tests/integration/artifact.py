"""The collection as Galaxy ships it: `ansible-galaxy collection build`, then installed into an empty path."""

from __future__ import annotations

import functools
import glob
import os
import subprocess
import sys

import yaml

from playbook import REPO

OUTPUT = os.path.join(REPO, 'tests', 'output', 'artifact')
BIN = os.path.dirname(sys.executable)


def tool(name: str) -> str:
    return os.path.join(BIN, name)


@functools.lru_cache(maxsize=None)
def built() -> str:
    """Path of the artifact built from this checkout (once per test session)."""
    version = yaml.safe_load(open(os.path.join(REPO, 'galaxy.yml')))['version']
    os.makedirs(OUTPUT, exist_ok=True)
    for old in glob.glob(os.path.join(OUTPUT, 'hashslot-redis-*.tar.gz')):
        os.unlink(old)
    result = subprocess.run([tool('ansible-galaxy'), 'collection', 'build', '--force', '--output-path', OUTPUT, REPO],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    path = os.path.join(OUTPUT, f'hashslot-redis-{version}.tar.gz')
    assert os.path.isfile(path), result.stdout
    return path


@functools.lru_cache(maxsize=None)
def installed() -> str:
    """A collections path that holds only the installed artifact (its dependencies come from the ansible package)."""
    path = os.path.join(OUTPUT, 'collections')
    subprocess.run(['rm', '-rf', path], check=True)
    os.makedirs(path)
    result = subprocess.run([tool('ansible-galaxy'), 'collection', 'install', '--no-deps', '-p', path, built()],
                            capture_output=True, text=True, timeout=300, env=clean_env(path), cwd=OUTPUT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return path


def collection_root() -> str:
    return os.path.join(installed(), 'ansible_collections', 'hashslot', 'redis')


def clean_env(collections_path: str) -> dict:
    """No trace of the checkout (run it from OUTPUT, where no ansible.cfg is): only the given collections path and the
    ansible package's own collections."""
    env = {key: value for key, value in os.environ.items() if not key.startswith('ANSIBLE_')}
    env.update(ANSIBLE_COLLECTIONS_PATH=collections_path, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0',
               PATH=BIN + os.pathsep + env.get('PATH', ''))
    return env
