"""Choosing the method, and the pieces of atomic slot migration that need no server."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ansible_collections.hashslot.redis.plugins.module_utils.acl import REPLICATION_RULES, replication_rules
from ansible_collections.hashslot.redis.plugins.module_utils.atomic_migration import (
    _entry, choose_method, parse_ranges_text, ranges_text,
)
from ansible_collections.hashslot.redis.plugins.module_utils.cluster import ClusterError


def master(address, server_name, version):
    return SimpleNamespace(address=address, server_name=server_name, version=version)


VALKEY9 = {'a': master('10.0.0.1:6379', 'valkey', (9, 1, 2)), 'b': master('10.0.0.2:6379', 'valkey', (9, 0, 0))}
MIXED = dict(VALKEY9, c=master('10.0.0.3:6379', 'valkey', (8, 1, 1)))


def test_auto_takes_atomic_only_when_every_master_has_it():
    assert choose_method('auto', VALKEY9) == 'atomic'
    assert choose_method('auto', MIXED) == 'keys'
    assert choose_method('auto', {'r': master('10.0.0.4:6379', 'redis', (9, 0, 0))}) == 'keys'
    assert choose_method('keys', VALKEY9) == 'keys'


def test_atomic_on_a_master_without_it_is_refused_naming_it():
    with pytest.raises(ClusterError, match=r'10\.0\.0\.3:6379 \(valkey 8\.1\.1\)') as refused:
        choose_method('atomic', MIXED)
    assert 'Nothing was changed' in str(refused.value)
    with pytest.raises(ClusterError, match='method must be one of'):
        choose_method('fast', VALKEY9)


def test_slot_ranges_are_written_and_read_as_the_server_does():
    assert ranges_text([5, 1, 2, 3, 9, 10]) == '1-3 5-5 9-10'
    assert parse_ranges_text('1-3 5-5 9-10') == [1, 2, 3, 5, 9, 10]
    assert parse_ranges_text('') == []


def test_a_getslotmigrations_entry_reads_from_resp2_and_resp3():
    flat = ['name', 'ab' * 20, 'operation', 'EXPORT', 'slot_ranges', '0-10', 'create_time', 1]
    assert _entry(flat) == {'name': 'ab' * 20, 'operation': 'EXPORT', 'slot_ranges': '0-10', 'create_time': '1'}
    assert _entry({'state': 'success'}) == {'state': 'success'}


def test_the_replication_user_gets_what_atomic_migration_needs_on_valkey_9_only():
    assert replication_rules('redis', '8.0.2') == list(REPLICATION_RULES)
    assert replication_rules('valkey', '8.1.1') == list(REPLICATION_RULES)
    assert replication_rules('valkey', '') == list(REPLICATION_RULES)
    rules = replication_rules('valkey', '9.1.2')
    assert rules[:len(REPLICATION_RULES)] == list(REPLICATION_RULES)
    assert {'+cluster|syncslots', '~*', '+@write', '-flushall'} <= set(rules)
    assert replication_rules('valkey', '10.0.0') == rules
