# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The order of a rolling restart, and what makes one unsafe, from redis_cluster_info's nodes and the inventory's
instances: replicas first, then masters without slots, then masters (each failed over to a replica first)."""

from __future__ import annotations

from typing import Dict, Iterable, List

# The order the instances restart in, by what they are when the restart starts.
RESTART_RANKS = ('replica', 'empty master', 'master')


def restart_kind(node: Dict) -> str:
    if node.get('role') == 'replica':
        return 'replica'
    return 'master' if node.get('slot_count') else 'empty master'


def _unique(items: Iterable[str]) -> List[str]:
    return list(dict.fromkeys(items))


def unprotected_masters(nodes: List[Dict]) -> List[str]:
    """The masters owning slots that no replica with its link up could take over from."""
    covered = {node.get('master_id') for node in nodes if node.get('role') == 'replica' and node.get('master_link_status') == 'up'}
    return [node['address'] for node in nodes if node.get('role') == 'master' and node.get('slot_count') and node.get('id') not in covered]


def plan_rolling_restart(nodes: List[Dict], instances: List[Dict], only: Iterable[str] = ()) -> Dict[str, List]:
    """steps: the instances to restart (all of the inventory's, or those whose address is in `only`), each an item of
    `instances` with its `role` (replica, empty master, master), in restart order, by address within a rank;
    unknown: addresses in `only` that no instance has; not_members: instances the cluster does not know;
    unprotected: planned masters that no replica with its link up could take over from."""
    members = {node['address']: node for node in nodes}
    only = _unique(only)
    inventory = _unique(entry['address'] for entry in instances)
    chosen = [entry for entry in sorted(instances, key=lambda entry: str(entry['address']).lower())
              if entry['address'] in members and (not only or entry['address'] in only)]
    steps = [dict(entry, role=rank) for rank in RESTART_RANKS for entry in chosen if restart_kind(members[entry['address']]) == rank]
    exposed = set(unprotected_masters(nodes))
    return dict(
        steps=steps,
        unknown=[address for address in only if address not in inventory],
        not_members=[address for address in inventory if address not in members],
        unprotected=[step['address'] for step in steps if step['role'] == 'master' and step['address'] in exposed],
    )
