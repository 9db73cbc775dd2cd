# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CLUSTER NODES parsing, the ClusterView helpers and slot range arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.hashslot.redis.plugins.module_utils.topology import (
    SLOT_COUNT, ClusterView, format_ranges, member_ids, merge_ranges, parse_cluster_nodes, parse_slot_ranges, ranges_to_slots, render_layout, slots_to_ranges,
    split_slots_evenly,
)

ID_A = 'e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca'
ID_B = '67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1'
ID_C = '292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f'
ID_D = '6ec23923021cf3ffec47632106199cb7f496ce01'
ID_E = '824fe116063bc5fcf9f4ffd895bc17aee7731ac3'
ID_F = '07c37dfeb235213a872192d90877d0cd55635b91'
ID_HANDSHAKE = '950dd844d7318ab6a7ea67aff26baf3be5e52e5f'
ID_NOADDR = 'c686c84df10c10e69da67ce6dd433948ac98668e'

# Shaped after real Redis 7.0 / 8.0 output (cluster-announce-hostname set): A is migrating slot
# 5460 to B, so only A's line carries the [slot->-id] marker and only B's the [slot-<-id] one.
# The lines are not in id order, as Redis prints them in dict order.
VIEW_FROM_A = f"""\
{ID_D} 10.0.0.4:7000@17000,redis-d.example slave {ID_A} 0 1795318379626 1 connected
{ID_B} 10.0.0.2:7000@17000,redis-b.example master - 0 1795318378623 2 connected 5461-10922
{ID_A} 10.0.0.1:7000@17000,redis-a.example myself,master - 0 1795318377000 1 connected 0-5460 [5460->-{ID_B}]
{ID_C} 10.0.0.3:7000@17000,redis-c.example master - 0 1795318377620 3 connected 10923-16383
{ID_E} 10.0.0.5:7000@17000,redis-e.example slave {ID_B} 0 1795318378100 2 connected
{ID_F} 10.0.0.6:7000@17000,redis-f.example slave {ID_C} 0 1795318379000 3 connected
"""

VIEW_FROM_B = f"""\
{ID_A} 10.0.0.1:7000@17000,redis-a.example master - 0 1795318380620 1 connected 0-5460
{ID_B} 10.0.0.2:7000@17000,redis-b.example myself,master - 0 1795318379000 2 connected 5461-10922 [5460-<-{ID_A}]
{ID_C} 10.0.0.3:7000@17000,redis-c.example master - 0 1795318381624 3 connected 10923-16383
{ID_D} 10.0.0.4:7000@17000,redis-d.example slave {ID_A} 0 1795318380111 1 connected
{ID_F} 10.0.0.6:7000@17000,redis-f.example slave {ID_C} 1795318381000 1795318380000 3 connected
{ID_E} 10.0.0.5:7000@17000,redis-e.example slave {ID_B} 0 1795318381623 2 connected
"""

# A troubled cluster as one replica sees it: C is failed, B only suspected (fail?), a MEET in
# progress, a node whose address was dropped (Redis prints it as :0@0), no hostnames, and a
# master that owns a single slot next to ranges.
TROUBLED_VIEW = f"""\
{ID_A} 10.0.0.1:7000@17000 master - 0 1795318377620 1 connected 0-5459 5461 5463-5470
{ID_B} 10.0.0.2:7000@17000 master,fail? - 1795318378000 1795318376000 2 disconnected 5471-10922
{ID_C} 10.0.0.3:7000@17000 master,fail - 1795318388666 1795318386000 3 disconnected 10923-16383
{ID_D} 10.0.0.4:7000@17000 myself,slave {ID_A} 0 0 1 connected
{ID_HANDSHAKE} 10.0.0.9:7000@17000 handshake - 0 0 0 disconnected
{ID_NOADDR} :0@0 master,noaddr - 1795318376000 1795318375000 0 disconnected
"""

# Redis prints IPv6 addresses without brackets; the port is what follows the last colon.
IPV6_VIEW = f"""\
{ID_A} ::1:7000@17000 myself,master - 0 0 1 connected 0-8191
{ID_B} 2001:db8::7:7001@17001,redis-b.example master - 0 1795318412399 2 connected 8192-16383
"""

# A node that was just started and never met anyone does not know its own IP yet.
FRESH_NODE = f'{ID_A} :7000@17000 myself,master - 0 0 0 connected\n'


def nodes_by_id(text: str):
    return {node.id: node for node in parse_cluster_nodes(text)}


def test_parse_reads_every_column_of_a_master_line():
    node = nodes_by_id(VIEW_FROM_A)[ID_A]
    assert (node.host, node.port, node.cport, node.hostname) == ('10.0.0.1', 7000, 17000, 'redis-a.example')
    assert node.address == '10.0.0.1:7000'
    assert node.flags == ('myself', 'master')
    assert node.is_myself and node.is_master and not node.is_replica
    assert node.role == 'master'
    assert node.master_id is None
    assert (node.ping_sent, node.pong_recv, node.config_epoch, node.link_state) == (0, 1795318377000, 1, 'connected')
    assert node.slots == [(0, 5460)]
    assert node.slot_count == 5461


def test_parse_reads_replica_and_its_master_id():
    node = nodes_by_id(VIEW_FROM_A)[ID_D]
    assert node.is_replica and not node.is_master and not node.is_myself
    assert node.role == 'replica'
    assert node.master_id == ID_A
    assert node.slots == []
    assert node.slot_count == 0


def test_parse_keeps_migrating_and_importing_markers_out_of_owned_slots():
    migrating_side = nodes_by_id(VIEW_FROM_A)[ID_A]
    assert migrating_side.migrating == {5460: ID_B}
    assert migrating_side.importing == {}
    assert migrating_side.slots == [(0, 5460)]
    importing_side = nodes_by_id(VIEW_FROM_B)[ID_B]
    assert importing_side.importing == {5460: ID_A}
    assert importing_side.migrating == {}
    assert importing_side.slots == [(5461, 10922)]


def test_parse_single_slots_between_ranges():
    node = nodes_by_id(TROUBLED_VIEW)[ID_A]
    assert node.slots == [(0, 5459), (5461, 5461), (5463, 5470)]
    assert node.slot_count == 5460 + 1 + 8
    assert format_ranges(node.slots) == ['0-5459', '5461', '5463-5470']


def test_parse_failure_flags():
    nodes = nodes_by_id(TROUBLED_VIEW)
    suspected, failed = nodes[ID_B], nodes[ID_C]
    assert suspected.pfail and not suspected.failed
    assert failed.failed and not failed.pfail
    assert (suspected.link_state, failed.link_state) == ('disconnected', 'disconnected')
    # A failed master still owns its slots until a replica takes over.
    assert failed.slots == [(10923, 16383)]
    assert not nodes[ID_A].failed and not nodes[ID_A].pfail


def test_parse_handshake_and_noaddr_nodes_are_not_members():
    nodes = nodes_by_id(TROUBLED_VIEW)
    handshaking, addressless = nodes[ID_HANDSHAKE], nodes[ID_NOADDR]
    assert handshaking.flags == ('handshake',) and handshaking.in_handshake
    assert addressless.in_handshake
    assert (addressless.host, addressless.port, addressless.cport) == ('', 0, 0)
    view = ClusterView.parse('10.0.0.4:7000', TROUBLED_VIEW)
    member_ids = {node.id for node in view.members()}
    assert member_ids == {ID_A, ID_B, ID_C, ID_D}
    assert ID_NOADDR not in {node.id for node in view.masters()}


def test_parse_without_hostname_leaves_it_empty():
    node = nodes_by_id(TROUBLED_VIEW)[ID_C]
    assert node.hostname == ''
    assert (node.host, node.port, node.cport) == ('10.0.0.3', 7000, 17000)


def test_parse_ipv6_addresses():
    nodes = nodes_by_id(IPV6_VIEW)
    loopback, documentation = nodes[ID_A], nodes[ID_B]
    assert (loopback.host, loopback.port, loopback.cport) == ('::1', 7000, 17000)
    assert loopback.address == '[::1]:7000'
    assert (documentation.host, documentation.port, documentation.hostname) == ('2001:db8::7', 7001, 'redis-b.example')
    assert documentation.address == '[2001:db8::7]:7001'
    view = ClusterView.parse('[::1]:7000', IPV6_VIEW)
    assert view.by_address('2001:db8::7', 7001).id == ID_B


def test_parse_fresh_node_without_ip():
    node = nodes_by_id(FRESH_NODE)[ID_A]
    assert (node.host, node.port, node.cport) == ('', 7000, 17000)
    assert node.is_myself and node.is_master and node.config_epoch == 0 and node.slots == []


def test_parse_skips_blank_and_truncated_lines():
    text = '\n' + VIEW_FROM_A + '\n   \nnot a node line\n'
    assert len(parse_cluster_nodes(text)) == 6
    assert parse_cluster_nodes('') == []


def test_view_myself():
    assert ClusterView.parse('10.0.0.1:7000', VIEW_FROM_A).myself.id == ID_A
    assert ClusterView.parse('10.0.0.2:7000', VIEW_FROM_B).myself.id == ID_B


def test_view_without_myself_line_names_the_observer():
    text = ''.join(line + '\n' for line in VIEW_FROM_A.splitlines() if 'myself' not in line)
    view = ClusterView.parse('10.0.0.1:7000', text)
    with pytest.raises(ValueError, match='10.0.0.1:7000'):
        view.myself  # the property raises


def test_view_masters_and_replicas_of():
    view = ClusterView.parse('10.0.0.1:7000', VIEW_FROM_A)
    assert sorted(node.id for node in view.masters()) == sorted([ID_A, ID_B, ID_C])
    assert [node.id for node in view.replicas_of(ID_A)] == [ID_D]
    assert [node.id for node in view.replicas_of(ID_B)] == [ID_E]
    assert [node.id for node in view.replicas_of(ID_D)] == []


def test_view_slot_owners_and_uncovered_slots():
    view = ClusterView.parse('10.0.0.1:7000', VIEW_FROM_A)
    owners = view.slot_owners()
    assert len(owners) == SLOT_COUNT
    assert (owners[0], owners[5460], owners[5461], owners[10922], owners[10923], owners[16383]) == (ID_A, ID_A, ID_B, ID_B, ID_C, ID_C)
    assert view.uncovered_slots() == []
    troubled = ClusterView.parse('10.0.0.4:7000', TROUBLED_VIEW)
    assert troubled.uncovered_slots() == [5460, 5462]
    assert ClusterView.parse('127.0.0.1:7000', FRESH_NODE).uncovered_slots() == list(range(SLOT_COUNT))


def test_view_by_address():
    view = ClusterView.parse('10.0.0.1:7000', VIEW_FROM_A)
    assert view.by_address('10.0.0.5', 7000).id == ID_E
    assert view.by_address('10.0.0.5', 7001) is None
    # Hostnames are for clients; nodes are addressed by IP.
    assert view.by_address('redis-e.example', 7000) is None
    troubled = ClusterView.parse('10.0.0.4:7000', TROUBLED_VIEW)
    assert troubled.by_address('10.0.0.9', 7000) is None


def test_fingerprint_is_the_same_from_two_nodes_of_one_cluster():
    seen_by_a = ClusterView.parse('10.0.0.1:7000', VIEW_FROM_A)
    seen_by_b = ClusterView.parse('10.0.0.2:7000', VIEW_FROM_B)
    assert seen_by_a.fingerprint() == seen_by_b.fingerprint()


def test_fingerprint_differs_when_slots_or_roles_differ():
    reference = ClusterView.parse('10.0.0.1:7000', VIEW_FROM_A).fingerprint()
    moved_slot = VIEW_FROM_B.replace('connected 0-5460', 'connected 0-5459').replace('connected 5461-10922', 'connected 5460-10922')
    assert ClusterView.parse('10.0.0.2:7000', moved_slot).fingerprint() != reference
    replica_moved = VIEW_FROM_B.replace(f'slave {ID_A}', f'slave {ID_C}')
    assert ClusterView.parse('10.0.0.2:7000', replica_moved).fingerprint() != reference
    # A node still in handshake on one side is not yet a member, so the views must not agree.
    with_stranger = VIEW_FROM_B + f'{ID_HANDSHAKE} 10.0.0.9:7000@17000 master - 0 0 0 connected\n'
    assert ClusterView.parse('10.0.0.2:7000', with_stranger).fingerprint() != reference


def test_fingerprint_ignores_a_node_still_in_handshake():
    reference = ClusterView.parse('10.0.0.1:7000', VIEW_FROM_A).fingerprint()
    with_handshake = VIEW_FROM_B + f'{ID_HANDSHAKE} 10.0.0.9:7000@17000 handshake - 0 0 0 disconnected\n'
    assert ClusterView.parse('10.0.0.2:7000', with_handshake).fingerprint() == reference


def test_member_ids_are_the_parsed_views_members():
    with_handshake = VIEW_FROM_B + f'{ID_HANDSHAKE} 10.0.0.9:7000@17000 handshake - 0 0 0 disconnected\n'
    for text in (VIEW_FROM_A, with_handshake):
        assert member_ids(text) == {node.id for node in ClusterView.parse('10.0.0.1:7000', text).members()}
    assert ID_HANDSHAKE not in member_ids(with_handshake)


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(0, SLOT_COUNT - 1), max_size=400))
def test_slots_to_ranges_round_trip(slots):
    ranges = slots_to_ranges(slots)
    assert ranges_to_slots(ranges) == sorted(slots)
    # Ranges are sorted, non-empty, and neither overlap nor touch (touching ones must be merged).
    for start, end in ranges:
        assert start <= end
    for previous, following in zip(ranges, ranges[1:]):
        assert previous[1] + 1 < following[0]
    assert parse_slot_ranges(format_ranges(ranges)) == ranges


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, SLOT_COUNT - 1), st.integers(0, 50)), max_size=20))
def test_slots_to_ranges_merges_overlapping_ranges(starts_and_lengths):
    ranges = [(start, min(start + length, SLOT_COUNT - 1)) for start, length in starts_and_lengths]
    expected = sorted(set(ranges_to_slots(ranges)))
    assert ranges_to_slots(slots_to_ranges(ranges_to_slots(ranges))) == expected
    assert slots_to_ranges([]) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, SLOT_COUNT - 1), st.integers(0, 50)), max_size=20))
def test_merge_ranges_gives_what_listing_every_slot_gives(starts_and_lengths):
    ranges = [(start, min(start + length, SLOT_COUNT - 1)) for start, length in starts_and_lengths]
    assert merge_ranges(ranges) == slots_to_ranges(ranges_to_slots(ranges))


def test_parse_slot_ranges_accepts_ranges_single_slots_and_overlaps():
    assert parse_slot_ranges(['0-1000', '5461', ' 16383 ']) == [(0, 1000), (5461, 5461), (16383, 16383)]
    assert parse_slot_ranges(['10-20', '15-30', '31']) == [(10, 31)]
    assert parse_slot_ranges([]) == []
    assert parse_slot_ranges([42]) == [(42, 42)]


@pytest.mark.parametrize('bad_item', ['abc', '5-', '-5', '1-2-3', '0x10', '', '1.5'])
def test_parse_slot_ranges_names_an_item_that_is_not_a_number(bad_item):
    with pytest.raises(ValueError, match='not a number') as raised:
        parse_slot_ranges(['0-10', bad_item])
    assert repr(bad_item) in str(raised.value)


@pytest.mark.parametrize('bad_item', ['16384', '0-16384', '100-50'])
def test_parse_slot_ranges_names_an_item_out_of_range_or_reversed(bad_item):
    with pytest.raises(ValueError, match='outside 0-16383 or reversed') as raised:
        parse_slot_ranges(['0-10', bad_item])
    assert repr(bad_item) in str(raised.value)


def test_split_slots_evenly_for_1_to_500_masters():
    for count in range(1, 501):
        ranges = split_slots_evenly(count)
        assert len(ranges) == count
        # Contiguous ranges from 0 that end at 16383 cover every slot exactly once.
        assert ranges[0][0] == 0
        assert ranges[-1][1] == SLOT_COUNT - 1
        for previous, following in zip(ranges, ranges[1:]):
            assert following[0] == previous[1] + 1
        sizes = [end - start + 1 for start, end in ranges]
        assert min(sizes) >= 1
        assert max(sizes) - min(sizes) <= 1, f'{count} masters: sizes {min(sizes)}..{max(sizes)}'


def test_split_slots_evenly_three_masters():
    # The first ranges take the remainder, so the first master gets one slot more than redis-cli gives it.
    assert split_slots_evenly(3) == [(0, 5461), (5462, 10922), (10923, 16383)]


def test_split_slots_evenly_without_masters():
    assert split_slots_evenly(0) == []
    assert split_slots_evenly(-1) == []


def test_render_layout_groups_replicas_under_their_master():
    entries = [
        dict(address='10.0.0.4:7000', role='replica', master_address='10.0.0.1:7000', zone='b'),
        dict(address='10.0.0.2:7000', role='master', slots=[(5462, 10922)], zone='b'),
        dict(address='10.0.0.1:7000', role='master', slots=[(0, 5461)], zone='a'),
        dict(address='10.0.0.3:7000', role='master', slots=[(10923, 16383), (100, 100)]),
        dict(address='10.0.0.5:7000', role='replica', master_address='10.0.0.2:7000', zone='c'),
        dict(address='10.0.0.6:7000', role='replica', master_id=ID_C),
        dict(address='10.0.0.7:7000', role='master', slots=[]),
    ]
    assert render_layout(entries) == (
        '10.0.0.1:7000 master 0-5461 zone=a\n'
        '10.0.0.4:7000 replica of 10.0.0.1:7000 zone=b\n'
        '10.0.0.2:7000 master 5462-10922 zone=b\n'
        '10.0.0.5:7000 replica of 10.0.0.2:7000 zone=c\n'
        '10.0.0.3:7000 master 10923-16383,100\n'
        # A replica whose master is not among the entries is shown with the id it follows.
        f'10.0.0.6:7000 replica of {ID_C}\n'
        '10.0.0.7:7000 master no-slots\n'
    )


def test_render_layout_of_nothing_is_empty():
    assert render_layout([]) == ''


def test_render_layout_does_not_depend_on_entry_order():
    entries = [
        dict(address='10.0.0.1:7000', role='master', slots=[(0, 16383)]),
        dict(address='10.0.0.2:7000', role='replica', master_address='10.0.0.1:7000'),
        dict(address='10.0.0.3:7000', role='replica', master_address='10.0.0.1:7000'),
    ]
    assert render_layout(entries) == render_layout(list(reversed(entries)))
