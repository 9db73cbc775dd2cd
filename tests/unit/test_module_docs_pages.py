"""The module reference in docs/modules/ is current, complete, and its markup conversion is right."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

from test_module_docs import MODULES, REPO, captured_argument_spec


def load_generator():
    spec = importlib.util.spec_from_file_location('module_docs', os.path.join(REPO, 'tools', 'module_docs.py'))
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    return generator


module_docs = load_generator()


def test_committed_pages_are_current():
    completed = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'module_docs.py'), '--check'],
                               capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr


def test_check_names_a_stale_page_and_a_page_without_module(tmp_path):
    for part in ('plugins', 'docs'):
        shutil.copytree(os.path.join(REPO, part), tmp_path / part)
    page = tmp_path / 'docs' / 'modules' / 'redis_failover.md'
    page.write_text(page.read_text() + 'edited by hand\n')
    (tmp_path / 'docs' / 'modules' / 'redis_gone.md').write_text('# a module that no longer exists\n')
    command = [sys.executable, os.path.join(REPO, 'tools', 'module_docs.py'), '--repo', str(tmp_path), '--check']
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 1
    assert 'docs/modules/redis_failover.md' in completed.stderr
    assert 'docs/modules/redis_gone.md' in completed.stderr
    assert 'redis_cluster_info.md' not in completed.stderr

    assert module_docs.main(['--repo', str(tmp_path)]) == 0
    assert not (tmp_path / 'docs' / 'modules' / 'redis_gone.md').exists()
    assert subprocess.run(command[:-1] + ['--check'], capture_output=True, timeout=120, check=False).returncode == 0


def test_generation_is_deterministic():
    assert module_docs.generate(REPO) == module_docs.generate(REPO)


def test_index_lists_every_module():
    index = module_docs.generate(REPO)[os.path.join('docs', 'modules', 'README.md')]
    for name in MODULES:
        assert f'[`hashslot.redis.{name}`]({name}.md)' in index


def spec_option_names(argument_spec: dict, prefix: str = '') -> set:
    names = set()
    for option, definition in argument_spec.items():
        dotted = prefix + option
        names.add(dotted)
        if definition.get('options'):
            elements = '[]' if definition.get('type') == 'list' else ''
            names |= spec_option_names(definition['options'], f'{dotted}{elements}.')
    return names


@pytest.mark.parametrize('name', MODULES)
def test_page_lists_every_option_of_the_argument_spec(name):
    page = module_docs.generate(REPO)[os.path.join('docs', 'modules', f'{name}.md')]
    options = page.split('## Options', 1)[1].split('\n## ', 1)[0]
    listed = set(re.findall(r'^\| `([^`]+)` \|', options, re.MULTILINE))
    expected = spec_option_names(captured_argument_spec(name)['argument_spec'])
    assert listed == expected
    # The connection options come from the hashslot.redis.connection fragment (redis_backup_manifest connects to no server).
    assert {'login_user', 'login_password', 'tls', 'connect_timeout'} <= listed or name == 'redis_backup_manifest'
    for section in ('## Description', '## Attributes', '## Examples', '## Return values'):
        assert section in page
    assert '`check_mode` | full' in page


@pytest.mark.parametrize('text, markdown', [
    ('Runs C(CLUSTER FAILOVER) on O(node).', 'Runs `CLUSTER FAILOVER` on `node`.'),
    ('When O(tls=true) and V(yes) or RV(restart_required).', 'When `tls=true` and `yes` or `restart_required`.'),
    ('Falls back to E(REDISCLI_AUTH).', 'Falls back to `REDISCLI_AUTH`.'),
    ('I(only) B(this) one', '*only* **this** one'),
    ('See U(https://redis.io/docs/).', 'See <https://redis.io/docs/>.'),
    ('See L(the guide,https://redis.io/docs/).', 'See [the guide](https://redis.io/docs/).'),
    ('Like M(hashslot.redis.redis_cluster_reshard).', 'Like [`hashslot.redis.redis_cluster_reshard`](redis_cluster_reshard.md).'),
    ('Like M(ansible.builtin.copy).', 'Like `ansible.builtin.copy`.'),
    ('Escaped O(a\\)b) and V(x\\\\y)', 'Escaped `a)b` and `x\\y`'),
    ('O(ignore:other) option', '`other` option'),
    ('P(community.general.redis#module) plugin', '`community.general.redis` plugin'),
    ('Keys C(~app:*) only', 'Keys `~app:*` only'),
    ('A C(`tick`) in code', 'A `` `tick` `` in code'),
    ('use_empty_masters is a *plain* _word_ <b>', 'use_empty_masters is a \\*plain\\* \\_word\\_ \\<b>'),
    ('Unclosed C(markup stays text', 'Unclosed C(markup stays text'),
    ('EC(x) is not markup', 'EC(x) is not markup'),
    (None, ''),
])
def test_markup_to_markdown(text, markdown):
    assert module_docs.markup_to_markdown(text) == markdown


def test_table_cells_escape_pipes_and_newlines():
    assert module_docs.table_cell('`a|b` one\ntwo') == '`a\\|b` one two'


def test_fragments_merge_with_the_module_winning():
    doc = {'options': {'tls': {'description': 'own', 'type': 'bool'}}, 'requirements': ['b'], 'notes': ['own note']}
    fragment = {'options': {'tls': {'description': 'fragment', 'default': False}, 'login_user': {'type': 'str'}},
                'requirements': ['a', 'b'], 'notes': ['fragment note']}
    module_docs.merge_fragment(doc, fragment)
    assert doc['options']['tls'] == {'description': 'own', 'type': 'bool', 'default': False}
    assert doc['options']['login_user'] == {'type': 'str'}
    assert doc['requirements'] == ['a', 'b']
    assert doc['notes'] == ['own note', 'fragment note']


def test_unknown_fragment_is_named(tmp_path):
    modules = tmp_path / 'plugins' / 'modules'
    modules.mkdir(parents=True)
    (tmp_path / 'plugins' / 'doc_fragments').mkdir()
    (modules / 'redis_thing.py').write_text(
        "DOCUMENTATION = r'''\nmodule: redis_thing\nshort_description: x\n"
        "extends_documentation_fragment:\n  - hashslot.redis.nothing\n'''\n")
    with pytest.raises(module_docs.DocError, match='hashslot.redis.nothing'):
        module_docs.generate(str(tmp_path))
