# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster topology model: parsing CLUSTER NODES, slot ranges, rendering for diffs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

SLOT_COUNT = 16384

SlotRange = Tuple[int, int]


def slots_to_ranges(slots: Iterable[int]) -> List[SlotRange]:
    """Sorted slot numbers -> inclusive (start, end) ranges."""
    ranges: List[SlotRange] = []
    for slot in sorted(set(slots)):
        if ranges and ranges[-1][1] == slot - 1:
            ranges[-1] = (ranges[-1][0], slot)
        else:
            ranges.append((slot, slot))
    return ranges


def merge_ranges(ranges: Iterable[SlotRange]) -> List[SlotRange]:
    """Inclusive ranges -> sorted ranges with overlapping and adjacent ones joined, as slots_to_ranges would give for
    their slots, without listing every slot (CLUSTER NODES of a large cluster is parsed on every poll)."""
    merged: List[SlotRange] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + 1:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def ranges_to_slots(ranges: Iterable[SlotRange]) -> List[int]:
    slots: List[int] = []
    for start, end in ranges:
        slots.extend(range(start, end + 1))
    return slots


def format_ranges(ranges: Sequence[SlotRange]) -> List[str]:
    return [str(start) if start == end else f'{start}-{end}' for start, end in ranges]


def parse_slot_ranges(items: Iterable[str]) -> List[SlotRange]:
    """['0-1000', '5461'] -> [(0, 1000), (5461, 5461)]; raises ValueError naming the bad item."""
    slots: List[int] = []
    for item in items:
        text = str(item).strip()
        start_text, dash, end_text = text.partition('-')
        try:
            start = int(start_text)
            end = int(end_text) if dash else start
        except ValueError:
            raise ValueError(f'slot range {text!r} is not a number or a range such as 0-1000') from None
        if not 0 <= start <= end < SLOT_COUNT:
            raise ValueError(f'slot range {text!r} is outside 0-{SLOT_COUNT - 1} or reversed')
        slots.extend(range(start, end + 1))
    return slots_to_ranges(slots)


def split_slots_evenly(count: int) -> List[SlotRange]:
    """16384 slots in `count` contiguous ranges whose sizes differ by at most one."""
    if count <= 0:
        return []
    base, extra = divmod(SLOT_COUNT, count)
    ranges: List[SlotRange] = []
    start = 0
    for index in range(count):
        size = base + (1 if index < extra else 0)
        ranges.append((start, start + size - 1))
        start += size
    return ranges


@dataclass
class ClusterNode:
    """One line of CLUSTER NODES, as one node sees it."""
    id: str
    host: str
    port: int
    cport: int
    hostname: str
    flags: Tuple[str, ...]
    master_id: Optional[str]
    ping_sent: int
    pong_recv: int
    config_epoch: int
    link_state: str
    slots: List[SlotRange] = field(default_factory=list)
    migrating: Dict[int, str] = field(default_factory=dict)
    importing: Dict[int, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f'[{self.host}]:{self.port}' if ':' in self.host else f'{self.host}:{self.port}'

    @property
    def is_master(self) -> bool:
        return 'master' in self.flags

    @property
    def is_replica(self) -> bool:
        return 'slave' in self.flags or 'replica' in self.flags

    @property
    def is_myself(self) -> bool:
        return 'myself' in self.flags

    @property
    def failed(self) -> bool:
        return 'fail' in self.flags

    @property
    def pfail(self) -> bool:
        return 'fail?' in self.flags

    @property
    def in_handshake(self) -> bool:
        return 'handshake' in self.flags or 'noaddr' in self.flags

    @property
    def slot_count(self) -> int:
        return sum(end - start + 1 for start, end in self.slots)

    @property
    def role(self) -> str:
        return 'replica' if self.is_replica else 'master'


def parse_cluster_nodes(text: str) -> List[ClusterNode]:
    nodes: List[ClusterNode] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        node_id, address, flags, master, ping_sent, pong_recv, epoch, link = fields[:8]
        endpoint, dummy, hostname = address.partition(',')
        hostport, dummy, cport_text = endpoint.partition('@')
        host, dummy, port_text = hostport.rpartition(':')
        node = ClusterNode(
            id=node_id,
            host=host.strip('[]'),
            port=int(port_text) if port_text.isdigit() else 0,
            cport=int(cport_text) if cport_text.isdigit() else 0,
            hostname=hostname,
            flags=tuple(flag for flag in flags.split(',') if flag and flag != 'noflags'),
            master_id=None if master == '-' else master,
            ping_sent=int(ping_sent),
            pong_recv=int(pong_recv),
            config_epoch=int(epoch),
            link_state=link,
        )
        owned: List[SlotRange] = []
        for item in fields[8:]:
            if item.startswith('['):
                body = item.strip('[]')
                if '->-' in body:
                    slot, dummy, peer = body.partition('->-')
                    node.migrating[int(slot)] = peer
                elif '-<-' in body:
                    slot, dummy, peer = body.partition('-<-')
                    node.importing[int(slot)] = peer
                continue
            start, dash, end = item.partition('-')
            owned.append((int(start), int(end if dash else start)))
        node.slots = merge_ranges(owned)
        nodes.append(node)
    return nodes


_NOT_MEMBER_FLAGS = frozenset(('handshake', 'noaddr'))


def member_ids(text: str) -> Set[str]:
    """Ids of the nodes a CLUSTER NODES text lists as members (handshake done, address known), read from the first
    three fields only: waiting for a large cluster to meet polls every node's view, and needs no more than this."""
    ids: Set[str] = set()
    for line in text.splitlines():
        fields = line.split(None, 3)
        if len(fields) >= 3 and not _NOT_MEMBER_FLAGS.intersection(fields[2].split(',')):
            ids.add(fields[0])
    return ids


@dataclass
class ClusterView:
    """The whole cluster as one node (`myself`) sees it."""
    observer: str
    nodes: Dict[str, ClusterNode]

    @classmethod
    def parse(cls, observer: str, text: str) -> 'ClusterView':
        nodes = {node.id: node for node in parse_cluster_nodes(text)}
        return cls(observer=observer, nodes=nodes)

    @property
    def myself(self) -> ClusterNode:
        for node in self.nodes.values():
            if node.is_myself:
                return node
        raise ValueError(f'{self.observer}: CLUSTER NODES has no line flagged myself')

    def members(self) -> List[ClusterNode]:
        """Known nodes that completed the handshake."""
        return [node for node in self.nodes.values() if not node.in_handshake]

    def masters(self) -> List[ClusterNode]:
        return [node for node in self.members() if node.is_master]

    def replicas_of(self, master_id: str) -> List[ClusterNode]:
        return [node for node in self.members() if node.is_replica and node.master_id == master_id]

    def slot_owners(self) -> List[Optional[str]]:
        owners: List[Optional[str]] = [None] * SLOT_COUNT
        for node in self.nodes.values():
            for start, end in node.slots:
                for slot in range(start, end + 1):
                    owners[slot] = node.id
        return owners

    def uncovered_slots(self) -> List[int]:
        return [slot for slot, owner in enumerate(self.slot_owners()) if owner is None]

    def by_address(self, host: str, port: int) -> Optional[ClusterNode]:
        for node in self.members():
            if node.host == host and node.port == port:
                return node
        return None

    def fingerprint(self) -> Tuple:
        """What every node must agree on: who owns which slots, and who replicates whom."""
        return (
            tuple(sorted((node.id, tuple(node.slots)) for node in self.members() if node.slots)),
            tuple(sorted((node.id, node.master_id or '') for node in self.members() if node.is_replica)),
            tuple(sorted(node.id for node in self.members())),
        )


def render_layout(entries: Sequence[Dict]) -> str:
    """Text for diff mode, one line a node: 'host:port master 0-5460 zone=a'."""
    lines = []
    for entry in sorted(entries, key=lambda item: (item.get('master_address') or item['address'], item['role'] != 'master', item['address'])):
        parts = [entry['address'], entry['role']]
        if entry['role'] == 'master':
            parts.append(','.join(format_ranges(entry.get('slots') or [])) or 'no-slots')
        else:
            parts.append(f"of {entry.get('master_address') or entry.get('master_id') or '?'}")
        if entry.get('zone'):
            parts.append(f"zone={entry['zone']}")
        lines.append(' '.join(parts))
    return '\n'.join(lines) + ('\n' if lines else '')
