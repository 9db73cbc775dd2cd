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


def test_valkey_gets_its_zone_from_8_1_and_the_shutdown_handover_from_9():
    from ansible_collections.hashslot.redis.plugins.module_utils.server_config import version_settings
    assert version_settings('redis', '8.0.2', 'a') == {}
    assert version_settings('valkey', '8.0.1', 'a') == {}
    assert version_settings('valkey', '8.1.1', 'a') == {'availability-zone': 'a'}
    assert version_settings('valkey', '9.1.2', 'b') == {'availability-zone': 'b', 'shutdown-on-sigterm': 'failover'}
    assert version_settings('valkey', '9.1.2', '') == {'shutdown-on-sigterm': 'failover'}
    assert version_settings('valkey', '', 'a') == {}


def test_the_version_is_read_from_the_servers_own_words():
    from ansible_collections.hashslot.redis.plugins.filter.redis_text import redis_server_version
    assert redis_server_version('Valkey server v=9.1.2 sha=00000000:1 malloc=jemalloc-5.3.0 bits=64') == '9.1.2'
    assert redis_server_version('Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64') == '7.0.15'
    assert redis_server_version('') == '' and redis_server_version(None) == ''


class Server:
    """A running server as apply_settings sees it: its version, the settings it knows, what CONFIG SET refuses."""

    def __init__(self, version, known, refused=()):
        from redis.exceptions import ResponseError
        self.version, self.known, self.refused, self.error = version, dict(known), set(refused), ResponseError
        self.address = '10.0.0.5:6379'

    def call(self, *args):
        return f'# Server\r\nvalkey_version:{self.version}\r\nredis_version:7.2.4\r\n'

    def pipeline(self, commands):
        replies = []
        for command in commands:
            if command[:2] == ('CONFIG', 'GET'):
                name = command[2]
                replies.append([name, self.known[name]] if name in self.known else [])
            elif command[2] in self.refused:
                replies.append(self.error(f'Invalid argument for CONFIG SET {command[2]}'))
            else:
                self.known[command[2]] = command[3]
                replies.append('OK')
        return replies


def test_settings_for_a_version_not_running_yet_wait_for_the_restart():
    from ansible_collections.hashslot.redis.plugins.module_utils.server_config import ConfigApplyError, apply_settings
    wanted = {'maxmemory-policy': 'allkeys-lru', 'shutdown-on-sigterm': 'failover', 'availability-zone': 'a'}
    # Valkey 8.1 running, 9.1 installed: it lacks nothing but refuses the value `failover`.
    old = Server('8.1.1', {'maxmemory-policy': 'noeviction', 'shutdown-on-sigterm': 'default', 'availability-zone': ''},
                 refused={'shutdown-on-sigterm'})
    result = apply_settings(old, wanted, False, server_version='9.1.2')
    assert result['settings_changed'] == ['availability-zone', 'maxmemory-policy']
    assert result['restart_required'] == ['shutdown-on-sigterm']
    # Redis 7.0 running, Valkey 9.1 installed: the settings it does not know wait too.
    redis7 = Server('7.0.15', {'maxmemory-policy': 'noeviction'})
    result = apply_settings(redis7, wanted, False, server_version='9.1.2')
    assert result['restart_required'] == ['availability-zone', 'shutdown-on-sigterm']
    # The same server on the version the settings were written for: an unknown setting fails, nothing changed.
    with pytest.raises(ConfigApplyError, match='does not know the setting'):
        apply_settings(Server('7.0.15', {'maxmemory-policy': 'noeviction'}), wanted, False, server_version='7.0.15')
