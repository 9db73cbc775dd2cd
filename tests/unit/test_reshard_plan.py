# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""reshard_plan: slot counts by weight, the threshold, and the moves of rebalance, move and drain, on known cases and random ownership."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Dict, List, Optional, Sequence, Tuple

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from ansible_collections.hashslot.redis.plugins.module_utils.reshard_plan import (
    SlotMove, describe_moves, merge_moves, plan_drain, plan_move, plan_moves, plan_rebalance, target_counts, within_threshold,
)
from ansible_collections.hashslot.redis.plugins.module_utils.topology import SLOT_COUNT

# Node ids shaped like Redis's (40 hex digits); their sorted order differs from their index order,
# so a plan that confused the two would show.
NODE_IDS = tuple(hashlib.sha1(f'master-{index}'.encode()).hexdigest() for index in range(8))
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------
# Reading and applying plans

def owned_by_master(masters: Sequence[str], owners: Sequence[Optional[str]]) -> Dict[str, List[int]]:
    """master -> its slots, every master listed even when it owns none (as cluster_reshard builds it)."""
    owned: Dict[str, List[int]] = {master: [] for master in masters}
    for slot, owner in enumerate(owners):
        if owner is not None:
            owned[owner].append(slot)
    return owned


def counts_of(owned: Dict[str, List[int]]) -> Dict[str, int]:
    return {master: len(slots) for master, slots in owned.items()}


def apply_moves(owners: Sequence[Optional[str]], moves: Sequence[SlotMove]) -> List[Optional[str]]:
    """Slot owners after the moves, asserting that each move takes slots its source owned before and that no slot moves twice."""
    after = list(owners)
    moved = Counter(slot for move in moves for slot in move.slots)
    twice = sorted(slot for slot, times in moved.items() if times > 1)
    assert not twice, f'slots moved more than once: {twice[:10]}'
    for move in moves:
        assert move.source != move.target, move
        assert move.slots, f'empty move {move}'
        assert list(move.slots) == sorted(set(move.slots)), f'slots of a move not sorted and unique: {move}'
        not_owned = [slot for slot in move.slots if owners[slot] != move.source]
        assert not not_owned, f'{move.source} does not own {not_owned[:10]} that it should give to {move.target}'
        for slot in move.slots:
            after[slot] = move.target
    return after


def assert_sources_only_give(moves: Sequence[SlotMove]) -> None:
    sources = {move.source for move in moves}
    targets = {move.target for move in moves}
    assert not sources & targets, f'masters that both give and take: {sources & targets}'


def exact_shares(weights: Dict[str, float], total: int) -> Dict[str, Fraction]:
    """Each master's share of `total` by weight, as an exact fraction of the weights as given."""
    weight_sum = sum(Fraction(weight) for weight in weights.values())
    return {node: Fraction(total) * Fraction(weight) / weight_sum for node, weight in weights.items()}


# ---------------------------------------------------------------------------------------------
# Random inputs

# Weights as operators write them (whole numbers, halves) and arbitrary floats.
WEIGHT_VALUES = st.one_of(st.sampled_from((0.0, 0.5, 1.0, 1.0, 1.0, 2.0, 3.0)), st.floats(min_value=0.0, max_value=100.0, allow_subnormal=False))


@st.composite
def weight_maps(draw, masters: Sequence[str]) -> Dict[str, float]:
    """A weight for every master, at least one above 0."""
    weights = {master: draw(WEIGHT_VALUES, label=f'weight of {master[:6]}') for master in masters}
    if not any(weights.values()):
        weights[draw(st.sampled_from(list(masters)), label='master given weight 1')] = 1.0
    return weights


@dataclass(frozen=True)
class SlotOwnership:
    """The masters, and who owns each slot as runs of (owner, slot count): a failing example prints as runs, not as 16384 owners."""
    masters: Tuple[str, ...]
    runs: Tuple[Tuple[Optional[str], int], ...]

    @property
    def owners(self) -> List[Optional[str]]:
        return [owner for owner, length in self.runs for dummy in range(length)]


@st.composite
def slot_ownerships(draw, min_masters: int = 1, max_masters: int = 6, allow_uncovered: bool = False) -> SlotOwnership:
    """Every slot owned by a master (or by no one when allowed), in runs of random length.

    Some masters may own nothing, as a master just added does; runs interleave, as after earlier moves.
    """
    master_count = draw(st.integers(min_masters, max_masters), label='masters')
    masters = NODE_IDS[:master_count]
    layout = draw(st.sampled_from(('even', 'runs')), label='layout')
    if layout == 'even':
        # Contiguous and balanced, as redis_cluster_create leaves a cluster; the last masters may be new and empty.
        owning = masters[:draw(st.integers(1, master_count), label='masters owning slots')]
        counts = target_counts({master: 1.0 for master in owning})
        return SlotOwnership(masters, tuple((master, counts[master]) for master in owning))
    cuts = sorted(set(draw(st.lists(st.integers(1, SLOT_COUNT - 1), max_size=24), label='run boundaries')))
    bounds = [0] + cuts + [SLOT_COUNT]
    candidates: List[Optional[str]] = list(masters) + ([None] if allow_uncovered else [])
    return SlotOwnership(masters, tuple((draw(st.sampled_from(candidates)), end - start) for start, end in zip(bounds, bounds[1:])))


# ---------------------------------------------------------------------------------------------
# target_counts

def test_equal_weights_split_the_remainder_by_node_id():
    masters = ['c', 'a', 'b']
    counts = target_counts({master: 1.0 for master in masters})
    # 16384 = 3 * 5461 + 1: the one spare slot goes to the lowest id, whatever the dict order.
    assert counts == {'a': 5462, 'b': 5461, 'c': 5461}


def test_weights_two_to_one_to_one():
    assert target_counts({'a': 2.0, 'b': 1.0, 'c': 1.0}) == {'a': 8192, 'b': 4096, 'c': 4096}


def test_zero_weight_gets_no_slots():
    assert target_counts({'a': 1.0, 'b': 0.0, 'c': 1.0}) == {'a': 8192, 'b': 0, 'c': 8192}


def test_other_totals_and_an_empty_total():
    assert target_counts({'a': 1.0, 'b': 1.0, 'c': 1.0}, total=10) == {'a': 4, 'b': 3, 'c': 3}
    assert target_counts({'a': 1.0, 'b': 3.0}, total=0) == {'a': 0, 'b': 0}


@pytest.mark.parametrize('weights', [{'a': 0.0, 'b': 0.0}, {'a': 0}, {}])
def test_no_weight_above_zero_is_refused(weights):
    with pytest.raises(ValueError, match='weight above 0'):
        target_counts(weights)


def test_order_of_the_weights_does_not_change_the_counts():
    # 0.1 + 0.1 + 0.4 and 0.4 + 0.1 + 0.1 differ in the last bit, and the three remainders tie exactly
    # (each share is n + 2/3): a plain sum gave b or c the spare slot depending on which master came first.
    weights = {'a': 0.1, 'b': 0.1, 'c': 0.4}
    counts = target_counts(weights)
    assert sum(counts.values()) == SLOT_COUNT
    assert target_counts({'c': 0.4, 'b': 0.1, 'a': 0.1}) == counts
    assert target_counts({'b': 0.1, 'c': 0.4, 'a': 0.1}) == counts


@PROPERTY_SETTINGS
# Weights whose float sum depends on the order they are added in; the second found by this test.
@example({NODE_IDS[0]: 0.1, NODE_IDS[1]: 0.2, NODE_IDS[2]: 0.2, NODE_IDS[3]: 0.5}, SLOT_COUNT)
@example({NODE_IDS[0]: 2.0, NODE_IDS[1]: 1.0, NODE_IDS[2]: 0.3333333333333333}, SLOT_COUNT)
@given(st.integers(1, 8).flatmap(lambda count: weight_maps(NODE_IDS[:count])), st.one_of(st.just(SLOT_COUNT), st.integers(0, SLOT_COUNT)))
def test_target_counts_are_the_largest_remainder_split(weights, total):
    counts = target_counts(weights, total)
    assert set(counts) == set(weights)
    assert sum(counts.values()) == total
    exact = exact_shares(weights, total)
    for node, count in counts.items():
        assert count >= 0
        assert abs(count - exact[node]) < 1, (node, count, float(exact[node]))
        if weights[node] == 0:
            assert count == 0
    # Same input, same counts, whatever order the weights come in.
    assert target_counts(dict(weights), total) == counts
    assert target_counts(dict(reversed(list(weights.items()))), total) == counts


# ---------------------------------------------------------------------------------------------
# within_threshold

def test_exactly_threshold_percent_off_is_within():
    wanted = {'a': 5000, 'b': 5000}
    assert within_threshold({'a': 5100, 'b': 4900}, wanted, 2.0)
    assert not within_threshold({'a': 5101, 'b': 4899}, wanted, 2.0)
    # 10% of 4096 is 409.6 slots: 409 off is within, 410 is not.
    assert within_threshold({'a': 4096 + 409, 'b': 4096 - 409}, {'a': 4096, 'b': 4096}, 10.0)
    assert not within_threshold({'a': 4096 + 410, 'b': 4096 - 410}, {'a': 4096, 'b': 4096}, 10.0)


def test_threshold_zero_means_exact():
    assert within_threshold({'a': 8192, 'b': 8192}, {'a': 8192, 'b': 8192}, 0.0)
    assert not within_threshold({'a': 8193, 'b': 8191}, {'a': 8192, 'b': 8192}, 0.0)


def test_empty_master_that_should_own_slots_is_never_within():
    # 1 slot wanted, 0 owned is 100% off; a threshold above 100 would otherwise let it pass.
    assert not within_threshold({'a': 16383, 'b': 0}, {'a': 16383, 'b': 1}, 1000.0)
    assert not within_threshold({'a': 16383}, {'a': 16383, 'b': 1}, 1000.0)


def test_master_that_should_own_nothing_but_owns_slots_is_never_within():
    assert not within_threshold({'a': 16383, 'b': 1}, {'a': 16384, 'b': 0}, 1000.0)
    # A master left out of the wanted counts should own nothing too: plan_moves gives its slots away.
    assert not within_threshold({'a': 16383, 'b': 1}, {'a': 16384}, 1000.0)


@PROPERTY_SETTINGS
@given(st.integers(1, SLOT_COUNT), st.integers(0, SLOT_COUNT), st.sampled_from((1, -1)))
def test_threshold_boundary_is_inclusive(want, off_by, direction):
    have = want + direction * off_by
    if have < 1:
        return
    # The percentage an operator would write for this distance, as the nearest float: e.g. 2.0 for 100 off 5000.
    threshold = float(Fraction(off_by * 100, want))
    assert within_threshold({'a': have}, {'a': want}, threshold)
    if off_by:
        assert not within_threshold({'a': have}, {'a': want}, float(Fraction((off_by - 1) * 100, want)))


@PROPERTY_SETTINGS
@given(st.integers(1, SLOT_COUNT), st.integers(0, SLOT_COUNT), st.floats(min_value=0.0, max_value=1e6))
def test_wrong_side_of_zero_is_never_within(want, have, threshold):
    assert not within_threshold({'a': 0, 'b': SLOT_COUNT}, {'a': want, 'b': SLOT_COUNT - want}, threshold)
    if have:
        assert not within_threshold({'a': have, 'b': SLOT_COUNT - have}, {'a': 0, 'b': SLOT_COUNT}, threshold)


# ---------------------------------------------------------------------------------------------
# plan_moves, plan_rebalance

def test_new_empty_master_gets_a_quarter_when_three_own_everything_evenly():
    masters = list(NODE_IDS[:4])
    counts = target_counts({master: 1.0 for master in masters[:3]})
    owners = [master for master in masters[:3] for dummy in range(counts[master])]
    owned = owned_by_master(masters, owners)
    moves = plan_rebalance(owned, {master: 1.0 for master in masters}, threshold=2.0)
    assert moves
    assert {move.target for move in moves} == {masters[3]}
    after = owned_by_master(masters, apply_moves(owners, moves))
    assert counts_of(after) == {master: SLOT_COUNT // 4 for master in masters}
    # Each giver gives one contiguous run from the top of its range.
    for move in moves:
        assert move.slots == tuple(range(move.slots[0], move.slots[-1] + 1))
        assert move.slots[-1] == owned[move.source][-1]


def test_balanced_cluster_needs_no_rebalance():
    masters = list(NODE_IDS[:3])
    counts = target_counts({master: 1.0 for master in masters})
    owners = [master for master in masters for dummy in range(counts[master])]
    assert plan_rebalance(owned_by_master(masters, owners), {master: 1.0 for master in masters}, threshold=0.0) is None


def test_rebalance_within_threshold_is_none_and_beyond_it_moves():
    masters = list(NODE_IDS[:2])
    owners = [masters[0]] * 8292 + [masters[1]] * 8092
    owned = owned_by_master(masters, owners)
    weights = {master: 1.0 for master in masters}
    # 100 slots off 8192 is 1.22%.
    assert plan_rebalance(owned, weights, threshold=2.0) is None
    moves = plan_rebalance(owned, weights, threshold=1.0)
    assert moves == [SlotMove(masters[0], masters[1], tuple(range(8192, 8292)))]


def test_zero_weight_master_gives_everything():
    masters = list(NODE_IDS[:3])
    counts = target_counts({master: 1.0 for master in masters})
    owners = [master for master in masters for dummy in range(counts[master])]
    moves = plan_rebalance(owned_by_master(masters, owners), {masters[0]: 1.0, masters[1]: 1.0, masters[2]: 0.0}, threshold=2.0)
    after = counts_of(owned_by_master(masters, apply_moves(owners, moves)))
    assert after == {masters[0]: 8192, masters[1]: 8192, masters[2]: 0}
    assert {move.source for move in moves} == {masters[2]}


def test_plan_moves_is_minimal_and_merges_per_pair():
    owned = {'a': list(range(0, 10)), 'b': list(range(10, 12)), 'c': []}
    moves = plan_moves(owned, {'a': 4, 'b': 4, 'c': 4})
    # a gives its top six: two to b (filled first, by id), four to c.
    assert moves == [SlotMove('a', 'b', (4, 5)), SlotMove('a', 'c', (6, 7, 8, 9))]


def test_merge_moves_joins_moves_between_the_same_masters():
    merged = merge_moves([SlotMove('a', 'b', (5, 6)), SlotMove('a', 'c', (9,)), SlotMove('a', 'b', (1,))])
    assert merged == [SlotMove('a', 'b', (1, 5, 6)), SlotMove('a', 'c', (9,))]


@PROPERTY_SETTINGS
@given(slot_ownerships(), st.data())
def test_plan_moves_reaches_any_wanted_counts_with_the_fewest_slots(ownership, data):
    masters, owners = list(ownership.masters), ownership.owners
    owned = owned_by_master(masters, owners)
    wanted = target_counts(data.draw(weight_maps(masters), label='weights'))
    moves = plan_moves(owned, wanted)
    after = owned_by_master(masters, apply_moves(owners, moves))
    assert counts_of(after) == wanted
    assert_sources_only_give(moves)
    surplus = sum(max(0, len(owned[master]) - wanted[master]) for master in masters)
    assert sum(len(move.slots) for move in moves) == surplus
    assert plan_moves(owned, wanted) == moves


@PROPERTY_SETTINGS
@given(slot_ownerships(), st.data())
def test_plan_rebalance_moves_only_when_outside_the_threshold(ownership, data):
    masters, owners = list(ownership.masters), ownership.owners
    owned = owned_by_master(masters, owners)
    weights = data.draw(weight_maps(masters), label='weights')
    threshold = data.draw(st.sampled_from((0.0, 1.0, 2.0, 5.0, 50.0)), label='threshold')
    wanted = target_counts(weights)
    moves = plan_rebalance(owned, weights, threshold)
    if within_threshold(counts_of(owned), wanted, threshold):
        assert moves is None
        return
    assert moves
    after_owners = apply_moves(owners, moves)
    assert None not in after_owners
    assert counts_of(owned_by_master(masters, after_owners)) == wanted
    assert_sources_only_give(moves)
    assert sum(len(move.slots) for move in moves) == sum(max(0, len(owned[master]) - wanted[master]) for master in masters)
    # The plan leaves nothing for a second run to do, even at threshold 0.
    assert plan_rebalance(owned_by_master(masters, after_owners), weights, 0.0) is None


@PROPERTY_SETTINGS
@given(slot_ownerships(max_masters=5))
def test_masters_without_weight_give_their_slots_away(ownership):
    # A master that owns slots but is left out of the weights should end with none.
    masters, owners = list(ownership.masters), ownership.owners
    weights = {master: 1.0 for master in masters}
    left_out = NODE_IDS[7]
    owners_with_extra = [left_out] + list(owners[1:])
    owned_with_extra = owned_by_master(masters + [left_out], owners_with_extra)
    moves = plan_rebalance(owned_with_extra, weights, threshold=100.0)
    assert moves is not None
    after = owned_by_master(masters + [left_out], apply_moves(owners_with_extra, moves))
    assert after[left_out] == []


# ---------------------------------------------------------------------------------------------
# plan_move

def test_move_skips_slots_the_target_owns():
    owners = ['a'] * 100 + ['b'] * 100 + ['c'] * (SLOT_COUNT - 200)
    moves = plan_move(owners, [5, 6, 150, 99, 5, 120, 300], 'b')
    assert moves == [SlotMove('a', 'b', (5, 6, 99)), SlotMove('c', 'b', (300,))]


def test_move_of_slots_the_target_already_owns_is_empty():
    owners = ['a'] * 100 + ['b'] * (SLOT_COUNT - 100)
    assert plan_move(owners, [0, 1, 2], 'a') == []


def test_move_of_an_uncovered_slot_names_it():
    owners: List[Optional[str]] = ['a'] * SLOT_COUNT
    owners[7000] = None
    with pytest.raises(ValueError, match=r'slot 7000 .*action=fix'):
        plan_move(owners, [10, 7000, 7001], 'b')
    # An uncovered slot that is not asked for is no obstacle.
    assert plan_move(owners, [10, 7001], 'b') == [SlotMove('a', 'b', (10, 7001))]


@PROPERTY_SETTINGS
@given(slot_ownerships(allow_uncovered=True), st.data())
def test_move_gives_the_target_exactly_the_slots_asked_for(ownership, data):
    masters, owners = list(ownership.masters), ownership.owners
    target = data.draw(st.sampled_from(masters), label='target')
    # As an operator asks: a few ranges, possibly overlapping, possibly single slots.
    ranges = data.draw(st.lists(st.tuples(st.integers(0, SLOT_COUNT - 1), st.sampled_from((1, 1, 2, 10, 500, 3000))), min_size=1, max_size=6), label='ranges')
    slots = [slot for start, length in ranges for slot in range(start, min(start + length, SLOT_COUNT))]
    uncovered = sorted(slot for slot in set(slots) if owners[slot] is None)
    if uncovered:
        with pytest.raises(ValueError, match=rf'slot {uncovered[0]} '):
            plan_move(owners, slots, target)
        return
    moves = plan_move(owners, slots, target)
    after = apply_moves(owners, moves)
    assert all(move.target == target for move in moves)
    assert {slot for move in moves for slot in move.slots} == {slot for slot in slots if owners[slot] != target}
    for slot in slots:
        assert after[slot] == target
    asked = set(slots)
    assert [slot for slot, owner in enumerate(after) if owner != owners[slot] and slot not in asked] == []


# ---------------------------------------------------------------------------------------------
# plan_drain

def balanced_owners(masters: Sequence[str], weights: Dict[str, float]) -> List[Optional[str]]:
    counts = target_counts(weights)
    return [master for master in masters for dummy in range(counts[master])]


def test_drain_one_of_four_balanced_masters():
    masters = list(NODE_IDS[:4])
    weights = {master: 1.0 for master in masters}
    owners = balanced_owners(masters, weights)
    source = masters[1]
    moves = plan_drain(owned_by_master(masters, owners), source, dict(weights, **{source: 0.0}))
    after = counts_of(owned_by_master(masters, apply_moves(owners, moves)))
    assert after[source] == 0
    others = [master for master in masters if master != source]
    assert {master: after[master] for master in others} == target_counts({master: 1.0 for master in others})
    assert sorted(after[master] for master in others) == [5461, 5461, 5462]
    assert all(move.source == source for move in moves)
    # The source's range is cut in contiguous pieces, one per taker.
    assert len(moves) == 3
    for move in moves:
        assert move.slots == tuple(range(move.slots[0], move.slots[-1] + 1))


def test_drain_by_weight():
    masters = ['a', 'b', 'c']
    owners = ['a'] * 8192 + ['b'] * 4096 + ['c'] * 4096
    moves = plan_drain(owned_by_master(masters, owners), 'a', {'a': 0.0, 'b': 3.0, 'c': 1.0})
    after = counts_of(owned_by_master(masters, apply_moves(owners, moves)))
    assert after == {'a': 0, 'b': 12288, 'c': 4096}
    assert moves == [SlotMove('a', 'b', tuple(range(0, 8192)))]


def test_drain_never_takes_slots_from_a_master_above_its_share():
    # b is already above its share after the drain: it keeps its slots and takes none, c takes all.
    masters = ['a', 'b', 'c']
    owners = ['a'] * 1000 + ['b'] * 10000 + ['c'] * (SLOT_COUNT - 11000)
    moves = plan_drain(owned_by_master(masters, owners), 'a', {'a': 1.0, 'b': 1.0, 'c': 1.0})
    assert moves == [SlotMove('a', 'c', tuple(range(0, 1000)))]


def test_drain_of_a_master_without_slots_is_empty():
    owners = ['a'] * SLOT_COUNT
    assert plan_drain(owned_by_master(['a', 'b'], owners), 'b', {'a': 1.0, 'b': 1.0}) == []


@pytest.mark.parametrize('weights', [{'a': 1.0, 'b': 0.0, 'c': 0.0}, {'a': 1.0}, {}])
def test_drain_refuses_when_no_other_master_has_weight(weights):
    owners = ['a'] * 8192 + ['b'] * 8192
    with pytest.raises(ValueError, match='no other master'):
        plan_drain(owned_by_master(['a', 'b', 'c'], owners), 'a', weights)


@PROPERTY_SETTINGS
@given(slot_ownerships(min_masters=2), st.data())
def test_drain_moves_every_slot_of_the_source_and_nothing_else(ownership, data):
    masters, owners = list(ownership.masters), ownership.owners
    owned = owned_by_master(masters, owners)
    source = data.draw(st.sampled_from(masters), label='source')
    others = [master for master in masters if master != source]
    weights = dict(data.draw(weight_maps(others), label='weights of the others'), **{source: data.draw(WEIGHT_VALUES, label='weight of the source')})
    moves = plan_drain(owned, source, weights)
    after = counts_of(owned_by_master(masters, apply_moves(owners, moves)))

    assert all(move.source == source for move in moves)
    assert sorted(slot for move in moves for slot in move.slots) == owned[source]
    assert after[source] == 0
    other_weights = {master: weights[master] for master in others}
    wanted = target_counts(other_weights)
    for master in others:
        if other_weights[master] == 0:
            assert after[master] == len(owned[master]), f'{master} has weight 0 and should take nothing'
        # Takers never pass their share; a master above its share keeps what it has and takes nothing.
        assert len(owned[master]) <= after[master] <= max(len(owned[master]), wanted[master])
    # When no other master is above its share, the source's slots fill every share exactly.
    if all(len(owned[master]) <= wanted[master] for master in others):
        assert {master: after[master] for master in others} == wanted
    # Otherwise the slots are split in proportion to what each master lacks (largest remainder).
    lacking = {master: max(0, wanted[master] - len(owned[master])) for master in others}
    if sum(lacking.values()):
        exact = exact_shares(lacking, len(owned[source]))
        for master in others:
            assert abs(after[master] - len(owned[master]) - exact[master]) < 1


@PROPERTY_SETTINGS
@given(st.integers(2, 8), st.data())
def test_drain_of_a_balanced_cluster_fills_the_new_shares_exactly(master_count, data):
    # A cluster balanced by these weights (as a rebalance leaves it), then one master drained. When
    # every other master with weight sees its exact share grow by a slot or more, none starts above its new
    # share, and the source's slots fill every new share exactly.
    #
    # Not guaranteed otherwise: a source with a tiny weight (0.003 beside weights of 1 to 9, owning 2
    # slots) can leave a master above its new share by one slot, and the split by what each lacks may
    # then leave another 1.2 slots under its exact share where a better split would not.
    masters = list(NODE_IDS[:master_count])
    weights = data.draw(weight_maps(masters), label='weights')
    owners = balanced_owners(masters, weights)
    owned = owned_by_master(masters, owners)
    source = data.draw(st.sampled_from(masters), label='source')
    others = {master: weights[master] for master in masters if master != source}
    if not any(others.values()):
        with pytest.raises(ValueError, match='no other master'):
            plan_drain(owned, source, weights)
        return
    moves = plan_drain(owned, source, weights)
    after = counts_of(owned_by_master(masters, apply_moves(owners, moves)))
    assert after[source] == 0
    share_before = exact_shares(weights, SLOT_COUNT)
    share_after = exact_shares(others, SLOT_COUNT)
    if not owned[source] or all(share_after[master] - share_before[master] >= 1 for master, weight in others.items() if weight):
        assert {master: after[master] for master in others} == target_counts(others)


@PROPERTY_SETTINGS
@given(st.integers(2, 8), st.data())
def test_drain_of_an_evenly_balanced_cluster_fills_the_shares_exactly(master_count, data):
    masters = list(NODE_IDS[:master_count])
    weights = {master: 1.0 for master in masters}
    owners = balanced_owners(masters, weights)
    source = data.draw(st.sampled_from(masters), label='source')
    moves = plan_drain(owned_by_master(masters, owners), source, dict(weights, **{source: 0.0}))
    after = counts_of(owned_by_master(masters, apply_moves(owners, moves)))
    others = [master for master in masters if master != source]
    assert {master: after[master] for master in others} == target_counts({master: 1.0 for master in others})
    assert len(moves) == len(others)


# ---------------------------------------------------------------------------------------------
# describe_moves

def test_describe_moves_names_masters_and_formats_ranges():
    moves = [SlotMove('id-a', 'id-b', (0, 1, 2, 3, 7, 9, 10)), SlotMove('id-a', 'id-unknown', (42,))]
    names = {'id-a': '10.0.0.1:7000', 'id-b': '10.0.0.2:7000'}
    assert describe_moves(moves, names) == [
        dict(source='10.0.0.1:7000', target='10.0.0.2:7000', slots=['0-3', '7', '9-10'], slot_count=7),
        # A node without a name is shown by its id.
        dict(source='10.0.0.1:7000', target='id-unknown', slots=['42'], slot_count=1),
    ]
    assert describe_moves([], names) == []
