"""Roles and playbooks: every public variable declared in argument_specs, every playbook parses."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES = sorted(name for name in os.listdir(os.path.join(REPO, 'roles')) if os.path.isdir(os.path.join(REPO, 'roles', name)))
PLAYBOOKS = sorted(name for name in os.listdir(os.path.join(REPO, 'playbooks')) if name.endswith('.yml'))
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')


def load(*parts):
    with open(os.path.join(REPO, *parts)) as handle:
        return yaml.safe_load(handle) or {}


@pytest.mark.parametrize('role', ROLES)
def test_defaults_and_argument_specs_name_the_same_variables(role):
    defaults = set(load('roles', role, 'defaults', 'main.yml'))
    specs = load('roles', role, 'meta', 'argument_specs.yml')['argument_specs']
    declared = set(specs['main']['options'])
    assert all(name.startswith(role + '_') for name in defaults | declared), 'every public variable carries the role prefix'
    assert defaults - declared == set(), 'defaults missing from meta/argument_specs.yml'
    assert declared - defaults == set(), 'argument_specs options that are not real variables'
    for name, option in specs['main']['options'].items():
        assert option.get('description'), f'{name} has no description'
        assert option.get('type'), f'{name} has no type'


def platforms_of_the_scenarios():
    """{(platform, version)} the molecule scenarios run on, from their images (hashslot/debian:<codename>)."""
    tested = set()
    for scenario in os.listdir(os.path.join(REPO, 'molecule')):
        path = os.path.join(REPO, 'molecule', scenario, 'molecule.yml')
        if os.path.exists(path):
            for platform in load(path)['platforms']:
                distribution, dummy, version = platform['image'].split('/')[-1].partition(':')
                tested.add((distribution.capitalize(), version))
    return tested


@pytest.mark.parametrize('role', ROLES)
def test_roles_claim_the_platforms_the_scenarios_run_on(role):
    """galaxy_info.platforms lists what a molecule scenario runs, no more, no less (docs/deploy.md: the others are
    expected to work, untested)."""
    claimed = {(entry['name'], str(version)) for entry in load('roles', role, 'meta', 'main.yml')['galaxy_info']['platforms']
               for version in entry['versions']}
    assert claimed == platforms_of_the_scenarios() == {('Debian', 'bookworm'), ('Debian', 'trixie')}


@pytest.mark.parametrize('role', ROLES)
def test_every_role_has_a_validate_entry_point(role):
    specs = load('roles', role, 'meta', 'argument_specs.yml')['argument_specs']
    assert 'validate' in specs and os.path.exists(os.path.join(REPO, 'roles', role, 'tasks', 'validate.yml'))


def syntax_check(playbook):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, '.collections'))
    return subprocess.run([ANSIBLE_PLAYBOOK, '-i', os.path.join(REPO, 'inventories', 'local'), '--syntax-check', playbook],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize('playbook', PLAYBOOKS)
def test_playbook_parses(playbook):
    checked = syntax_check(os.path.join('playbooks', playbook))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_site_runs_from_a_checkout_and_as_a_collection_playbook():
    for playbook in ('site.yml', 'hashslot.redis.site'):
        checked = syntax_check(playbook)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_server_role_takes_its_acl_users_and_their_rules_from_the_filter():
    role_vars = load('roles', 'redis_server', 'vars', 'main.yml')
    assert 'hashslot.redis.redis_acl_users(' in role_vars['__redis_server_acl_users']
    assert not [name for name in role_vars if name.endswith('_rules')], 'rules come from plugins/module_utils/acl.py'


def test_the_secure_defaults_are_on_and_only_the_local_demo_opts_out():
    defaults = load('roles', 'redis_server', 'defaults', 'main.yml')
    assert defaults['redis_server_acl_enabled'] is True and defaults['redis_server_tls_enabled'] is True
    assert defaults['redis_server_tls_provider'] == 'generate' and defaults['redis_server_tls_auth_clients'] == 'yes'
    production = load('inventories', 'production.example', 'group_vars', 'redis_cluster', 'main.yml')
    assert not {'redis_server_acl_enabled', 'redis_server_tls_enabled', 'redis_server_password'} & set(production)
    local = load('inventories', 'local', 'group_vars', 'redis_cluster.yml')
    assert local['redis_server_acl_enabled'] is False and local['redis_server_tls_enabled'] is False


def test_the_cluster_node_list_follows_the_inventory_order_in_every_run(tmp_path):
    """redis_cluster_nodes (roles/redis_cluster/tasks/nodes.yml) lists the nodes in the inventory's order whatever
    Python's string hashing: the planner's choices follow that order. The expression of the task itself is rendered
    over eight hosts listed out of name order, by three ansible-playbook processes with different hash seeds (ansible's
    intersect filter, used before, gave a set's order: a new replica took another master in one scale-out of three)."""
    task = next(task for task in load('roles', 'redis_cluster', 'tasks', 'nodes.yml') if task['name'] == 'Collect every node of the cluster')
    expression = task['ansible.builtin.set_fact']['redis_cluster_nodes'].strip()
    assert expression.startswith('{{') and expression.endswith('}}'), expression
    hosts = [f'node-{name}' for name in ('h', 'c', 'f', 'a', 'g', 'd', 'b', 'e')]
    inventory = {'redis_cluster': {'hosts': {host: {'ansible_connection': 'local'} for host in hosts}}}
    (tmp_path / 'hosts.yml').write_text(yaml.safe_dump(inventory, sort_keys=False))
    (tmp_path / 'play.yml').write_text(yaml.safe_dump([{
        'hosts': 'redis_cluster', 'gather_facts': False, 'vars': {'redis_cluster_group': 'redis_cluster'},
        'tasks': [{'ansible.builtin.set_fact': {'redis_cluster_host_nodes': ['{{ inventory_hostname }}']}},
                  {'ansible.builtin.debug': {'msg': 'ORDER {{ (' + expression[2:-2] + ') | join(",") }}'}, 'run_once': True}]}]))
    for seed in ('1', '2', '3'):
        run = subprocess.run([ANSIBLE_PLAYBOOK, '-i', str(tmp_path / 'hosts.yml'), str(tmp_path / 'play.yml')], capture_output=True, text=True,
                             timeout=120, check=False, env=dict(os.environ, PYTHONHASHSEED=seed, ANSIBLE_NOCOLOR='1'))
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert f'ORDER {",".join(hosts)}' in run.stdout, (seed, run.stdout[-2000:])
    for path in (('roles', 'redis_cluster', 'tasks', 'nodes.yml'), ('playbooks', 'tasks', 'cluster_nodes.yml')):
        with open(os.path.join(REPO, *path)) as handle:
            assert 'intersect(' not in handle.read(), path
