# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A streaming reader of RDB files (Redis 2.6 to 8.0, Valkey 7.2 to 9.x), without a server.

A backup is only as good as what can be proven about it: the backup playbook writes a manifest from the RDB files it
fetched (keys per slot, the file's sha256, the digests of a sample of values) on the controller, where no server runs,
and a restore is verified key by key against the files. So the format is read here, in pure Python.

The file is read once, front to back, in chunks: memory holds one value at a time, never the file, and a 1 GB file
reads like a small one, only longer. Every value is turned into a canonical form that does not depend on how the
server encoded it (a listpack or a hash table, an integer or its decimal text, LZF-compressed or not), so that the
digest of a key read from a file equals the digest of the same key read from a live server (live_digest).

The trailing CRC64 is not verified: the checksum is Redis's CRC-64/Jones, for which the standard library has no C
implementation, and a pure Python one runs at a few MB/s (minutes for a 1 GB file). The sha256 in the manifest
protects the file from the backup on; the checksum is returned as found (all zeros when the server had rdbchecksum
off) for redis-check-rdb or valkey-check-rdb to verify where that matters.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import itertools
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Optional, Tuple

from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import HAS_REDIS, REDIS_IMPORT_ERROR, NodeError
from ansible_collections.hashslot.redis.plugins.module_utils.topology import SLOT_COUNT

if HAS_REDIS:
    from redis.crc import key_slot  # the cluster's CRC16 and hash tags (redis_client guards the import of redis-py)

KINDS = ('string', 'list', 'set', 'zset', 'hash', 'stream', 'module')
# The kinds whose values are compared; a stream or a module value is counted and skipped.
DIGESTED_KINDS = ('string', 'list', 'set', 'zset', 'hash')

# The newest format versions read here. An older Redis cannot load a newer file and neither can this reader: a new
# version may change what a type code means (Valkey 9 gave type 22 another meaning than Redis 7.4 did).
REDIS_MAX_VERSION = 12
VALKEY_VERSIONS = range(80, 81)

OPCODE_SLOT_IMPORT = 243  # Valkey 9 (VALKEY magic): a slot import in progress when the file was written
OPCODE_SLOT_INFO = 244
OPCODE_FUNCTION2 = 245
OPCODE_FUNCTION_PRE_GA = 246
OPCODE_MODULE_AUX = 247
OPCODE_IDLE = 248
OPCODE_FREQ = 249
OPCODE_AUX = 250
OPCODE_RESIZEDB = 251
OPCODE_EXPIRETIME_MS = 252
OPCODE_EXPIRETIME = 253
OPCODE_SELECTDB = 254
OPCODE_EOF = 255

# Value types: (kind, name as in the servers' rdb.h). Redis 7.4 and Valkey 9 both took 22 for hashes with field TTLs,
# with different layouts: the magic says which (REDIS for Redis, VALKEY for Valkey 9 and later).
TYPE_NAMES = {
    0: ('string', 'STRING'),
    1: ('list', 'LIST'),
    2: ('set', 'SET'),
    3: ('zset', 'ZSET'),
    4: ('hash', 'HASH'),
    5: ('zset', 'ZSET_2'),
    6: ('module', 'MODULE_PRE_GA'),
    7: ('module', 'MODULE_2'),
    9: ('hash', 'HASH_ZIPMAP'),
    10: ('list', 'LIST_ZIPLIST'),
    11: ('set', 'SET_INTSET'),
    12: ('zset', 'ZSET_ZIPLIST'),
    13: ('hash', 'HASH_ZIPLIST'),
    14: ('list', 'LIST_QUICKLIST'),
    15: ('stream', 'STREAM_LISTPACKS'),
    16: ('hash', 'HASH_LISTPACK'),
    17: ('zset', 'ZSET_LISTPACK'),
    18: ('list', 'LIST_QUICKLIST_2'),
    19: ('stream', 'STREAM_LISTPACKS_2'),
    20: ('set', 'SET_LISTPACK'),
    21: ('stream', 'STREAM_LISTPACKS_3'),
}
REDIS_TYPE_NAMES = {
    22: ('hash', 'HASH_METADATA_PRE_GA'),
    23: ('hash', 'HASH_LISTPACK_EX_PRE_GA'),
    24: ('hash', 'HASH_METADATA'),
    25: ('hash', 'HASH_LISTPACK_EX'),
}
VALKEY_TYPE_NAMES = {
    22: ('hash', 'HASH_2'),
}

# Module value annotations (RDB_MODULE_OPCODE_*), which let a reader skip a value without its module.
_MODULE_EOF, _MODULE_SINT, _MODULE_UINT, _MODULE_FLOAT, _MODULE_DOUBLE, _MODULE_STRING = range(6)
_QUICKLIST_PLAIN, _QUICKLIST_PACKED = 1, 2
_CHUNK = 1 << 20
_LENGTH_PREFIX = struct.Struct('>Q')
_TIME_MS = struct.Struct('<q')
_TIME_S = struct.Struct('<i')


class RdbError(Exception):
    """The file is not an RDB file this reader understands, or is damaged; names the file, the byte offset and what
    was wrong there."""

    def __init__(self, name: str, offset: int, what: str):
        super().__init__(f'{name or "RDB file"}: at byte {offset}: {what}')
        self.name = name
        self.offset = offset
        self.what = what


@dataclass(frozen=True)
class RdbEntry:
    """One key as the file holds it. digest is value_digest() of the value; None for a stream or a module value,
    which are counted but not compared.

    A server saves what it holds, expired or not: a key whose expire_ms had passed when the file was written, or a
    hash field whose TTL had, but which the server had not yet removed, is in the file (and in the digest) while a
    server that loads the file, and live_digest, no longer see it."""
    key: bytes
    kind: str
    db: int
    expire_ms: Optional[int]
    digest: Optional[str]


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, (bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, str):
        return item.encode('utf-8')
    if isinstance(item, int) and not isinstance(item, bool):
        return str(item).encode('ascii')
    raise TypeError(f'a value element must be bytes, str or int, not {type(item).__name__}')


def _pairs(value: Any) -> List[Tuple[Any, Any]]:
    if isinstance(value, dict):
        return list(value.items())
    items = list(value)
    if items and isinstance(items[0], (tuple, list)):
        return [tuple(pair) for pair in items]
    if len(items) % 2:
        raise ValueError(f'a flat list of pairs must have an even length, not {len(items)}')
    return list(zip(items[0::2], items[1::2]))


def _score(score: Any) -> bytes:
    # A server answers 1.5 or 3 or inf; a file holds a binary double, an integer or text: one float spells them alike.
    return repr(float(score.decode('ascii') if isinstance(score, (bytes, bytearray)) else score)).encode('ascii')


def value_digest(kind: str, value: Any) -> str:
    """The sha256 (hex) of a value's canonical encoding, the same whichever encoding the server chose.

    string: the sha256 of its bytes (what sha256sum prints for the value). The others: each element as an 8-byte
    big-endian length then its bytes (so ['ab'] and ['a', 'b'] differ), in this order: list, the elements in order;
    set, the members sorted; zset, (member, score) sorted by member, the score written as repr(float(score)); hash,
    (field, value) sorted by field. Elements may be bytes, str (UTF-8) or int (its decimal text, as a server sends an
    integer-encoded element). A digest is only compared with one of the same kind.
    """
    if kind == 'string':
        return hashlib.sha256(_as_bytes(value)).hexdigest()
    if kind == 'list':
        items = [_as_bytes(item) for item in value]
    elif kind == 'set':
        items = sorted(_as_bytes(item) for item in value)
    elif kind == 'zset':
        items = [part for pair in sorted((_as_bytes(member), _score(score)) for member, score in _pairs(value)) for part in pair]
    elif kind == 'hash':
        items = [part for pair in sorted((_as_bytes(field), _as_bytes(item)) for field, item in _pairs(value)) for part in pair]
    else:
        raise ValueError(f'no digest for kind {kind!r} (one of {", ".join(DIGESTED_KINDS)})')
    digest = hashlib.sha256()
    pack = _LENGTH_PREFIX.pack
    for start in range(0, len(items), 1024):
        digest.update(b''.join(pack(len(item)) + item for item in items[start:start + 1024]))
    return digest.hexdigest()


def lzf_decompress(data: bytes, length: int) -> bytes:
    """LZF (liblzf's format, which RDB uses for strings longer than 20 bytes) expanded to `length` bytes.

    A control byte below 32 copies the next ctrl+1 bytes as they are; above, its top 3 bits (plus a byte when they
    are all set) give a length-2 and the rest with the next byte a distance-1 back into what is already expanded. The
    copy may overlap what it writes (a run of one byte is a distance of 1): it repeats the pattern. Raises ValueError
    on data that does not expand to exactly `length` bytes."""
    out = bytearray()
    position = 0
    end = len(data)
    while position < end:
        control = data[position]
        position += 1
        if control < 32:
            run = control + 1
            if position + run > end:
                raise ValueError(f'LZF literal of {run} bytes at {position - 1} runs past the end of {end} bytes')
            out += data[position:position + run]
            position += run
            continue
        run = control >> 5
        if run == 7:
            if position >= end:
                raise ValueError(f'LZF back reference at {position - 1} is cut short')
            run += data[position]
            position += 1
        if position >= end:
            raise ValueError(f'LZF back reference at {position - 1} is cut short')
        distance = ((control & 0x1F) << 8) + data[position] + 1
        position += 1
        run += 2
        start = len(out) - distance
        if start < 0:
            raise ValueError(f'LZF back reference at {position - 2} points {distance} bytes back, before the start')
        if distance >= run:
            out += out[start:start + run]
        else:
            out += (out[start:] * (run // distance + 1))[:run]
        if len(out) > length:
            break
    if len(out) != length:
        raise ValueError(f'LZF data expands to {len(out)} bytes, the header says {length}')
    return bytes(out)


def _int_text(value: int) -> bytes:
    return str(value).encode('ascii')


def _packed_items(blob: bytes, what: str, header: int, entry: Callable[[bytes, int], Tuple[bytes, int]]) -> List[bytes]:
    """The entries of a ziplist or a listpack: from the end of the header to the 0xFF end marker, each read by
    entry(blob, position) -> (item, position of the next)."""
    if len(blob) <= header:
        raise ValueError(f'a {what} of {len(blob)} bytes is shorter than its header')
    items = []
    position = header
    size = len(blob)
    while True:
        if position >= size:
            raise ValueError(f'the {what} has no end marker')
        if blob[position] == 0xFF:
            return items
        item, position = entry(blob, position)
        if position > size:
            raise ValueError(f'a {what} entry runs past the end')
        items.append(item)


_ZIPLIST_INTS = {0xC0: 2, 0xD0: 4, 0xE0: 8, 0xF0: 3, 0xFE: 1}


def _ziplist_entry(blob: bytes, position: int) -> Tuple[bytes, int]:
    position += 5 if blob[position] == 0xFE else 1  # the previous entry's length, in 1 or 5 bytes
    if position >= len(blob):
        raise ValueError('a ziplist entry is cut short')
    encoding = blob[position]
    top = encoding >> 6
    if top == 0:
        length, position = encoding & 0x3F, position + 1
    elif top == 1:
        length, position = ((encoding & 0x3F) << 8) | blob[position + 1], position + 2
    elif top == 2:
        length, position = int.from_bytes(blob[position + 1:position + 5], 'big'), position + 5
    elif encoding in _ZIPLIST_INTS:
        width = _ZIPLIST_INTS[encoding]
        return _int_text(int.from_bytes(blob[position + 1:position + 1 + width], 'little', signed=True)), position + 1 + width
    elif 0xF1 <= encoding <= 0xFD:
        return _int_text((encoding & 0x0F) - 1), position + 1
    else:
        raise ValueError(f'unknown ziplist entry encoding 0x{encoding:02x}')
    return blob[position:position + length], position + length


def ziplist_items(blob: bytes) -> List[bytes]:
    """The entries of a ziplist (RDB 4 to 9 lists, hashes and sorted sets), integers as their decimal text."""
    return _packed_items(blob, 'ziplist', 10, _ziplist_entry)


def _backlen_size(size: int) -> int:
    # A listpack entry ends with its own size written in 7-bit groups, for walking backwards: 1 to 5 bytes.
    if size <= 127:
        return 1
    if size <= 16383:
        return 2
    if size <= 2097151:
        return 3
    if size <= 268435455:
        return 4
    return 5


_LISTPACK_INTS = {0xF1: 2, 0xF2: 3, 0xF3: 4, 0xF4: 8}


def _listpack_entry(blob: bytes, position: int) -> Tuple[bytes, int]:
    encoding = blob[position]
    if encoding < 0x80:
        item, entry = _int_text(encoding), 1
    elif encoding < 0xC0:
        length = encoding & 0x3F
        item, entry = blob[position + 1:position + 1 + length], 1 + length
    elif encoding < 0xE0:
        value = ((encoding & 0x1F) << 8) | blob[position + 1]
        item, entry = _int_text(value - 8192 if value >= 4096 else value), 2
    elif encoding < 0xF0:
        length = ((encoding & 0x0F) << 8) | blob[position + 1]
        item, entry = blob[position + 2:position + 2 + length], 2 + length
    elif encoding == 0xF0:
        length = int.from_bytes(blob[position + 1:position + 5], 'little')
        item, entry = blob[position + 5:position + 5 + length], 5 + length
    elif encoding in _LISTPACK_INTS:
        width = _LISTPACK_INTS[encoding]
        item, entry = _int_text(int.from_bytes(blob[position + 1:position + 1 + width], 'little', signed=True)), 1 + width
    else:
        raise ValueError(f'unknown listpack entry encoding 0x{encoding:02x}')
    return item, position + entry + _backlen_size(entry)


def listpack_items(blob: bytes) -> List[bytes]:
    """The entries of a listpack (RDB 10 and later), integers as their decimal text."""
    return _packed_items(blob, 'listpack', 6, _listpack_entry)


def intset_items(blob: bytes) -> List[bytes]:
    """The members of an intset (sets of integers only), as their decimal text."""
    if len(blob) < 8:
        raise ValueError(f'an intset of {len(blob)} bytes is shorter than its header')
    width, count = struct.unpack_from('<II', blob)
    code = {2: 'h', 4: 'i', 8: 'q'}.get(width)
    if code is None:
        raise ValueError(f'an intset of {width}-byte integers')
    if len(blob) != 8 + width * count:
        raise ValueError(f'an intset of {count} {width}-byte integers takes {8 + width * count} bytes, not {len(blob)}')
    return [_int_text(value) for value in struct.unpack_from(f'<{count}{code}', blob, 8)]


class _Source:
    """The file read in chunks of 1 MB, with the offset of every byte (for the messages) and, when asked, each chunk
    passed on as read (the sha256 of the whole file in the same pass)."""

    def __init__(self, handle: BinaryIO, name: str, on_chunk: Optional[Callable[[bytes], Any]] = None):
        self.handle = handle
        self.name = name
        self.on_chunk = on_chunk
        self.buffer = b''
        self.position = 0
        self.base = 0  # the file offset of buffer[0]

    @property
    def offset(self) -> int:
        return self.base + self.position

    def error(self, what: str, offset: Optional[int] = None) -> RdbError:
        return RdbError(self.name, self.offset if offset is None else offset, what)

    def _chunk(self, size: int) -> bytes:
        chunk = self.handle.read(size)
        if chunk and self.on_chunk is not None:
            self.on_chunk(chunk)
        return chunk

    def _fill(self, size: int) -> None:
        parts = [self.buffer[self.position:]]
        have = len(parts[0])
        self.base += self.position
        self.position = 0
        while have < size:
            chunk = self._chunk(max(_CHUNK, size - have))
            if not chunk:
                self.buffer = b''.join(parts)
                raise self.error(f'the file ends {have} bytes later, {size} were expected: truncated')
            parts.append(chunk)
            have += len(chunk)
        self.buffer = b''.join(parts)

    def read(self, size: int) -> bytes:
        end = self.position + size
        if end > len(self.buffer):
            self._fill(size)
            end = size
        data = self.buffer[self.position:end]
        self.position = end
        return data

    def byte(self) -> int:
        if self.position >= len(self.buffer):
            self._fill(1)
        value = self.buffer[self.position]
        self.position += 1
        return value

    def skip(self, size: int) -> None:
        """Pass over `size` bytes without holding them (a large value nobody asked for)."""
        available = len(self.buffer) - self.position
        if size <= available:
            self.position += size
            return
        start = self.offset
        size -= available
        self.base += len(self.buffer)
        self.buffer = b''
        self.position = 0
        while size > 0:
            chunk = self._chunk(_CHUNK)
            if not chunk:
                raise self.error(f'the file ends {self.base - start} bytes into a value that should be longer: truncated')
            if len(chunk) > size:
                self.buffer = chunk
                self.position = size
                return
            self.base += len(chunk)
            size -= len(chunk)

    def drain(self) -> int:
        """Read to the end of the file; the count of bytes that were left."""
        left = len(self.buffer) - self.position
        self.base += len(self.buffer)
        self.buffer = b''
        self.position = 0
        while True:
            chunk = self._chunk(_CHUNK)
            if not chunk:
                return left
            left += len(chunk)
            self.base += len(chunk)

    def length(self) -> int:
        return self._length(self.byte())

    def lengths(self, count: int) -> None:
        """Pass over `count` lengths (ids and counters nothing here needs)."""
        for dummy in range(count):
            self._length(self.byte())

    def _length(self, first: int) -> int:
        kind = first >> 6
        if kind == 0:
            return first & 0x3F
        if kind == 1:
            return ((first & 0x3F) << 8) | self.byte()
        if first == 0x80:
            return int.from_bytes(self.read(4), 'big')
        if first == 0x81:
            return int.from_bytes(self.read(8), 'big')
        raise self.error(f'length encoding 0x{first:02x} where a length belongs', self.offset - 1)

    def string(self) -> bytes:
        """A string: raw, an integer written as 1, 2 or 4 bytes (returned as its decimal text), or LZF-compressed."""
        first = self.byte()
        if first < 0xC0:
            return self.read(self._length(first))
        encoding = first & 0x3F
        if encoding == 0:
            return _int_text(int.from_bytes(self.read(1), 'little', signed=True))
        if encoding == 1:
            return _int_text(int.from_bytes(self.read(2), 'little', signed=True))
        if encoding == 2:
            return _int_text(int.from_bytes(self.read(4), 'little', signed=True))
        if encoding == 3:
            start = self.offset - 1
            compressed = self.length()
            length = self.length()
            try:
                return lzf_decompress(self.read(compressed), length)
            except ValueError as exc:
                raise self.error(f'LZF-compressed string: {exc}', start) from exc
        raise self.error(f'unknown string encoding 0x{first:02x}', self.offset - 1)

    def skip_string(self) -> None:
        first = self.byte()
        if first < 0xC0:
            self.skip(self._length(first))
            return
        encoding = first & 0x3F
        if encoding < 3:
            self.skip((1, 2, 4)[encoding])
        elif encoding == 3:
            compressed = self.length()
            self.length()
            self.skip(compressed)
        else:
            raise self.error(f'unknown string encoding 0x{first:02x}', self.offset - 1)

    def double_text(self) -> float:
        """A score of the old ZSET type: its length in one byte (253 nan, 254 inf, 255 -inf), then its text."""
        length = self.byte()
        if length >= 253:
            return (float('nan'), float('inf'), float('-inf'))[length - 253]
        start = self.offset
        text = self.read(length)
        try:
            return float(text.decode('ascii'))
        except (UnicodeDecodeError, ValueError) as exc:
            raise self.error(f'score {text!r} is not a number', start) from exc

    def time_ms(self) -> int:
        return _TIME_MS.unpack(self.read(8))[0]


class RdbReader:
    """One pass over one RDB file: the header (magic, version, the AUX fields), then the keys.

    records() yields (key, type code, db, expire_ms, value) tuples, value the canonical value (bytes for a string, a
    list of bytes for a list or a set, of (member, score) for a zset, of (field, value) for a hash), or None for a
    stream, a module value, and a key that `wanted(key, db)` declined: such values are passed over without being
    decoded. After the last record: checksum (the 8 bytes after EOF, hex), slot_imports (Valkey 9), aux, resize_hints,
    opcodes.
    """

    def __init__(self, handle: BinaryIO, name: str = '', on_chunk: Optional[Callable[[bytes], Any]] = None):
        self.source = _Source(handle, name, on_chunk)
        self.name = name
        self.magic = ''
        self.rdb_version = 0
        self.aux: Dict[str, str] = {}
        self.checksum: Optional[str] = None
        self.slot_imports: List[Dict[str, Any]] = []
        self.resize_hints: Dict[int, Tuple[int, int]] = {}
        self.opcodes: Dict[int, int] = {}  # how many of each opcode (not the AUX fields of the header): what a server writes
        self.type_names = dict(TYPE_NAMES)
        self._pending_type: Optional[int] = None

    def read_header(self) -> Dict[str, Any]:
        """The magic and version, then the AUX fields up to the first other record (which is kept for records())."""
        if self.magic:
            return self.header
        source = self.source
        try:
            magic = source.read(9)
        except RdbError as exc:
            raise source.error('not an RDB file: shorter than the 9-byte magic and version', 0) from exc
        if magic[:5] == b'REDIS' and magic[5:].isdigit() and 1 <= int(magic[5:]) <= REDIS_MAX_VERSION:
            self.magic, self.rdb_version = 'REDIS', int(magic[5:])
            self.type_names.update(REDIS_TYPE_NAMES)
        elif magic[:6] == b'VALKEY' and magic[6:].isdigit() and int(magic[6:]) in VALKEY_VERSIONS:
            self.magic, self.rdb_version = 'VALKEY', int(magic[6:])
            self.type_names.update(VALKEY_TYPE_NAMES)
        elif magic[:5] == b'REDIS' or magic[:6] == b'VALKEY':
            raise source.error(f'RDB format version {magic.decode("ascii", "replace")} is newer than this reader knows '
                               f'(REDIS0001 to REDIS{REDIS_MAX_VERSION:04d}, VALKEY080)', 0)
        else:
            raise source.error(f'not an RDB file: it starts with {magic!r}, not REDIS or VALKEY and a version', 0)
        while True:
            code = source.byte()
            if code != OPCODE_AUX:
                self._pending_type = code
                return self.header
            self._read_aux()

    @property
    def header(self) -> Dict[str, Any]:
        return dict(magic=self.magic, rdb_version=self.rdb_version, aux=dict(self.aux))

    def _read_aux(self) -> None:
        name = self.source.string().decode('utf-8', 'replace')
        value = self.source.string()
        # Valkey 8 and later write one slot-info field per slot among the keys (sizes to preallocate), as many as
        # there are slots: not header material.
        if name != 'slot-info':
            self.aux[name] = value.decode('utf-8', 'replace')

    def records(self, wanted: Optional[Callable[[bytes, int], bool]] = None) -> Iterator[Tuple[bytes, int, int, Optional[int], Any]]:
        self.read_header()
        source = self.source
        db = 0
        expire_ms: Optional[int] = None
        while True:
            start = source.offset
            if self._pending_type is not None:
                code, self._pending_type = self._pending_type, None
                start -= 1
            else:
                code = source.byte()
            if code < OPCODE_SLOT_IMPORT:
                if code not in self.type_names:
                    raise source.error(f'unknown value type {code} (0x{code:02x}): this reader cannot tell where the record ends', start)
                key = source.string()
                if wanted is None or wanted(key, db):
                    value = self._value(code, start)
                else:
                    value = None
                    self._skip_value(code, start)
                yield key, code, db, expire_ms, value
                expire_ms = None
                continue
            self.opcodes[code] = self.opcodes.get(code, 0) + 1
            if code == OPCODE_EXPIRETIME_MS:
                expire_ms = source.time_ms()
            elif code == OPCODE_EXPIRETIME:
                expire_ms = _TIME_S.unpack(source.read(4))[0] * 1000
            elif code == OPCODE_IDLE:
                source.length()  # seconds since the key was last read or written (under an LRU maxmemory-policy)
            elif code == OPCODE_FREQ:
                source.byte()  # the key's access frequency counter (under an LFU maxmemory-policy)
            elif code == OPCODE_SELECTDB:
                db = source.length()
            elif code == OPCODE_RESIZEDB:
                self.resize_hints[db] = (source.length(), source.length())
            elif code == OPCODE_SLOT_INFO:
                source.lengths(3)  # slot, keys, expires: sizes to preallocate (Redis 7.4 and later)
            elif code == OPCODE_AUX:
                self._read_aux()
            elif code == OPCODE_FUNCTION2:
                source.skip_string()
            elif code == OPCODE_MODULE_AUX:
                source.length()
                when_opcode = source.length()
                if when_opcode != _MODULE_UINT:
                    raise source.error(f'module AUX data with a "when" of annotation {when_opcode}, not an unsigned integer', start)
                source.length()
                self._skip_module_value(start)
            elif code == OPCODE_SLOT_IMPORT and self.magic == 'VALKEY':
                job = source.string().decode('utf-8', 'replace')
                ranges = [[source.length(), source.length()] for dummy in range(source.length())]
                self.slot_imports.append(dict(name=job, ranges=ranges))
            elif code == OPCODE_EOF:
                if self.rdb_version >= 5:
                    self.checksum = source.read(8)[::-1].hex()
                return
            else:
                what = 'FUNCTION_PRE_GA (functions of Redis 7.0 release candidates)' if code == OPCODE_FUNCTION_PRE_GA else 'unknown'
                raise source.error(f'opcode {code} (0x{code:02x}) {what}: this reader cannot tell where the record ends', start)

    def kind(self, code: int) -> str:
        return self.type_names[code][0]

    def _blob(self, parse: Callable[[bytes], List[bytes]], what: str) -> List[bytes]:
        start = self.source.offset
        blob = self.source.string()
        try:
            return parse(blob)
        except (ValueError, IndexError) as exc:
            raise self.source.error(f'{what}: {exc}', start) from exc

    def _value(self, code: int, start: int) -> Any:
        source = self.source
        string = source.string
        if code == 0:
            return string()
        if code in (1, 2):
            return [string() for dummy in range(source.length())]
        if code == 3:
            return [(string(), source.double_text()) for dummy in range(source.length())]
        if code == 4:
            return [(string(), string()) for dummy in range(source.length())]
        if code == 5:
            return [(string(), struct.unpack('<d', source.read(8))[0]) for dummy in range(source.length())]
        if code == 10:
            return self._blob(ziplist_items, 'ziplist')
        if code == 11:
            return self._blob(intset_items, 'intset')
        if code in (12, 13):
            return _paired(self._blob(ziplist_items, 'ziplist'), 2)
        if code == 14:
            return [item for dummy in range(source.length()) for item in self._blob(ziplist_items, 'quicklist ziplist node')]
        if code in (16, 17):
            return _paired(self._blob(listpack_items, 'listpack'), 2)
        if code == 18:
            items: List[bytes] = []
            for dummy in range(source.length()):
                node = source.offset
                container = source.length()
                if container == _QUICKLIST_PLAIN:
                    items.append(string())
                elif container == _QUICKLIST_PACKED:
                    items += self._blob(listpack_items, 'quicklist listpack node')
                else:
                    raise source.error(f'quicklist node container {container} (1 plain, 2 packed)', node)
            return items
        if code == 20:
            return self._blob(listpack_items, 'listpack')
        if code == 22 and self.magic == 'VALKEY':
            pairs = []
            for dummy in range(source.length()):
                pairs.append((string(), string()))
                source.skip(8)  # the field's expiry, absolute ms, -1 for none: not part of the value compared
            return pairs
        if code in (22, 24):
            if code == 24:
                source.skip(8)  # the smallest field expiry, from which the fields' are counted
            pairs = []
            for dummy in range(source.length()):
                source.length()  # the field's TTL
                pairs.append((string(), string()))
            return pairs
        if code in (23, 25):
            if code == 25:
                source.skip(8)
            return _paired(self._blob(listpack_items, 'listpack with field TTLs'), 3)
        self._skip_value(code, start)
        return None

    def _skip_value(self, code: int, start: int) -> None:
        source = self.source
        skip_string = source.skip_string
        if code in (0, 10, 11, 12, 13, 16, 17, 20):
            skip_string()
        elif code in (1, 2, 14):
            for dummy in range(source.length()):
                skip_string()
        elif code == 3:
            for dummy in range(source.length()):
                skip_string()
                length = source.byte()
                if length < 253:
                    source.skip(length)
        elif code == 4:
            for dummy in range(source.length() * 2):
                skip_string()
        elif code == 5:
            for dummy in range(source.length()):
                skip_string()
                source.skip(8)
        elif code == 18:
            for dummy in range(source.length()):
                source.length()
                skip_string()
        elif code == 22 and self.magic == 'VALKEY':
            for dummy in range(source.length()):
                skip_string()
                skip_string()
                source.skip(8)
        elif code in (22, 24):
            if code == 24:
                source.skip(8)
            for dummy in range(source.length()):
                source.length()
                skip_string()
                skip_string()
        elif code in (23, 25):
            if code == 25:
                source.skip(8)
            skip_string()
        elif code in (15, 19, 21):
            self._skip_stream(code)
        elif code == 7:
            source.length()  # the module type id (its name and encoding version)
            self._skip_module_value(start)
        elif code == 9:
            raise source.error('a hash in the zipmap encoding (RDB before version 4): not supported, load and save the file with a newer server',
                               start)
        else:
            raise source.error(f'a value of type {self.type_names[code][1]} ({code}): not supported', start)

    def _skip_stream(self, code: int) -> None:
        source = self.source
        for dummy in range(source.length()):  # listpacks, each after its master entry id
            source.skip_string()
            source.skip_string()
        source.lengths(3)  # entries, last id (ms, sequence)
        if code >= 19:
            source.lengths(5)  # first id, the largest deleted id, entries ever added
        for dummy in range(source.length()):  # consumer groups
            source.skip_string()
            source.lengths(3 if code >= 19 else 2)  # last delivered id, and from type 19 the entries read
            for dummy_pending in range(source.length()):  # the group's pending entries: id, delivery time, delivery count
                source.skip(16 + 8)
                source.length()
            for dummy_consumer in range(source.length()):
                source.skip_string()
                source.skip(16 if code >= 21 else 8)  # seen time, and from type 21 the active time
                source.skip(16 * source.length())  # the consumer's pending ids

    def _skip_module_value(self, start: int) -> None:
        source = self.source
        while True:
            opcode = source.length()
            if opcode == _MODULE_EOF:
                return
            if opcode in (_MODULE_SINT, _MODULE_UINT):
                source.length()
            elif opcode == _MODULE_FLOAT:
                source.skip(4)
            elif opcode == _MODULE_DOUBLE:
                source.skip(8)
            elif opcode == _MODULE_STRING:
                source.skip_string()
            else:
                raise source.error(f'module value annotation {opcode} (0 to 5) in the record that starts at byte {start}', source.offset - 1)


def _paired(items: List[bytes], width: int) -> List[Tuple[bytes, bytes]]:
    if len(items) % width:
        raise ValueError(f'{len(items)} entries are not a whole number of {width}-entry tuples')
    return list(zip(items[0::width], items[1::width]))


def _entry(reader: RdbReader, record: Tuple[bytes, int, int, Optional[int], Any]) -> RdbEntry:
    key, code, db, expire_ms, value = record
    kind = reader.kind(code)
    return RdbEntry(key, kind, db, expire_ms, value_digest(kind, value) if kind in DIGESTED_KINDS else None)


def read_rdb(handle: BinaryIO, name: str = '') -> Iterator[RdbEntry]:
    """Every key of the RDB file open in `handle` (binary), in file order, with the digest of its value. name: how
    errors (RdbError) name the file."""
    reader = RdbReader(handle, name)
    for record in reader.records():
        yield _entry(reader, record)


def rdb_header(handle: BinaryIO, name: str = '') -> Dict[str, Any]:
    """{'magic': 'REDIS' or 'VALKEY', 'rdb_version': int, 'aux': {name: text}} from the start of the file: the AUX
    fields the server writes first (redis-ver or valkey-ver, redis-bits, ctime, used-mem, aof-base, the replication
    ids). Reads ahead by up to a chunk; a seekable handle is put back where it was."""
    start = handle.tell() if handle.seekable() else None
    try:
        return RdbReader(handle, name).read_header()
    finally:
        if start is not None:
            handle.seek(start)


def key_text(key: bytes) -> Dict[str, Any]:
    """A key as JSON holds it: {'key': text, 'key_base64': False} when it is UTF-8, else the base64 of its bytes."""
    try:
        return dict(key=key.decode('utf-8'), key_base64=False)
    except UnicodeDecodeError:
        return dict(key=base64.b64encode(key).decode('ascii'), key_base64=True)


def key_bytes(item: Dict[str, Any]) -> bytes:
    """The key of a summary's sample item (key_text's form) as bytes."""
    return base64.b64decode(item['key']) if item.get('key_base64') else item['key'].encode('utf-8')


def _sample_rank(key: bytes, db: int) -> Tuple[int, int]:
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), 'big'), db


def summarize_rdb(path: str, sample: int = 100) -> Dict[str, Any]:
    """One pass over an RDB file: what a backup manifest records about it.

    Returns path, size, sha256 (of the whole file), magic, rdb_version, server ('redis' or 'valkey') and
    server_version (from the AUX fields), ctime (when the server wrote the file, unix seconds, or None), aux, keys (in
    all dbs), keys_by_db ({'0': count}), expires (keys with a TTL), expiring ({'<slot>': [expire_ms, ...]} of the keys with a TTL: a
    restore's check counts a slot's keys less those whose TTL has ended), kinds ({'string': count, ...}), slot_counts
    ({'<slot>': count} for each cluster slot that holds keys, in slot order, all dbs together: exact, at most 16384),
    slot_imports (Valkey 9: the slot imports in progress, [{name, ranges: [[start, end], ...]}]), importing_keys (the
    keys in those slots: the file holds them and keys and slot_counts count them, while the DBSIZE of the server that
    wrote it leaves them out until the import ends; its COUNTKEYSINSLOT counts them), checksum (the CRC64 stored, hex,
    not verified), trailing_bytes (after the checksum; 0 for a dump.rdb) and sample.

    sample: up to `sample` keys, each {key, key_base64, db, kind, expire_ms, digest}, sorted by db and key: the keys
    whose BLAKE2b hash is smallest. The choice depends on the keys alone, not on their order in the file, the clock or
    a dict's order: the same data gives the same sample, a restore is checked on the same keys, and the keys fall
    anywhere in the file. Only the candidates' values are decoded; the others are passed over undecoded, which is most
    of what makes the pass fast.
    """
    if not HAS_REDIS:
        raise RuntimeError(f'redis-py is required to map keys to cluster slots: {REDIS_IMPORT_ERROR}')
    file_hash = hashlib.sha256()
    slots = [0] * SLOT_COUNT
    keys_by_db: Dict[int, int] = {}
    kinds: Dict[str, int] = {}
    expires = 0
    expiring: Dict[int, List[int]] = {}
    # heapq keeps its smallest item on top and the sample keeps the smallest ranks: ranks are negated, so that the
    # largest rank kept is the one on top, the one a smaller newcomer replaces.
    kept: List[Tuple[Tuple[int, int], bytes, int, Dict[str, Any]]] = []
    sequence = itertools.count()  # a file holding a key twice (damaged) must not make heapq compare two dicts

    def wanted(key: bytes, db: int) -> bool:
        if len(kept) < sample:
            return True
        if sample <= 0:
            return False
        rank, dummy = _sample_rank(key, db)
        return (-rank, -db) > kept[0][0]

    with open(path, 'rb') as handle:
        reader = RdbReader(handle, path, file_hash.update)
        for record in reader.records(wanted):
            key, code, db, expire_ms, value = record
            slots[key_slot(key)] += 1
            keys_by_db[db] = keys_by_db.get(db, 0) + 1
            kind = reader.kind(code)
            kinds[kind] = kinds.get(kind, 0) + 1
            if expire_ms is not None:
                expires += 1
                expiring.setdefault(key_slot(key), []).append(expire_ms)
            if sample > 0 and (value is not None or kind not in DIGESTED_KINDS):
                rank, dummy = _sample_rank(key, db)
                if len(kept) < sample or (-rank, -db) > kept[0][0]:
                    item = dict(key_text(key), db=db, kind=kind, expire_ms=expire_ms, digest=_entry(reader, record).digest)
                    (heapq.heappush if len(kept) < sample else heapq.heapreplace)(kept, ((-rank, -db), key, next(sequence), item))
        trailing = reader.source.drain()
        size = reader.source.offset
    server, version = ('valkey', reader.aux['valkey-ver']) if 'valkey-ver' in reader.aux else ('redis', reader.aux.get('redis-ver', ''))
    ctime = reader.aux.get('ctime', '')
    return dict(
        path=path, size=size, sha256=file_hash.hexdigest(), magic=reader.magic, rdb_version=reader.rdb_version,
        server=server, server_version=version, ctime=int(ctime) if ctime.lstrip('-').isdigit() else None, aux=reader.aux,
        keys=sum(keys_by_db.values()), keys_by_db={str(db): count for db, count in sorted(keys_by_db.items())}, expires=expires,
        kinds=dict(sorted(kinds.items())), slot_counts={str(slot): count for slot, count in enumerate(slots) if count},
        expiring={str(slot): sorted(times) for slot, times in sorted(expiring.items())},
        slot_imports=reader.slot_imports, importing_keys=sum(sum(slots[start:end + 1]) for job in reader.slot_imports for start, end in job['ranges']),
        checksum=reader.checksum, trailing_bytes=trailing,
        sample=[item for dummy, dummy_key, dummy_index, item in sorted(kept, key=lambda kept_item: (kept_item[3]['db'], kept_item[1]))],
    )


def _command(client: Any, *args: Any) -> Any:
    """One command's reply as bytes, from a redis-py client (decode_responses=False) or a NodeClient (whose call()
    decodes replies to text and would mangle binary values, hence its pipeline without decoding)."""
    execute = getattr(client, 'execute_command', None)
    if execute is not None:
        return execute(*args)
    reply = client.pipeline([args], decode=False)[0]
    if isinstance(reply, Exception):
        raise NodeError(client.address, f'{args[0]} failed: {reply}')
    return reply


def _flat_pairs(reply: Any) -> List[Tuple[Any, Any]]:
    if isinstance(reply, dict):
        return list(reply.items())
    return _pairs(reply or [])


def live_digest(client: Any, key: bytes) -> Tuple[str, Optional[str]]:
    """(kind, digest) of a key on a live server, comparable with an RdbEntry's: TYPE, then GET, LRANGE 0 -1,
    SMEMBERS, ZRANGE 0 -1 WITHSCORES or HGETALL. ('stream', None) and ('module', None) for the kinds not compared,
    ('none', None) when the key does not exist. client: a NodeClient, or a redis-py client with
    decode_responses=False (text replies would spoil binary values). Two round trips, not atomic: a key written
    meanwhile may show its new value with its old type's reading."""
    kind = _command(client, 'TYPE', key)
    kind = kind.decode('ascii', 'replace') if isinstance(kind, bytes) else str(kind)
    if kind == 'none':
        return kind, None
    if kind == 'string':
        value = _command(client, 'GET', key)
        if value is None:
            return 'none', None
        return kind, value_digest(kind, value)
    if kind == 'list':
        return kind, value_digest(kind, _command(client, 'LRANGE', key, 0, -1))
    if kind == 'set':
        return kind, value_digest(kind, list(_command(client, 'SMEMBERS', key)))
    if kind == 'zset':
        return kind, value_digest(kind, _flat_pairs(_command(client, 'ZRANGE', key, 0, -1, 'WITHSCORES')))
    if kind == 'hash':
        return kind, value_digest(kind, _flat_pairs(_command(client, 'HGETALL', key)))
    if kind == 'stream':
        return kind, None
    return 'module', None
