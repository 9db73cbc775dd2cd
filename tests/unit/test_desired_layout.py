# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""plan_target (redis_cluster's planner): the same description gives the same layout from every state a run can stop in, and the zone rules
hold (checked against an independent brute force)."""

from __future__ import annotations

import itertools
from typing import Dict, Sequence, Tuple

from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.hashslot.redis.plugins.module_utils.cluster_desired import (
    Member, Target, WantedNode, plan_target, spread_score,
)
from ansible_collections.hashslot.redis.plugins.module_utils.placement import NodeSpec, plan_layout
from ansible_collections.hashslot.redis.plugins.module_utils.topology import SLOT_COUNT, split_slots_evenly

HOSTS = ('10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5')
ZONES = ('a', 'b', 'c')
PROPERTY_SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def formed(specs: Sequence[NodeSpec], replicas: int) -> Dict[str, Member]:
    """A cluster formed from `specs` as create would form it."""
    layout = plan_layout(specs, replicas)
    members = {}
    for spec in specs:
        if spec.address in layout.masters:
            members[spec.address] = Member(spec.address, spec.host, spec.port, slots=tuple(layout.slots[spec.address]), zone=spec.zone)
        else:
            members[spec.address] = Member(spec.address, spec.host, spec.port, master=layout.replicas[spec.address], zone=spec.zone)
    return members


def layout_of(target: Target) -> Tuple:
    return (tuple(sorted(target.masters)), tuple(sorted(target.replicas.items())))


def joined(members: Dict[str, Member], specs: Dict[str, NodeSpec], addresses: Sequence[str]) -> Dict[str, Member]:
    """The nodes `addresses` met the cluster: empty masters."""
    after = dict(members)
    for address in addresses:
        spec = specs[address]
        after[address] = Member(address, spec.host, spec.port, zone=spec.zone)
    return after


def replicated(members: Dict[str, Member], pairs: Sequence[Tuple[str, str]]) -> Dict[str, Member]:
    after = dict(members)
    for replica, master in pairs:
        current = after[replica]
        after[replica] = Member(current.address, current.host, current.port, master=master, zone=current.zone)
    return after


def with_slots(members: Dict[str, Member], masters: Sequence[str]) -> Dict[str, Member]:
    """Each of `masters` got a few slots taken from the others (a rebalance cut short)."""
    after = dict(members)
    donors = [address for address, member in members.items() if member.slots]
    for index, address in enumerate(masters):
        donor = after[donors[index % len(donors)]]
        start, end = donor.slots[0]
        moved = (end - 9, end)
        after[donor.address] = Member(donor.address, donor.host, donor.port, slots=((start, end - 10),) + donor.slots[1:], zone=donor.zone)
        current = after[address]
        after[address] = Member(current.address, current.host, current.port, slots=current.slots + (moved,), zone=current.zone)
    return after


@st.composite
def growth(draw):
    """A formed cluster and a description that adds nodes to it."""
    replicas = draw(st.sampled_from([1, 1, 2]))
    start_count = draw(st.integers(min_value=3, max_value=4)) * (replicas + 1)
    added = draw(st.integers(min_value=1, max_value=7))
    zoned = draw(st.booleans())
    specs = []
    for index in range(start_count + added):
        host = draw(st.sampled_from(HOSTS))
        zone = draw(st.sampled_from(ZONES)) if zoned else None
        specs.append(NodeSpec(host, 7000 + index, zone))
    return replicas, specs[:start_count], specs


@PROPERTY_SETTINGS
@given(growth(), st.data())
def test_every_stop_of_a_scale_out_plans_the_same_layout(case, data):
    replicas, start, specs = case
    by_address = {spec.address: spec for spec in specs}
    wanted = [WantedNode(spec) for spec in specs]
    members = formed(start, replicas)
    whole = plan_target(wanted, replicas, members)
    expected = layout_of(whole)
    new_masters = [address for address in whole.masters if address not in members]
    states = {
        'first master joined': joined(members, by_address, new_masters[:1]),
        'masters joined': joined(members, by_address, new_masters),
        'all joined': joined(members, by_address, whole.joins),
    }
    pairs = data.draw(st.lists(st.sampled_from(whole.replicate), unique=True)) if whole.replicate else []
    states['some replicas'] = replicated(states['all joined'], pairs)
    states['mid-rebalance'] = with_slots(states['some replicas'], new_masters[:data.draw(st.integers(0, len(new_masters)))])
    for name, state in states.items():
        again = plan_target(wanted, replicas, state)
        assert layout_of(again) == expected, name
        assert again.problems == whole.problems


@PROPERTY_SETTINGS
@given(growth(), st.data())
def test_every_stop_of_a_scale_in_plans_the_same_layout(case, data):
    replicas, dummy, specs = case
    members = formed(specs, replicas)
    masters = [address for address, member in members.items() if member.slots]
    leaving = data.draw(st.lists(st.sampled_from(sorted(members)), unique=True, max_size=max(0, len(members) - 3 * (replicas + 1))))
    wanted = [WantedNode(spec) for spec in specs if spec.address not in leaving]
    whole = plan_target(wanted, replicas, members, leaving)
    expected = layout_of(whole)
    assert not set(leaving) & set(whole.masters) and not set(leaving) & set(whole.replicas)
    states = {}
    # Mid-drain: the leaving masters gave some slots away (the same helper moves slots the other way round).
    drained = dict(members)
    for address in leaving:
        if address in masters:
            member = drained[address]
            start, end = member.slots[0]
            drained[address] = Member(member.address, member.host, member.port, slots=((start, max(start, end - 100)),), zone=member.zone)
    states['mid-drain'] = drained
    pairs = data.draw(st.lists(st.sampled_from(whole.rehome + whole.replicate), unique=True)) if whole.rehome + whole.replicate else []
    states['some re-homed'] = replicated(drained, pairs)
    for name, state in states.items():
        again = plan_target(wanted, replicas, state, leaving)
        assert layout_of(again) == expected, name


def best_spread(masters: Sequence[str], free: Sequence[str], by_address: Dict[str, NodeSpec], wanted: int) -> int:
    """The oracle: every way of placing the nodes, the best spread_score among those that fill every master."""
    best = 0
    for choice in itertools.product(masters, repeat=len(free)):
        replicas = dict(zip(free, choice))
        counts = [sum(1 for owner in replicas.values() if owner == master) for master in masters]
        if len(free) >= wanted * len(masters) and min(counts) < wanted:
            continue
        best = max(best, spread_score(masters, replicas, by_address, wanted))
    return best


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=3), st.lists(st.tuples(st.sampled_from(HOSTS[:3]), st.sampled_from(ZONES)), min_size=6, max_size=8),
       st.sampled_from([1, 2]))
def test_the_layout_spreads_replicas_as_well_as_any_and_fills_every_master(extra_dummy, nodes, replicas):
    specs = [NodeSpec(host, 7000 + index, zone) for index, (host, zone) in enumerate(nodes)]
    if len(specs) // (replicas + 1) < 3:
        return
    members = formed(specs[:3 * (replicas + 1)], replicas)
    target = plan_target([WantedNode(spec) for spec in specs], replicas, members)
    by_address = {spec.address: spec for spec in specs}
    free = [address for address in by_address if address not in target.masters]
    if len(free) <= 5:
        assert spread_score(target.masters, target.replicas, by_address, replicas) == best_spread(target.masters, free, by_address, replicas)
    counts = [len(target.replicas_of(master)) for master in target.masters]
    if len(specs) >= len(target.masters) * (replicas + 1):
        assert min(counts) >= replicas


def test_new_nodes_make_whole_shards_and_join_masters_first():
    specs = [NodeSpec('10.0.0.1', 7000 + index, 'abc'[index % 3]) for index in range(8)]
    members = formed(specs[:6], 1)
    target = plan_target([WantedNode(spec) for spec in specs], 1, members)
    assert len(target.masters) == 4
    new_master = next(address for address in target.masters if address not in members)
    assert target.joins[0] == new_master and len(target.joins) == 2
    assert target.replicate == [(target.joins[1], new_master)]
    assert target.specs[target.joins[1]].zone != target.specs[new_master].zone


def test_role_hints_and_join_role():
    specs = [NodeSpec('10.0.0.1', 7000 + index) for index in range(8)]
    members = formed(specs[:6], 1)
    hinted = [WantedNode(spec, role='replica' if spec.port == 7006 else None) for spec in specs]
    target = plan_target(hinted, 1, members)
    assert '10.0.0.1:7007' in target.masters and '10.0.0.1:7006' in target.replicas
    everyone_replica = plan_target([WantedNode(spec) for spec in specs], 1, members, join_role='replica')
    assert len(everyone_replica.masters) == 3 and not everyone_replica.joins[:0]
    assert {'10.0.0.1:7006', '10.0.0.1:7007'} <= set(everyone_replica.replicas)


def test_scale_in_refuses_fewer_than_three_masters_and_bare_masters():
    specs = [NodeSpec('10.0.0.1', 7000 + index) for index in range(6)]
    members = formed(specs, 1)
    master = next(address for address, member in members.items() if member.slots)
    target = plan_target([WantedNode(spec) for spec in specs if spec.address != master], 1, members, [master])
    assert any('at least 3' in problem for problem in target.problems)
    replica = next(address for address, member in members.items() if member.master)
    bare = plan_target([WantedNode(spec) for spec in specs if spec.address != replica], 1, members, [replica])
    assert any('without a replica' in problem for problem in bare.problems)
    assert bare.weights == {}


def test_leaving_masters_drain_and_their_replicas_rehome():
    specs = [NodeSpec('10.0.0.1', 7000 + index, 'abcd'[index % 4]) for index in range(8)]
    members = formed(specs, 1)
    master = next(address for address, member in members.items() if member.slots)
    own_replica = next(address for address, member in members.items() if member.master == master)
    target = plan_target([WantedNode(spec) for spec in specs if spec.address != master], 1, members, [master])
    assert target.weights == {master: 0.0} and target.leaving == [master]
    assert [pair[0] for pair in target.rehome] == [own_replica]
    assert sum(1 for owner in target.replicas.values() if owner == target.rehome[0][1]) == 2
    assert sum(end - start + 1 for start, end in split_slots_evenly(4)) == SLOT_COUNT
    # A master and its replica leaving together: the replica goes first (a master is forgotten once none follows it),
    # whatever their addresses' order.
    for leaving in ([master, own_replica], [own_replica, master]):
        both = plan_target([WantedNode(spec) for spec in specs if spec.address not in leaving], 1, members, leaving)
        assert both.leaving == [own_replica, master] and both.rehome == []


def test_a_master_described_with_weight_zero_gives_its_slots_away_and_becomes_a_replica():
    specs = [NodeSpec('10.0.0.1', 7000 + index, 'abcd'[index % 4]) for index in range(8)]
    members = formed(specs, 1)
    master = next(address for address, member in members.items() if member.slots)
    wanted = [WantedNode(spec, weight=0 if spec.address == master else None) for spec in specs]
    target = plan_target(wanted, 1, members)
    assert master not in target.masters and len(target.masters) == 3
    assert target.weights == {master: 0.0}
    own_replica = next(address for address, member in members.items() if member.master == master)
    assert {pair[0] for pair in target.rehome} == {master, own_replica} and not target.replicate
    # Mid-drain (some of its slots gone) the plan is the same.
    member = members[master]
    start, end = member.slots[0]
    drained = dict(members, **{master: Member(member.address, member.host, member.port, slots=((start, start + 10),), zone=member.zone)})
    assert layout_of(plan_target(wanted, 1, drained)) == layout_of(target)
