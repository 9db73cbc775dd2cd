"""The Galaxy artifact: what it holds, that it installs into an empty collections path and documents itself from
there, and that ansible-builder makes an execution environment of it. (Running site.yml from it: test_site_local.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile

import yaml

from artifact import OUTPUT, built, clean_env, collection_root, installed, tool
from playbook import REPO

MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(REPO, 'plugins', 'modules')) if name.endswith('.py'))
ROLES = sorted(os.listdir(os.path.join(REPO, 'roles')))


def test_artifact_holds_what_operators_run_and_nothing_else():
    with tarfile.open(built()) as archive:
        names = set(archive.getnames())
        manifest = json.load(archive.extractfile('MANIFEST.json'))
    info = manifest['collection_info']
    galaxy = yaml.safe_load(open(os.path.join(REPO, 'galaxy.yml')))
    assert (info['namespace'], info['name'], info['version']) == ('hashslot', 'redis', galaxy['version'])
    assert info['dependencies'] == galaxy['dependencies']
    for module in MODULES:
        assert f'plugins/modules/{module}.py' in names
    for role in ROLES:
        assert f'roles/{role}/meta/argument_specs.yml' in names
    for path in ('site.yml', 'playbooks/site.yml', 'playbooks/upgrade.yml', 'meta/runtime.yml', 'meta/execution-environment.yml',
                 'requirements.txt', 'bindep.txt', 'inventories/local/hosts.yml', 'extensions/awx/job_templates.yml',
                 'extensions/ee/hashslot-redis-ee.yml', 'docs/operations.md', 'CHANGELOG.rst', 'changelogs/changelog.yaml',
                 'README.md'):
        assert path in names, path
    for top in ('tests', 'molecule', 'bench', 'tools', '.ci', '.venv', '.collections', '.git', 'Makefile', 'ansible.cfg',
                'requirements-dev.txt', 'ruff.toml', 'pytest.ini'):
        assert not any(name == top or name.startswith(top + '/') for name in names), top
    assert not any(name.endswith(('.pyc', '.tar.gz')) or '__pycache__' in name for name in names)
    assert not any(name.startswith('.') for name in names), sorted(name for name in names if name.startswith('.'))


def test_installed_artifact_documents_every_module_and_role():
    env = clean_env(installed())
    listed = subprocess.run([tool('ansible-doc'), '--list', '--json', 'hashslot.redis'], capture_output=True, text=True,
                            env=env, cwd=OUTPUT, timeout=300, check=False)
    assert listed.returncode == 0, listed.stderr
    assert sorted(json.loads(listed.stdout)) == [f'hashslot.redis.{module}' for module in MODULES]
    shown = subprocess.run([tool('ansible-doc'), '--json', *(f'hashslot.redis.{module}' for module in MODULES)],
                           capture_output=True, text=True, env=env, cwd=OUTPUT, timeout=300, check=False)
    assert shown.returncode == 0, shown.stderr
    docs = json.loads(shown.stdout)
    for module in MODULES:
        doc = docs[f'hashslot.redis.{module}']['doc']
        assert doc['collection'] == 'hashslot.redis' and doc['short_description'], module
        assert str(doc['filename']).startswith(installed()), doc['filename']
    roles = subprocess.run([tool('ansible-doc'), '-t', 'role', '--list', '--json', 'hashslot.redis'], capture_output=True,
                           text=True, env=env, cwd=OUTPUT, timeout=300, check=False)
    assert roles.returncode == 0, roles.stderr
    assert sorted(json.loads(roles.stdout)) == [f'hashslot.redis.{role}' for role in ROLES]
    syntax = subprocess.run([tool('ansible-playbook'), '--syntax-check', '-i', 'localhost,', 'hashslot.redis.site'],
                            capture_output=True, text=True, env=env, cwd=OUTPUT, timeout=300, check=False)
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr


def test_ansible_builder_reads_the_requirements_and_creates_the_execution_environment():
    introspected = subprocess.run([tool('ansible-builder'), 'introspect', installed()], capture_output=True, text=True,
                                  timeout=300, check=False)
    assert introspected.returncode == 0, introspected.stdout + introspected.stderr
    assert 'redis>=4.3' in introspected.stdout and 'openssh-client [platform:dpkg]' in introspected.stdout, introspected.stdout

    with tempfile.TemporaryDirectory(prefix='hashslot-ee-') as workdir:
        definition = os.path.join(workdir, 'ee')
        shutil.copytree(os.path.join(collection_root(), 'extensions', 'ee'), definition)
        shutil.copy(built(), os.path.join(definition, 'hashslot-redis.tar.gz'))
        context = os.path.join(workdir, 'context')
        created = subprocess.run([tool('ansible-builder'), 'create', '-f', os.path.join(definition, 'hashslot-redis-ee.yml'),
                                  '-c', context, '--output-filename', 'Containerfile'],
                                 capture_output=True, text=True, timeout=300, check=False)
        assert created.returncode == 0, created.stdout + created.stderr
        containerfile = open(os.path.join(context, 'Containerfile')).read()
        assert 'ARG EE_BASE_IMAGE' in containerfile
        assert 'COPY _build/collections/hashslot-redis.tar.gz /tmp/hashslot-redis.tar.gz' in containerfile
        assert os.path.isfile(os.path.join(context, '_build', 'collections', 'hashslot-redis.tar.gz'))
        assert yaml.safe_load(open(os.path.join(context, '_build', 'requirements.yml')))['collections'] == \
            [{'name': '/tmp/hashslot-redis.tar.gz', 'type': 'file'}]
