# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The RDB reader on files built byte by byte here: the encodings no current server writes any more (ziplists, every
integer width, the 64-bit length form), the layouts of hashes with field TTLs, damaged files. What real servers write
is read in tests/integration/test_rdb_files.py."""

from __future__ import annotations

import hashlib
import io
import struct
from collections import Counter

import pytest
from hypothesis import given, settings, strategies as st
from redis.crc import key_slot

from ansible_collections.hashslot.redis.plugins.module_utils.rdb import (
    RdbEntry, RdbError, key_bytes, lzf_decompress, rdb_header, read_rdb, summarize_rdb, value_digest,
)

# What Redis 7.0 wrote for SET str:compressible ('abc' * 100): the LZF string encoding (0xC3), the compressed length
# (14), the expanded length (300, in the 14-bit form), then the LZF data.
REDIS_LZF_STRING = bytes.fromhex('c30e412c 0361626361 e0ff02 e11507 01 6263')


def lzf_compress(data: bytes) -> bytes:
    """A plain greedy LZF compressor, to give the decompressor input it did not see written by hand."""
    out = bytearray()
    literal = bytearray()
    seen = {}
    position = 0

    def flush():
        while literal:
            out.append(min(len(literal), 32) - 1)
            out.extend(literal[:32])
            del literal[:32]

    while position < len(data):
        triple = data[position:position + 3]
        candidate = seen.get(triple) if len(triple) == 3 else None
        seen[triple] = position
        if candidate is None or position - candidate > 8192:
            literal.append(data[position])
            position += 1
            continue
        length = 3
        while length < min(264, len(data) - position) and data[candidate + length] == data[position + length]:
            length += 1
        flush()
        distance = position - candidate - 1
        if length - 2 < 7:
            out.append(((length - 2) << 5) | (distance >> 8))
        else:
            out += bytes([(7 << 5) | (distance >> 8), length - 2 - 7])
        out.append(distance & 0xFF)
        position += length
    flush()
    return bytes(out)


def length(value: int, form: str = '') -> bytes:
    """An RDB length, in its smallest form or the one named (6, 14, 32, 64 bits)."""
    form = form or ('6' if value < 64 else '14' if value < 16384 else '32' if value < 1 << 32 else '64')
    if form == '6':
        return bytes([value])
    if form == '14':
        return bytes([0x40 | value >> 8, value & 0xFF])
    return (b'\x80' + struct.pack('>I', value)) if form == '32' else (b'\x81' + struct.pack('>Q', value))


def string(data: bytes, form: str = '') -> bytes:
    return length(len(data), form) + data


def record(type_code: int, key: bytes, value: bytes) -> bytes:
    return bytes([type_code]) + string(key) + value


def rdb_file(*records: bytes, magic: bytes = b'REDIS0012', aux: bool = True) -> bytes:
    header = magic + (b'\xfa' + string(b'redis-ver') + string(b'8.0.2') + b'\xfa' + string(b'ctime') + b'\xc2' + struct.pack('<i', 1765000000)
                      if aux else b'')
    return header + b'\xfe\x00\xfb\x01\x00' + b''.join(records) + b'\xff' + bytes.fromhex('0102030405060708')


def entries(data: bytes):
    return list(read_rdb(io.BytesIO(data), 'test.rdb'))


def only_entry(data: bytes) -> RdbEntry:
    found = entries(data)
    assert len(found) == 1
    return found[0]


def ziplist(*encoded: bytes) -> bytes:
    """Entries as (encoding and data) bytes; the first one with the 5-byte previous-length form."""
    body = b''.join((b'\xfe' + struct.pack('<I', 0) if index == 0 else b'\x05') + entry for index, entry in enumerate(encoded))
    return struct.pack('<IIH', 11 + len(body), 10, len(encoded)) + body + b'\xff'


def listpack(*encoded: bytes) -> bytes:
    """Entries as (encoding and data) bytes, each followed by its back-length."""
    def backlen(size):
        groups = []
        while True:
            groups.insert(0, size & 127)
            size >>= 7
            if not size:
                break
        return bytes([groups[0]] + [group | 128 for group in groups[1:]])
    body = b''.join(entry + backlen(len(entry)) for entry in encoded)
    return struct.pack('<IH', 7 + len(body), len(encoded)) + body + b'\xff'


def lp_text(data: bytes) -> bytes:
    if len(data) < 64:
        return bytes([0x80 | len(data)]) + data
    if len(data) < 4096:
        return bytes([0xE0 | len(data) >> 8, len(data) & 0xFF]) + data
    return b'\xf0' + struct.pack('<I', len(data)) + data


def test_lzf_vector_written_by_redis():
    assert only_entry(rdb_file(record(0, b'k', REDIS_LZF_STRING))).digest == value_digest('string', b'abc' * 100)


@pytest.mark.parametrize('compressed, expected', [
    (b'\x04hello', b'hello'),                       # a literal run only
    (b'\x02abc\x80\x02', b'abc' * 3),               # 'abc', then 6 bytes from 3 back
    (b'\x00a\xe0\x00\x00', b'a' * 10),              # a run overlapping what it copies (distance 1), extended length
    (b'\x01ab\xe0\xff\x01', b'ab' * 133),           # the longest back reference: 7 + 255 + 2 bytes
])
def test_lzf_known_vectors(compressed, expected):
    assert lzf_decompress(compressed, len(expected)) == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([b'a', b'ab', b'xyz', b'\x00', b'0123456789', b'long-enough-to-repeat']), max_size=300), st.binary(max_size=50))
def test_lzf_round_trip(parts, noise):
    data = noise + b''.join(parts) + noise
    assert lzf_decompress(lzf_compress(data), len(data)) == data


@pytest.mark.parametrize('compressed, size, problem', [
    (b'\x00a\x20\x05', 4, 'before the start'),
    (b'\x04hel', 5, 'past the end'),
    (b'\x04hello', 6, 'expands to 5 bytes'),
    (b'\x00a\xe0', 10, 'cut short'),
])
def test_lzf_damage_is_named(compressed, size, problem):
    with pytest.raises(ValueError, match=problem):
        lzf_decompress(compressed, size)


@pytest.mark.parametrize('size, form', [(0, '6'), (63, '6'), (64, '14'), (16383, '14'), (16384, '32'), (5, '14'), (5, '32'), (5, '64'), (70000, '64')])
def test_every_length_form(size, form):
    value = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert only_entry(rdb_file(record(0, b'k', string(value, form)))).digest == hashlib.sha256(value).hexdigest()


@pytest.mark.parametrize('encoded, text', [
    (b'\xc0\x7f', b'127'), (b'\xc0\x80', b'-128'), (b'\xc1' + struct.pack('<h', -30000), b'-30000'),
    (b'\xc2' + struct.pack('<i', 2147483647), b'2147483647'), (b'\xc2' + struct.pack('<i', -5), b'-5'),
])
def test_integer_encoded_strings_read_as_their_text(encoded, text):
    entry = only_entry(rdb_file(b'\x00' + encoded + encoded))
    assert entry.key == text and entry.digest == value_digest('string', text)


ZIPLIST_ENTRIES = [
    (b'\x05hello', b'hello'), (b'\x40\x41' + b'm' * 65, b'm' * 65), (b'\x80' + struct.pack('>I', 3) + b'big', b'big'),
    (b'\xc0' + struct.pack('<h', -2), b'-2'), (b'\xd0' + struct.pack('<i', 100000), b'100000'), (b'\xe0' + struct.pack('<q', -2 ** 40), b'-1099511627776'),
    (b'\xf0' + (-8000000).to_bytes(3, 'little', signed=True), b'-8000000'), (b'\xfe\x9c', b'-100'), (b'\xf1', b'0'), (b'\xfd', b'12'),
]
LISTPACK_ENTRIES = [
    (b'\x05', b'5'), (b'\x7f', b'127'), (lp_text(b'text'), b'text'), (lp_text(b'm' * 300), b'm' * 300), (lp_text(b'g' * 5000), b'g' * 5000),
    (bytes([0xC0 | (4095 >> 8), 4095 & 0xFF]), b'4095'), (bytes([0xC0 | (4096 >> 8), 0]), b'-4096'), (b'\xf1' + struct.pack('<h', -300), b'-300'),
    (b'\xf2' + (5000000).to_bytes(3, 'little', signed=True), b'5000000'), (b'\xf3' + struct.pack('<i', -2 ** 31), b'-2147483648'),
    (b'\xf4' + struct.pack('<q', 2 ** 63 - 1), b'9223372036854775807'), (lp_text(b''), b''),
]


def test_ziplist_and_listpack_entry_encodings():
    zip_items = [item for dummy, item in ZIPLIST_ENTRIES]
    lp_items = [item for dummy, item in LISTPACK_ENTRIES]
    found = entries(rdb_file(
        record(10, b'ziplist', string(ziplist(*[encoded for encoded, dummy in ZIPLIST_ENTRIES]))),
        record(14, b'quicklist', length(2) + string(ziplist(b'\x01a', b'\xf2')) + string(ziplist(b'\x01b'))),
        record(18, b'quicklist2', length(3) + length(2) + string(listpack(*[encoded for encoded, dummy in LISTPACK_ENTRIES])) + length(1)
               + string(b'a plain node') + length(2) + string(listpack(b'\x01'))),
        record(20, b'set-listpack', string(listpack(lp_text(b'b'), lp_text(b'a'), b'\x07'))),
        record(12, b'zset-ziplist', string(ziplist(b'\x01a', b'\x031.5', b'\x01b', b'\xf3'))),
        record(17, b'zset-listpack', string(listpack(lp_text(b'a'), lp_text(b'1.5'), lp_text(b'b'), b'\x02'))),
        record(13, b'hash-ziplist', string(ziplist(b'\x01f', b'\x01v', b'\x01n', b'\xfe\x05'))),
        record(16, b'hash-listpack', string(listpack(lp_text(b'n'), b'\x05', lp_text(b'f'), lp_text(b'v')))),
    ))
    digests = {entry.key: (entry.kind, entry.digest) for entry in found}
    assert digests[b'ziplist'] == ('list', value_digest('list', zip_items))
    assert digests[b'quicklist'] == ('list', value_digest('list', [b'a', 1, b'b']))
    assert digests[b'quicklist2'] == ('list', value_digest('list', lp_items + [b'a plain node', 1]))
    assert digests[b'set-listpack'] == ('set', value_digest('set', [b'a', b'b', 7]))
    assert digests[b'zset-ziplist'] == digests[b'zset-listpack'] == ('zset', value_digest('zset', {b'a': 1.5, b'b': 2}))
    assert digests[b'hash-ziplist'] == digests[b'hash-listpack'] == ('hash', value_digest('hash', {b'f': b'v', b'n': b'5'}))


@pytest.mark.parametrize('width, code', [(2, 'h'), (4, 'i'), (8, 'q')])
def test_intset_widths(width, code):
    members = [-3, 0, 7]
    blob = struct.pack(f'<II3{code}', width, 3, *members)
    assert only_entry(rdb_file(record(11, b's', string(blob)))).digest == value_digest('set', members)


def test_plain_types_and_old_zset_scores():
    found = entries(rdb_file(
        record(1, b'list', length(3) + string(b'x') + b'\xc0\x05' + REDIS_LZF_STRING),
        record(2, b'set', length(2) + string(b'b') + string(b'a')),
        record(3, b'zset', length(3) + string(b'a') + b'\x031.5' + string(b'b') + b'\xfe' + string(b'c') + b'\xff'),
        record(5, b'zset2', length(3) + string(b'a') + struct.pack('<d', 1.5) + string(b'b') + struct.pack('<d', float('inf'))
               + string(b'c') + struct.pack('<d', float('-inf'))),
        record(4, b'hash', length(2) + string(b'f') + string(b'v') + string(b'g') + b'\xc0\x01'),
    ))
    digests = {entry.key: entry.digest for entry in found}
    assert digests[b'list'] == value_digest('list', [b'x', b'5', b'abc' * 100])
    assert digests[b'set'] == value_digest('set', [b'a', b'b'])
    assert digests[b'zset'] == digests[b'zset2'] == value_digest('zset', [(b'a', b'1.5'), (b'b', b'inf'), (b'c', b'-inf')])
    assert digests[b'hash'] == value_digest('hash', [(b'g', b'1'), (b'f', b'v')])


def test_hashes_with_field_ttls_digest_fields_and_values_only():
    expected = value_digest('hash', {b'a': b'1', b'b': b'two'})
    redis = entries(rdb_file(
        record(24, b'metadata', struct.pack('<q', 1765000000000) + length(2) + length(0) + string(b'b') + string(b'two') + length(5) + string(b'a')
               + b'\xc0\x01'),
        record(25, b'listpack-ex', struct.pack('<q', 1765000000000) + string(listpack(
            lp_text(b'a'), b'\x01', b'\xf4' + struct.pack('<q', 1765000000000), lp_text(b'b'), lp_text(b'two'), b'\x00'))),
        record(22, b'metadata-pre-ga', length(1) + length(1765000000000, '64') + string(b'a') + string(b'1')),
    ))
    assert [(entry.kind, entry.digest) for entry in redis[:2]] == [('hash', expected)] * 2
    assert redis[2].digest == value_digest('hash', {b'a': b'1'})
    # Valkey 9 took type 22 for its own layout: field, value, then the field's expiry (-1 for none).
    valkey = only_entry(rdb_file(record(22, b'hash2', length(2) + string(b'a') + string(b'1') + struct.pack('<q', 1765000000000) + string(b'b')
                                        + string(b'two') + struct.pack('<q', -1)), magic=b'VALKEY080'))
    assert (valkey.kind, valkey.digest) == ('hash', expected)


def stream_value(type_code: int) -> bytes:
    """Two listpacks, one consumer group with two pending entries and two consumers, as STREAM_LISTPACKS_<n> lays out."""
    stream_id = bytes(16)
    value = length(2) + (string(stream_id) + string(listpack(b'\x01', b'\x00'))) * 2 + length(7) + length(1765000000000) + length(3)
    if type_code >= 19:
        value += length(1) + length(0) + length(0) + length(0) + length(9)
    value += length(1) + string(b'group') + length(1765000000000) + length(1) + (length(5) if type_code >= 19 else b'')
    value += length(2) + (stream_id + struct.pack('<q', 1765000000000) + length(1)) * 2
    value += length(2)
    for name, pending in ((b'alice', 2), (b'bob', 0)):
        value += string(name) + struct.pack('<q', 1765000000000) * (2 if type_code >= 21 else 1) + length(pending) + stream_id * pending
    return value


def test_streams_and_module_values_are_skipped_exactly():
    found = entries(rdb_file(
        record(15, b's15', stream_value(15)), record(19, b's19', stream_value(19)), record(21, b's21', stream_value(21)),
        b'\xf7' + length(12345) + length(2) + length(1) + length(5) + string(b'aux') + length(0),  # MODULE_AUX, when=1
        record(7, b'module', length(98765) + length(1) + length(3) + length(2) + length(4) + length(3) + b'\x00' * 4 + length(4) + b'\x00' * 8
               + length(5) + string(b'payload') + length(0)),
        b'\xf5' + string(b'#!lua name=lib\nredis.register_function(...)'),
        b'\xf4' + length(100) + length(3) + length(1),  # SLOT_INFO
        b'\xf8' + length(500) + b'\xf9\x05' + b'\xfc' + struct.pack('<q', 1765000000123) + record(0, b'after', string(b'ok')),
        b'\xfd' + struct.pack('<i', 1765000000) + record(0, b'seconds', string(b'ok')),
    ))
    assert [(entry.key, entry.kind, entry.digest) for entry in found[:4]] == [(b's15', 'stream', None), (b's19', 'stream', None), (b's21', 'stream', None),
                                                                              (b'module', 'module', None)]
    assert found[4] == RdbEntry(b'after', 'string', 0, 1765000000123, value_digest('string', b'ok'))
    assert found[5].expire_ms == 1765000000000


def test_databases_and_expiry_belong_to_the_next_key_only():
    found = entries(rdb_file(
        b'\xfc' + struct.pack('<q', 42) + record(0, b'a', string(b'1')), record(0, b'b', string(b'2')),
        b'\xfe\x05' + record(0, b'a', string(b'3')),
    ))
    assert [(entry.key, entry.db, entry.expire_ms) for entry in found] == [(b'a', 0, 42), (b'b', 0, None), (b'a', 5, None)]


def test_header_and_valkey_slot_imports(tmp_path):
    data = rdb_file(b'\xf3' + string(b'j' * 40) + length(2) + length(0) + length(99) + length(200) + length(300), record(0, b'k', string(b'v')),
                    magic=b'VALKEY080')
    handle = io.BytesIO(data)
    assert rdb_header(handle) == {'magic': 'VALKEY', 'rdb_version': 80, 'aux': {'redis-ver': '8.0.2', 'ctime': '1765000000'}}
    assert handle.tell() == 0
    path = tmp_path / 'dump.rdb'
    path.write_bytes(data)
    summary = summarize_rdb(str(path))
    assert summary['slot_imports'] == [{'name': 'j' * 40, 'ranges': [[0, 99], [200, 300]]}] and summary['importing_keys'] == 0
    # The keys in the slots of an import are counted apart.
    path.write_bytes(data.replace(length(200) + length(300), length(7629) + length(7629)))
    assert summarize_rdb(str(path))['importing_keys'] == 1 and key_slot(b'k') == 7629
    assert summary['checksum'] == '0807060504030201' and summary['ctime'] == 1765000000 and summary['sha256'] == hashlib.sha256(data).hexdigest()
    # Opcode 243 is Valkey's: in a REDIS file it is unknown.
    with pytest.raises(RdbError, match=r'at byte 43: opcode 243 \(0xf3\) unknown'):
        entries(data.replace(b'VALKEY080', b'REDIS0012'))


@pytest.mark.parametrize('data, problem', [
    (b'', 'at byte 0: not an RDB file: shorter than'),
    (b'REDIX0011\xff', r"at byte 0: not an RDB file: it starts with b'REDIX0011'"),
    (b'REDIS0013\xff', 'at byte 0: RDB format version REDIS0013 is newer than this reader knows'),
    (b'VALKEY081\xff', 'at byte 0: RDB format version VALKEY081 is newer'),
    (rdb_file(record(30, b'k', b''), aux=False), r'at byte 14: unknown value type 30 \(0x1e\)'),
    (rdb_file(record(9, b'k', string(b'zipmap')), aux=False), 'at byte 14: a hash in the zipmap encoding'),
    (rdb_file(b'\xf6' + string(b'x'), aux=False), 'at byte 14: opcode 246 .* FUNCTION_PRE_GA'),
    (rdb_file(record(0, b'k', b'\xc4'), aux=False), 'at byte 17: unknown string encoding 0xc4'),
    (rdb_file(record(1, b'k', b'\xc0'), aux=False), 'at byte 17: length encoding 0xc0 where a length belongs'),
    (rdb_file(record(10, b'k', string(ziplist(b'\xf0'))), aux=False), 'at byte 17: ziplist: a ziplist entry runs past the end'),
    (rdb_file(record(20, b'k', string(listpack(b'\xf5'))), aux=False), 'at byte 17: listpack: unknown listpack entry encoding 0xf5'),
    (rdb_file(record(0, b'k', b'\xc3\x03\x0a\x00a\xff'), aux=False), 'at byte 17: LZF-compressed string: LZF back reference at 2'),
])
def test_what_cannot_be_read_is_named_with_its_offset(data, problem):
    with pytest.raises(RdbError, match=f'^test.rdb: {problem}'):
        entries(data)


def test_a_truncated_file_names_where_it_ends():
    data = rdb_file(record(0, b'key', string(b'v' * 100)), record(1, b'list', length(2) + string(b'a') + string(b'b')))
    assert len(entries(data)) == 2
    for cut in range(9, len(data)):
        with pytest.raises(RdbError, match=r'at byte \d+: .*truncated'):
            entries(data[:cut])
    with pytest.raises(RdbError, match=r'^test.rdb: at byte 50: the file ends 47 bytes later, 100 were expected: truncated$'):
        entries(data[:97])


def test_digests_are_canonical():
    assert value_digest('string', b'abc') == hashlib.sha256(b'abc').hexdigest() == value_digest('string', 'abc')
    assert value_digest('list', [b'ab']) != value_digest('list', [b'a', b'b']) != value_digest('list', [b'b', b'a'])
    assert value_digest('list', [b'12', b'-3']) == value_digest('list', [12, -3]) == value_digest('list', ['12', '-3'])
    assert value_digest('set', [b'b', b'a']) == value_digest('set', {b'a', b'b'}) != value_digest('set', [b'ab'])
    # A score is a number however it is spelled: a server's reply, a listpack integer, a binary double.
    assert value_digest('zset', {b'a': 1, b'b': float('inf')}) == value_digest('zset', [b'b', b'inf', b'a', b'1.0']) == \
        value_digest('zset', [(b'a', b'1'), (b'b', 'inf')])
    assert value_digest('zset', {b'a': 1}) != value_digest('zset', {b'a': 1.5})
    assert value_digest('hash', {b'f': b'v', b'g': b'w'}) == value_digest('hash', [b'g', b'w', b'f', b'v']) != value_digest('hash', {b'f': b'w', b'g': b'v'})
    assert value_digest('hash', {b'fv': b''}) != value_digest('hash', {b'f': b'v'})
    with pytest.raises(ValueError, match='no digest for kind'):
        value_digest('stream', [])


def test_summary_counts_slots_and_samples_by_key_hash(tmp_path):
    keys = [f'key:{index}'.encode() for index in range(300)] + [b'{user1}a', b'{user1}b', b'\xff\xfe binary']
    path = tmp_path / 'dump.rdb'
    path.write_bytes(rdb_file(*[b'\xfc' + struct.pack('<q', 99) + record(0, key, string(key)) if key.endswith(b'7') else record(0, key, string(key))
                                for key in keys], b'\xfe\x02', record(2, b'key:0', length(1) + string(b'm'))))
    summary = summarize_rdb(str(path), sample=20)
    assert summary['keys'] == 304 and summary['keys_by_db'] == {'0': 303, '2': 1} and summary['expires'] == 30
    assert summary['kinds'] == {'set': 1, 'string': 303} and summary['magic'] == 'REDIS' and summary['server_version'] == '8.0.2'
    # Hash tags count: {user1}a and {user1}b are in the slot of user1 (8106).
    assert summary['slot_counts'] == {str(slot): count for slot, count in sorted(Counter(key_slot(key) for key in keys + [b'key:0']).items())}
    assert summary['slot_counts']['8106'] >= 2 and key_slot(b'user1') == 8106
    assert list(summary['slot_counts']) == sorted(summary['slot_counts'], key=int)
    assert [(item['db'], key_bytes(item)) for item in summary['sample']] == sorted((item['db'], key_bytes(item)) for item in summary['sample'])
    for item in summary['sample']:
        key = key_bytes(item)
        assert item['digest'] == (value_digest('set', [b'm']) if item['db'] == 2 else value_digest('string', key))
        assert item['key_base64'] == (key == b'\xff\xfe binary') and item['expire_ms'] == (99 if key.endswith(b'7') else None)
    # The same keys in another order give the same sample; a smaller sample is part of a larger one.
    path.write_bytes(rdb_file(*[record(0, key, string(key)) for key in reversed(keys)]))
    again = summarize_rdb(str(path), sample=10)
    assert {item['key'] for item in again['sample']} < {item['key'] for item in summary['sample']}
    assert summarize_rdb(str(path), sample=0)['sample'] == []
