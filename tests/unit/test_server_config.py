"""The settings model behind the config template and the redis_config module."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from ansible_collections.hashslot.redis.plugins.module_utils.server_config import (
    config_lines, normalize, plan_runtime_changes,
)


def test_lines_render_booleans_lists_and_multi_word_values():
    lines = config_lines({'port': 7000, 'cluster-enabled': True, 'appendonly': False, 'save': '3600 1 300 100',
                          'bind': '127.0.0.1 -::1', 'rename-command': ['FLUSHALL ""', 'KEYS ""'], 'logfile': ''})
    assert lines == ['port 7000', 'cluster-enabled yes', 'appendonly no', 'save 3600 1 300 100', 'bind 127.0.0.1 -::1',
                     'rename-command FLUSHALL ""', 'rename-command KEYS ""', 'logfile ""']


def test_secrets_with_spaces_and_quotes_are_quoted():
    assert config_lines({'requirepass': 'a b"c\\d'}) == ['requirepass "a b\\"c\\\\d"']


def test_bad_directive_names_are_refused():
    with pytest.raises(ValueError, match='not a configuration directive'):
        config_lines({'Max Memory': 1})


@pytest.mark.parametrize('wanted, running', [
    ('4gb', '4294967296'), ('100mb', '104857600'), ('1k', '1000'), (True, 'yes'), ('off', 'no'), (5000, '5000'),
    ('900 1 300 10', '900 1 300 10'),
])
def test_normalize_matches_what_config_get_returns(wanted, running):
    assert normalize(wanted) == normalize(running)


def test_plan_separates_runtime_restart_and_unknown():
    wanted = {'maxmemory': '1gb', 'port': 7001, 'databases': 1, 'no-such': 1, 'rename-command': ['KEYS ""'], 'appendonly': 'yes'}
    current = {'maxmemory': '0', 'port': '7000', 'databases': '1', 'no-such': None, 'appendonly': 'yes'}
    assert plan_runtime_changes(wanted, current) == (['maxmemory'], ['port'], ['no-such'])


@given(st.integers(min_value=0, max_value=2 ** 40), st.sampled_from(['', 'k', 'kb', 'm', 'mb', 'g', 'gb']))
def test_memory_units_normalize_to_bytes(number, unit):
    factor = {'': 1, 'k': 1000, 'kb': 1024, 'm': 10 ** 6, 'mb': 2 ** 20, 'g': 10 ** 9, 'gb': 2 ** 30}[unit]
    assert normalize(f'{number}{unit}') == str(number * factor)
