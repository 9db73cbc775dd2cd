"""The orphaned-key count's fast path: one CLUSTER SLOT-STATS in a transaction with DBSIZE, Valkey 8 and later."""

from __future__ import annotations

from types import SimpleNamespace

from ansible_collections.hashslot.redis.plugins.module_utils.cluster_health import holds_only_own_keys, keys_outside


class Client:
    def __init__(self, dbsize, counts):
        self.dbsize, self.counts, self.sent = dbsize, counts, []

    def pipeline(self, commands):
        self.sent.append([command[:2] for command in commands])
        if commands[0] == ('MULTI',):
            stats = [[slot, ['key-count', count]] for slot, count in sorted(self.counts.items())]
            return ['OK', 'QUEUED', 'QUEUED', [self.dbsize, stats]]
        return [self.counts.get(command[2], 0) for command in commands]


def master(server_name, version, client):
    myself = SimpleNamespace(importing={}, migrating={})
    return SimpleNamespace(server_name=server_name, version=version, client=client, node_id='me', myself=myself)


def test_a_valkey_master_holding_only_its_own_keys_is_cleared_in_one_transaction():
    client = Client(30, {0: 10, 1: 20})
    assert holds_only_own_keys(master('valkey', (9, 1, 2), client))
    assert keys_outside(master('valkey', (8, 1, 1), client), ['me', 'me', 'other']) == {}
    assert all(sent[0] == ('MULTI',) for sent in client.sent)


def test_keys_beyond_the_own_slots_fall_back_to_the_count_per_slot():
    # 5 keys in slot 2, which another master owns: DBSIZE says more than the own slots hold.
    client = Client(35, {0: 10, 1: 20, 2: 5})
    state = master('valkey', (9, 1, 2), client)
    original = client.pipeline

    def pipeline(commands):
        if commands[0] == ('MULTI',):
            return ['OK', 'QUEUED', 'QUEUED', [35, [[0, ['key-count', 10]], [1, ['key-count', 20]]]]]
        return original(commands)
    client.pipeline = pipeline
    assert not holds_only_own_keys(state)
    assert keys_outside(state, ['me', 'me', 'other']) == {2: 5}


def test_redis_and_valkey_7_always_count_per_slot():
    client = Client(30, {0: 10, 1: 20})
    assert not holds_only_own_keys(master('redis', (7, 0, 15), client))
    assert not holds_only_own_keys(master('valkey', (7, 2, 4), client))
    assert client.sent == []
