# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which slots go where: rebalance by weight, move, drain. Pure functions over slot ownership."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from ansible_collections.hashslot.redis.plugins.module_utils.topology import SLOT_COUNT, format_ranges, slots_to_ranges


@dataclass(frozen=True)
class SlotMove:
    """Move `slots` from the master `source` to the master `target` (node ids)."""
    source: str
    target: str
    slots: Tuple[int, ...]


def target_counts(weights: Dict[str, float], total: int = SLOT_COUNT) -> Dict[str, int]:
    """Slot counts proportional to weights, summing to `total` exactly (largest remainder, ties by id)."""
    # fsum: a float sum depends on the order of the weights, which follows the seed node, and an ulp
    # there can move a slot from one master to another between two runs.
    weight_sum = math.fsum(weights.values())
    if weight_sum <= 0:
        raise ValueError('at least one master needs a weight above 0')
    exact = {node: total * weight / weight_sum for node, weight in weights.items()}
    counts = {node: int(value) for node, value in exact.items()}
    leftover = total - sum(counts.values())
    for node in sorted(exact, key=lambda name: (-(exact[name] - counts[name]), name))[:leftover]:
        counts[node] += 1
    return counts


def within_threshold(current: Dict[str, int], wanted: Dict[str, int], threshold: float) -> bool:
    """True when no master is off its wanted slot count by more than `threshold` percent of it.

    An empty master that should own slots is always outside the threshold (redis-cli agrees).
    A master missing from `wanted` should own nothing, as plan_moves reads it.
    """
    for node in set(wanted) | set(current):
        want = wanted.get(node, 0)
        have = current.get(node, 0)
        if want == 0:
            if have:
                return False
            continue
        if have == 0:
            return False
        if abs(have - want) * 100.0 / want > threshold:
            return False
    return True


def plan_moves(owned: Dict[str, List[int]], wanted: Dict[str, int]) -> List[SlotMove]:
    """Moves that bring each master from its `owned` slots to its `wanted` count.

    Givers give their highest slots, takers are filled in id order, so ranges stay contiguous
    and the same input always yields the same plan.
    """
    surplus: List[Tuple[str, List[int]]] = []
    deficit: List[Tuple[str, int]] = []
    for node in sorted(set(owned) | set(wanted)):
        have = sorted(owned.get(node, []))
        want = wanted.get(node, 0)
        if len(have) > want:
            surplus.append((node, have[want:]))
        elif len(have) < want:
            deficit.append((node, want - len(have)))
    moves: List[SlotMove] = []
    giver_index = 0
    for taker, needed in deficit:
        while needed > 0 and giver_index < len(surplus):
            giver, spare = surplus[giver_index]
            take = spare[:needed]
            surplus[giver_index] = (giver, spare[needed:])
            if take:
                moves.append(SlotMove(source=giver, target=taker, slots=tuple(take)))
                needed -= len(take)
            if not surplus[giver_index][1]:
                giver_index += 1
    return merge_moves(moves)


def merge_moves(moves: Sequence[SlotMove]) -> List[SlotMove]:
    merged: Dict[Tuple[str, str], List[int]] = {}
    for move in moves:
        merged.setdefault((move.source, move.target), []).extend(move.slots)
    return [SlotMove(source, target, tuple(sorted(slots))) for (source, target), slots in merged.items()]


def plan_rebalance(owned: Dict[str, List[int]], weights: Dict[str, float], threshold: float) -> Optional[List[SlotMove]]:
    """None when every master is within `threshold` percent of its share; else the moves."""
    wanted = target_counts(weights)
    current = {node: len(slots) for node, slots in owned.items()}
    if within_threshold(current, wanted, threshold):
        return None
    return plan_moves(owned, wanted)


def plan_move(owners: Sequence[Optional[str]], slots: Sequence[int], target: str) -> List[SlotMove]:
    """Moves that give `target` the given slots; slots it owns already are skipped."""
    moves: List[SlotMove] = []
    for slot in sorted(set(slots)):
        owner = owners[slot]
        if owner is None:
            raise ValueError(f'slot {slot} has no owner; cover it with action=fix first')
        if owner != target:
            moves.append(SlotMove(owner, target, (slot,)))
    return merge_moves(moves)


def plan_drain(owned: Dict[str, List[int]], source: str, weights: Dict[str, float]) -> List[SlotMove]:
    """All of `source`'s slots to the other masters, so that they end proportional to their weights."""
    others = {node: weight for node, weight in weights.items() if node != source}
    if not others or sum(others.values()) <= 0:
        raise ValueError('no other master with a weight above 0 can take the slots')
    wanted = target_counts(others)
    wanted[source] = 0
    # Only the source gives: others keep what they have and take up to their share.
    current_others = {node: len(owned.get(node, [])) for node in others}
    give = sorted(owned.get(source, []))
    deficits = {node: max(0, wanted[node] - current_others[node]) for node in others}
    total_deficit = sum(deficits.values())
    shares = target_counts(deficits if total_deficit else others, len(give))
    moves: List[SlotMove] = []
    start = 0
    for node in sorted(shares):
        count = shares[node]
        if count:
            moves.append(SlotMove(source, node, tuple(give[start:start + count])))
            start += count
    return moves


def describe_moves(moves: Sequence[SlotMove], names: Dict[str, str]) -> List[Dict]:
    return [dict(source=names.get(move.source, move.source), target=names.get(move.target, move.target),
                 slots=format_ranges(slots_to_ranges(move.slots)), slot_count=len(move.slots)) for move in moves]
