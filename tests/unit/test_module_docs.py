"""Every module's documentation renders with ansible-doc and matches its argument spec."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(REPO, 'plugins', 'modules')) if name.endswith('.py') and not name.startswith('_'))


class SpecCaptured(Exception):
    pass


def captured_argument_spec(name: str) -> dict:
    module = importlib.import_module(f'ansible_collections.hashslot.redis.plugins.modules.{name}')
    captured = {}

    def fake_module(argument_spec, **kwargs):
        captured.update(argument_spec=argument_spec, **kwargs)
        raise SpecCaptured()

    original = module.AnsibleModule
    module.AnsibleModule = fake_module
    try:
        with pytest.raises(SpecCaptured):
            module.main()
    finally:
        module.AnsibleModule = original
    return captured


# Modules that connect to no server (they take no login options, which module_defaults of the group would pass them).
OFFLINE = ['redis_backup_manifest']


def test_every_module_is_in_the_action_group():
    with open(os.path.join(REPO, 'meta', 'runtime.yml')) as handle:
        runtime = yaml.safe_load(handle)
    assert sorted(runtime['action_groups']['redis']) == [name for name in MODULES if name not in OFFLINE]


@pytest.mark.parametrize('name', MODULES)
def test_doc_renders_and_matches_argument_spec(name):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, '.collections'))
    ansible_doc = os.path.join(os.path.dirname(sys.executable), 'ansible-doc')
    completed = subprocess.run([ansible_doc, '--json', f'hashslot.redis.{name}'], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    doc = json.loads(completed.stdout)[f'hashslot.redis.{name}']
    assert doc['doc']['attributes']['check_mode']['support'] in ('full', 'partial')
    assert doc['return'] and doc['examples']
    for task in yaml.safe_load(doc['examples']):
        modules = [key for key in task if key.startswith('hashslot.redis.') or key.startswith('ansible.builtin.')]
        assert modules, f'example task without a fully qualified module name: {task}'

    spec = captured_argument_spec(name)
    assert spec['supports_check_mode'] is True
    documented = doc['doc']['options']
    assert sorted(documented) == sorted(spec['argument_spec']), 'documented options differ from the argument spec'
    for option, definition in spec['argument_spec'].items():
        assert documented[option].get('type', 'str') == definition.get('type', 'str'), option
        assert documented[option].get('default') == definition.get('default'), option
        assert bool(documented[option].get('required')) == bool(definition.get('required')), option
        if definition.get('no_log'):
            assert 'password' in option


def test_problem_kinds_are_the_ones_the_health_check_reports():
    source = open(os.path.join(REPO, 'plugins', 'module_utils', 'cluster_health.py')).read()
    from ansible_collections.hashslot.redis.plugins.module_utils.cluster_health import PROBLEM_KINDS
    reported = set(re.findall(r"add\('([a-z_]+)'", source)) | set(re.findall(r"kind='([a-z_]+)'", source))
    assert reported == set(PROBLEM_KINDS)
