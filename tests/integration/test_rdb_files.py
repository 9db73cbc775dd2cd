"""rdb: what every server build writes is read back key by key, equal to what the server holds."""

from __future__ import annotations

import os
import random
import time
from collections import Counter

import pytest

from servers import cluster_info, raw_command

from ansible_collections.hashslot.redis.plugins.module_utils import rdb
from ansible_collections.hashslot.redis.plugins.module_utils.rdb import RdbReader, key_bytes, live_digest, rdb_header, read_rdb, summarize_rdb
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import ConnectionOptions, NodeClient, parse_info, parse_version, server_identity

DEBUG = {'enable-debug-command': 'yes'}


def wait_serving(server, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while cluster_info(server).get('cluster_state') != 'ok':
        assert time.monotonic() < deadline, f'{server.address} did not serve its slots: {cluster_info(server)}'
        time.sleep(0.02)


def single_node_cluster(servers, **extra):
    """One node serving every slot: what a backup reads (a master's file), without a six-node cluster's cost."""
    server, = servers.start(1, **DEBUG, **extra)
    client = server.client(decode_responses=False)
    client.execute_command('CLUSTER', 'ADDSLOTSRANGE', 0, 16383)
    wait_serving(server)
    return server, client


def field_ttls(build) -> bool:
    """HEXPIRE and HSETEX: Redis 8.0 (7.4 had HEXPIRE), Valkey 9."""
    return parse_version(build.version) >= ((8, 0, 0) if build.flavor == 'redis' else (9, 0, 0))


def write_every_type(client, build):
    """Keys of every type, each in its compact and its plain encoding, with the element encodings that have their own
    decoding (every integer width, every string length class, LZF, binary bytes). Returns the number of keys."""
    rng = random.Random(20)
    execute = client.execute_command
    integers = [0, 1, 127, 128, -1, -4096, 4095, 4096, 32767, -32768, 8388607, -8388608, 2147483647, -2147483648,
                9223372036854775807, -9223372036854775808, 12345678901]
    texts = [b'', b'a', b'007', b'1.5', b' 12', b'x' * 63, b'y' * 64, b'z' * 4095, b'w' * 4096, bytes(range(256))]
    strings = {
        b'str:plain': b'hello', b'str:empty': b'', b'str:int8': b'-7', b'str:int16': b'1000', b'str:int32': b'2147483647',
        b'str:long-int': b'12345678901234', b'str:not-int': b'0012', b'str:compressible': b'abc' * 100,
        b'str:long-run': b'q' * 1000000, b'str:random': rng.randbytes(100000), b'\x00\xff\xfe{bin}\n': bytes(range(256)) * 3,
        '{tag}caf\u00e9'.encode(): '\u00e9t\u00e9'.encode(),
    }
    for key, value in strings.items():
        execute('SET', key, value)
    execute('SET', b'str:ttl', b'expiring', 'PX', 3600000)
    execute('SET', b'str:ttl-at', b'expiring', 'PXAT', 4102444800123)

    execute('RPUSH', b'list:small', *integers, *texts)
    execute('CONFIG', 'SET', 'list-compress-depth', '1')  # the inner nodes are saved LZF-compressed
    execute('RPUSH', b'list:large', *[rng.choice(integers + texts[:6] + [str(index).encode()]) for index in range(3000)])
    execute('CONFIG', 'SET', 'list-compress-depth', '0')
    # Elements above the threshold get a quicklist node of their own (a plain node, Redis 7.0 and later).
    execute('DEBUG', 'QUICKLIST-PACKED-THRESHOLD', '1000')
    execute('RPUSH', b'list:plain-nodes', b'small', b'p' * 5000, b'1', rng.randbytes(3000), b'tail')
    execute('DEBUG', 'QUICKLIST-PACKED-THRESHOLD', str(1 << 30))
    execute('RPUSH', b'list:ttl', b'a', b'b')
    execute('PEXPIRE', b'list:ttl', 7200000)

    execute('SADD', b'set:intset', *integers)
    execute('SADD', b'set:small', b'a', b'b', b'1', bytes(range(40)))
    execute('SADD', b'set:large', *[f'member-{index}'.encode() for index in range(300)])
    execute('SADD', b'set:large-ints', *range(0, 6000, 7))

    execute('ZADD', b'zset:small', 1, b'a', 1.5, b'b', -2, b'c', 'inf', b'd', '-inf', b'e', 3e10, b'f', 0.1, b'g', 12345678901, b'h')
    execute('ZADD', b'zset:large', *[part for index in range(300) for part in (rng.uniform(-1e6, 1e6), f'm{index}'.encode())])
    execute('ZADD', b'zset:long-member', 2, b'v' * 100, 3, b'w')

    execute('HSET', b'hash:small', b'f', b'v', b'n', 12345, b'neg', -1, b'empty', b'', b'bin', bytes(range(40)))
    # Above hash-max-listpack-entries (512; 128 for sets and sorted sets).
    execute('HSET', b'hash:large', *[part for index in range(600) for part in (f'field-{index}'.encode(), str(index * 3).encode())])
    execute('HSET', b'hash:long-value', b'f', b'v' * 100)

    for index in range(10):
        execute('XADD', b'stream:groups', '*', b'n', index, b'payload', b'x' * index)
    execute('XGROUP', 'CREATE', b'stream:groups', b'g1', '0')
    execute('XREADGROUP', 'GROUP', b'g1', b'c1', 'COUNT', 3, 'STREAMS', b'stream:groups', '>')
    execute('XREADGROUP', 'GROUP', b'g1', b'c2', 'COUNT', 2, 'STREAMS', b'stream:groups', '>')
    first = execute('XRANGE', b'stream:groups', '-', '+', 'COUNT', 1)[0][0]
    execute('XACK', b'stream:groups', b'g1', first)
    execute('XGROUP', 'CREATE', b'stream:groups', b'g2', '$')
    execute('XGROUP', 'CREATECONSUMER', b'stream:groups', b'g2', b'idle')
    execute('XDEL', b'stream:groups', execute('XRANGE', b'stream:groups', '-', '+')[-1][0])
    execute('XGROUP', 'CREATE', b'stream:empty', b'g', '$', 'MKSTREAM')
    keys = len(strings) + 2 + 4 + 4 + 3 + 3 + 2
    if field_ttls(build):
        execute('HSET', b'hfe:small', b'a', 1, b'b', b'two', b'c', b'x' * 20)
        execute('HPEXPIRE', b'hfe:small', 3600000, 'FIELDS', 1, b'a')
        execute('HSET', b'hfe:large', *[part for index in range(600) for part in (f'f{index}'.encode(), str(index).encode())])
        execute('HEXPIRE', b'hfe:large', 7200, 'FIELDS', 3, b'f1', b'f2', b'f299')
        execute('HSETEX', b'hfe:setex', 'EX', 3600, 'FIELDS', 2, b'f', b'v', b'g', 7)
        execute('HSET', b'hfe:setex', b'persistent', b'p')
        execute('PEXPIRE', b'hfe:setex', 9000000)
        keys += 3
    execute('FUNCTION', 'LOAD', "#!lua name=rdbtest\nredis.register_function('rdbtest_one', function() return 1 end)")
    # Under an LRU policy every key is saved after an IDLE opcode.
    execute('CONFIG', 'SET', 'maxmemory-policy', 'allkeys-lru')
    return keys


def assert_entries_match_server(server, client, entries, db=0):
    """Every key of the server in the file, of its type, TTL and value (read with redis-py and with NodeClient)."""
    client.execute_command('SELECT', db)
    live_keys = set(client.scan_iter(count=1000))
    assert {entry.key for entry in entries if entry.db == db} == live_keys
    assert len(live_keys) == client.execute_command('DBSIZE')
    node = NodeClient('127.0.0.1', server.port, ConnectionOptions())
    node.connect()
    try:
        if db:
            node.call('SELECT', db)
        for entry in entries:
            expire = client.execute_command('PEXPIRETIME', entry.key)
            assert entry.expire_ms == (None if expire == -1 else expire), entry
            assert (entry.kind, entry.digest) == live_digest(client, entry.key), entry
            assert (entry.kind, entry.digest) == live_digest(node, entry.key), entry
    finally:
        node.close()


def read_file(path):
    """The entries, and the value types and opcodes the file used, by name (what each build writes, printed)."""
    with open(path, 'rb') as handle:
        entries = list(read_rdb(handle, path))
    with open(path, 'rb') as handle:
        reader = RdbReader(handle, path)
        types = Counter(reader.type_names[code][1] for dummy, code, dummy_db, dummy_expire, dummy_value in reader.records(lambda key, db: False))
    opcodes = {name[len('OPCODE_'):]: reader.opcodes[code] for name, code in vars(rdb).items() if name.startswith('OPCODE_') and code in reader.opcodes}
    print(f'{path}: {reader.magic}{reader.rdb_version}, types {dict(sorted(types.items()))}, opcodes {opcodes}')
    return entries, types, opcodes


def test_every_type_read_back_equal_to_the_server(build, servers):
    server, client = single_node_cluster(servers)
    count = write_every_type(client, build)
    client.execute_command('SAVE')
    path = os.path.join(server.directory, 'dump.rdb')
    entries, types, opcodes = read_file(path)

    assert len(entries) == count == client.execute_command('DBSIZE')
    assert_entries_match_server(server, client, entries)
    by_key = {entry.key: entry for entry in entries}
    assert by_key[b'str:ttl-at'].expire_ms == 4102444800123 and by_key[b'str:plain'].expire_ms is None
    assert {by_key[b'stream:groups'].kind, by_key[b'stream:empty'].kind} == {'stream'} and by_key[b'stream:groups'].digest is None
    # The encodings the keys above were written to produce: compact and plain of every type.
    assert {'STRING', 'LIST_QUICKLIST_2', 'SET_INTSET', 'SET', 'ZSET_LISTPACK', 'ZSET_2', 'HASH_LISTPACK', 'HASH'} <= set(types)
    # Redis 7.2 (Valkey's base) added sets in listpacks and the consumers' active time to streams.
    since_7_2 = build.flavor == 'valkey' or parse_version(build.version) >= (7, 2, 0)
    assert {'SET_LISTPACK', 'STREAM_LISTPACKS_3'} <= set(types) if since_7_2 else 'STREAM_LISTPACKS_2' in types
    if field_ttls(build):
        assert {'HASH_LISTPACK_EX', 'HASH_METADATA'} <= set(types) if build.flavor == 'redis' else 'HASH_2' in types
    # The LRU policy's idle times, the function library, and in cluster mode the keys per slot (Redis 7.4's opcode,
    # Valkey's slot-info AUX field, one per slot among the keys).
    assert opcodes['IDLE'] == count and opcodes['FUNCTION2'] == 1
    slots = len(summarize_rdb(path, sample=0)['slot_counts'])
    if build.flavor == 'valkey':
        assert opcodes['AUX'] == slots
    elif parse_version(build.version) >= (7, 4, 0):
        assert opcodes['SLOT_INFO'] == slots

    with open(path, 'rb') as handle:
        header = rdb_header(handle, path)
        assert handle.tell() == 0
    assert header['magic'] == ('VALKEY' if build.flavor == 'valkey' and parse_version(build.version) >= (9, 0, 0) else 'REDIS')
    server_version = server_identity(parse_info(raw_command(server, 'INFO', 'server')))

    summary = summarize_rdb(path, sample=10)
    assert summary['keys'] == count and summary['keys_by_db'] == {'0': count} and summary['rdb_version'] == header['rdb_version']
    assert (summary['server'], summary['server_version']) == server_version and summary['size'] == os.path.getsize(path) and summary['trailing_bytes'] == 0
    assert summary['expires'] == sum(entry.expire_ms is not None for entry in entries)
    assert summary['slot_counts'] == {slot: client.execute_command('CLUSTER', 'COUNTKEYSINSLOT', int(slot)) for slot in summary['slot_counts']}
    assert len(summary['sample']) == 10
    for item in summary['sample']:
        assert (item['kind'], item['digest']) == live_digest(client, key_bytes(item))
        assert item['expire_ms'] == by_key[key_bytes(item)].expire_ms
    # A smaller sample is part of the larger one: the keys of smallest hash, wherever they are in the file.
    assert {item['key'] for item in summarize_rdb(path, sample=4)['sample']} < {item['key'] for item in summary['sample']}


def test_databases_and_lfu_of_a_standalone_server(build, servers):
    server, = servers.start(1, cluster=False, **{'maxmemory-policy': 'allkeys-lfu'})
    client = server.client(decode_responses=False)
    for db in (0, 3, 15):
        client.execute_command('SELECT', db)
        client.execute_command('SET', b'same-key', f'db{db}'.encode())
        client.execute_command('HSET', f'hash-{db}'.encode(), b'f', db)
        client.execute_command('SET', f'ttl-{db}'.encode(), b'v', 'EX', 100 + db)
    client.execute_command('SAVE')
    path = os.path.join(server.directory, 'dump.rdb')
    entries, dummy_types, opcodes = read_file(path)
    assert opcodes['FREQ'] == 9 and opcodes['SELECTDB'] == 3
    written = [(db, key) for db in (0, 3, 15) for key in (b'same-key', f'hash-{db}'.encode(), f'ttl-{db}'.encode())]
    assert sorted((entry.db, entry.key) for entry in entries) == sorted(written)
    for db in (0, 3, 15):
        assert_entries_match_server(server, client, [entry for entry in entries if entry.db == db], db)
    summary = summarize_rdb(path)
    assert summary['keys_by_db'] == {'0': 3, '3': 3, '15': 3} and summary['expires'] == 3 and len(summary['sample']) == 9
    assert [(item['db'], item['key']) for item in summary['sample']] == sorted((item['db'], item['key']) for item in summary['sample'])


def test_summary_of_200000_keys(build, servers):
    server, client = single_node_cluster(servers)
    client.execute_command('DEBUG', 'POPULATE', 200000, 'rdb:key', 24)
    for index in range(0, 200000, 1000):
        client.execute_command('PEXPIRE', f'rdb:key:{index}'.encode(), 3600000)
    client.execute_command('SAVE')
    path = os.path.join(server.directory, 'dump.rdb')
    started = time.perf_counter()
    summary = summarize_rdb(path)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    with open(path, 'rb') as handle:
        read = sum(1 for dummy in read_rdb(handle, path))
    full = time.perf_counter() - started
    print(f'{build.name}: summarize_rdb of 200,000 keys ({summary["size"] / 1e6:.1f} MB): {seconds:.2f} s; read_rdb with every digest: {full:.2f} s')
    assert summary['keys'] == read == 200000 == sum(summary['slot_counts'].values()) and summary['expires'] == 200
    assert len(summary['slot_counts']) == 16384
    for slot in ('0', '5000', '16383'):
        assert summary['slot_counts'][slot] == client.execute_command('CLUSTER', 'COUNTKEYSINSLOT', int(slot))
    for item in summary['sample']:
        assert (item['kind'], item['digest']) == live_digest(client, key_bytes(item))


@pytest.mark.atomic_migration
def test_a_file_written_during_a_valkey_slot_import(build, servers):
    """Valkey 9 saves the slot imports in progress (opcode 243) and the keys they brought so far, which the target's
    DBSIZE does not count yet: the summary names the import and counts those keys apart."""
    source, target = servers.start(2)
    raw_command(source, 'CLUSTER', 'ADDSLOTSRANGE', 0, 16383)
    raw_command(target, 'CLUSTER', 'MEET', '127.0.0.1', source.port)
    target_id = raw_command(target, 'CLUSTER', 'MYID')
    deadline = time.monotonic() + 20
    while cluster_info(target).get('cluster_state') != 'ok' or target_id not in raw_command(source, 'CLUSTER', 'NODES'):
        assert time.monotonic() < deadline, 'the two nodes did not meet'
        time.sleep(0.02)
    writes = source.client(decode_responses=False).pipeline(transaction=False)
    for index in range(3000):
        writes.set(f'{{tag{index % 50}}}key{index}'.encode(), b'value')
    writes.execute()
    # The source's snapshot of the slots waits 2 ms a key: the import stays in flight for seconds.
    raw_command(source, 'CONFIG', 'SET', 'rdb-key-save-delay', '2000')
    try:
        raw_command(source, 'CLUSTER', 'MIGRATESLOTS', 'SLOTSRANGE', 0, 8000, 'NODE', target_id)
        deadline = time.monotonic() + 20
        while True:
            raw_command(target, 'SAVE')
            summary = summarize_rdb(os.path.join(target.directory, 'dump.rdb'), sample=0)
            if summary['importing_keys']:
                break
            assert time.monotonic() < deadline, 'no key imported'
            time.sleep(0.05)
        jobs = [dict(zip(job[0::2], job[1::2])) for job in raw_command(target, 'CLUSTER', 'GETSLOTMIGRATIONS')]
        slot = next(iter(summary['slot_counts']))
        counted = raw_command(target, 'DBSIZE'), raw_command(target, 'CLUSTER', 'COUNTKEYSINSLOT', int(slot))
    finally:
        raw_command(source, 'CLUSTER', 'CANCELSLOTMIGRATIONS')
        raw_command(source, 'CONFIG', 'SET', 'rdb-key-save-delay', '0')
    assert [job['operation'] for job in jobs] == ['IMPORT']
    assert summary['slot_imports'] == [{'name': jobs[0]['name'], 'ranges': [[0, 8000]]}]
    # DBSIZE leaves the importing keys out; COUNTKEYSINSLOT counts them (Valkey 9.1.2).
    assert 0 < summary['importing_keys'] == summary['keys'] < 3000 and counted == (0, summary['slot_counts'][slot])
