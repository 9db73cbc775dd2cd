"""extensions/awx: one job template per playbook, surveys that only set real variables, load.yml parses."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from ansible_collections.hashslot.redis.plugins.module_utils.cluster_health import PROBLEM_KINDS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AWX = os.path.join(REPO, 'extensions', 'awx')
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
# teardown.yml is left out on purpose (job_templates.yml says why).
PLAYBOOKS = ['site', 'scale_out', 'scale_in', 'rebalance', 'failover', 'rolling_restart', 'upgrade', 'backup', 'restore', 'status']
QUESTION_TYPES = {'text', 'textarea', 'password', 'integer', 'float', 'multiplechoice', 'multiselect'}


def load(*parts):
    with open(os.path.join(REPO, *parts)) as handle:
        return yaml.safe_load(handle)


TEMPLATES = load('extensions', 'awx', 'job_templates.yml')['job_templates']
QUESTIONS = [(template['playbook'], question) for template in TEMPLATES for question in template['survey_spec']['spec']]


def role_options():
    """Every option of every entry point of every role: {name: spec}."""
    options = {}
    for role in os.listdir(os.path.join(REPO, 'roles')):
        for entry in load('roles', role, 'meta', 'argument_specs.yml')['argument_specs'].values():
            options.update(entry.get('options') or {})
    return options


ROLE_OPTIONS = role_options()


def playbook_text(path):
    with open(os.path.join(REPO, path)) as handle:
        return handle.read()


def playbook_tasks(path):
    for play in load(path):
        yield play, play.get('tasks') or []


def validated(path):
    """{variable: spec} of the playbook's own validate_argument_spec tasks."""
    specs = {}
    for dummy, tasks in playbook_tasks(path):
        for task in tasks:
            if 'ansible.builtin.validate_argument_spec' in task:
                # The spec is the task's __spec, less the variables given blank (tasks/given_vars.yml).
                specs.update(task.get('vars', {}).get('__spec') or task['ansible.builtin.validate_argument_spec']['argument_spec'])
    return specs


def accepted(choices):
    """A spec's choices: a list, or the problem kinds the playbook takes from the lookup hashslot.redis.redis_problem_kinds."""
    if isinstance(choices, str) and 'hashslot.redis.redis_problem_kinds' in choices:
        return PROBLEM_KINDS
    return choices


def play_var(path, name):
    """The value of a play-level variable, from the first play that sets it."""
    for play, dummy in playbook_tasks(path):
        if name in (play.get('vars') or {}):
            return play['vars'][name]
    return []


def test_one_template_per_playbook_and_every_playbook_exists():
    assert sorted(template['playbook'] for template in TEMPLATES) == sorted(f'playbooks/{name}.yml' for name in PLAYBOOKS)
    assert len({template['name'] for template in TEMPLATES}) == len(TEMPLATES), 'template names repeat'
    for template in TEMPLATES:
        assert os.path.isfile(os.path.join(REPO, template['playbook'])), template['playbook']
        assert template['description'] and template['survey_spec']['name'] and template['survey_spec']['description']
        assert template['job_type'] == 'run' and template['ask_job_type_on_launch'], 'every playbook may run as a Check job'
        assert template['allow_simultaneous'] is False, 'two cluster operations at once must queue'


@pytest.mark.parametrize('playbook, question', QUESTIONS, ids=[f"{p.split('/')[1]}:{q['variable']}" for p, q in QUESTIONS])
def test_every_question_is_well_formed_and_sets_a_real_variable(playbook, question):
    assert {'question_name', 'question_description', 'variable', 'type', 'required'} <= set(question)
    assert question['type'] in QUESTION_TYPES
    name = question['variable']
    read_by_playbook = re.search(rf'\b{re.escape(name)}\b', playbook_text(playbook)) is not None
    assert name in ROLE_OPTIONS or read_by_playbook, f'{name} is neither a role variable nor read by {playbook}'
    if 'password' in name:
        assert question['type'] == 'password'
    if question['type'] == 'password':
        assert 'default' not in question, 'a password question has no default'
    if question['type'] in ('multiplechoice', 'multiselect'):
        assert question['choices'] and len(set(question['choices'])) == len(question['choices'])
    if question['type'] == 'multiplechoice' and 'default' in question:
        assert question['default'] in question['choices']
    if question['required']:
        return
    # An optional answer left blank arrives as '' or null: it must mean "not given", so the question has no default
    # of its own, sets no role variable (the answer would override the inventory's) and the playbook reads it as
    # not given when blank (tasks/given_vars.yml).
    assert 'default' not in question
    assert name not in ROLE_OPTIONS or name.endswith('_previous_password'), f'{name} overrides the inventory: make it required'
    if name not in ROLE_OPTIONS:
        assert name in play_var(playbook, '__given_names'), f'{playbook} does not read a blank {name} as not given'


@pytest.mark.parametrize('playbook, question', [(p, q) for p, q in QUESTIONS if q['type'] in ('multiplechoice', 'multiselect')],
                         ids=[f"{p.split('/')[1]}:{q['variable']}" for p, q in QUESTIONS if q['type'] in ('multiplechoice', 'multiselect')])
def test_choices_are_the_values_the_playbook_accepts(playbook, question):
    name = question['variable']
    spec = validated(playbook).get(name) or ROLE_OPTIONS.get(name)
    assert spec, f'neither {playbook} nor a role validates {name}'
    if spec.get('type') == 'bool':
        assert sorted(question['choices']) == ['false', 'true']
    else:
        assert sorted(question['choices']) == sorted(str(choice) for choice in accepted(spec['choices']))
        assert (question['type'] == 'multiselect') == (spec.get('type') == 'list')


def test_list_answers_given_as_text_are_split():
    for playbook, question in QUESTIONS:
        spec = validated(playbook).get(question['variable']) or {}
        if spec.get('type') == 'list' and question['type'] in ('text', 'textarea'):
            assert question['variable'] in play_var(playbook, '__given_lists'), f'{playbook} takes {question["variable"]} as a list only'


def test_load_playbook_passes_the_syntax_check():
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, '.collections'))
    checked = subprocess.run([ANSIBLE_PLAYBOOK, '--syntax-check', os.path.join(AWX, 'load.yml')],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
