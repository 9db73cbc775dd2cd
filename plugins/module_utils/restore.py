# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A cluster brought back from a backup of backup.yml: which node gets which file, then the cluster formed around the
data the masters loaded, then checked against the backup's manifest key by key.

A node started with a backed-up RDB file and an empty cluster configuration loads the keys and takes the slots they
are in (the server's own check of its data against its configuration). What is left is what `redis_cluster_create`
does, with the slots given by the backup instead of an even split: each master gets the rest of the slots its file's
node owned, the nodes meet, the replicas attach. The plan depends only on the manifest and the nodes, so a run cut
short is completed by the next one.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ansible_collections.hashslot.redis.plugins.module_utils.cluster import ClusterError, NodeState, describe_cluster, wait_for_agreement, wait_until
from ansible_collections.hashslot.redis.plugins.module_utils.cluster_create import _apply, joining_actions, probe_all, validate_specs
from ansible_collections.hashslot.redis.plugins.module_utils.placement import Layout, NodeSpec, plan_layout
from ansible_collections.hashslot.redis.plugins.module_utils.rdb import key_bytes, live_digest
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import NodeError, NodePool, config_value, parse_info, pipelines_at_once
from ansible_collections.hashslot.redis.plugins.module_utils.topology import (
    format_ranges, parse_slot_ranges, ranges_to_slots, render_layout, slots_to_ranges,
)

# Where a node's files go: the server's own settings, read before the files are placed.
FILE_SETTINGS = ('dir', 'dbfilename', 'appenddirname', 'appendfilename', 'cluster-config-file')
# Clocks of the hosts and of the controller may differ by this much when keys with a TTL are counted (ms).
CLOCK_MARGIN_MS = 60_000


def backup_masters(manifest: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The masters' files of a backup, by their first slot."""
    masters = [entry for entry in manifest['files'] if entry.get('role', 'master') == 'master' and entry['slots']]
    return sorted(masters, key=lambda entry: parse_slot_ranges(entry['slots'])[0][0])


def restore_layout(manifest: Dict[str, Any], specs: Sequence[NodeSpec], replicas: int) -> Tuple[Layout, Dict[str, Dict[str, Any]]]:
    """The layout of the restored cluster and which backed-up master's file each of its masters loads.

    Masters are chosen as a new cluster's are (spread over zones), a node of the backup's own address being kept a
    master when it is listed (a restore onto the same inventory keeps the roles); with more masters than the backup
    has, the others stay empty (a rebalance spreads the slots onto them)."""
    validate_specs(specs, replicas)
    files = backup_masters(manifest)
    master_count = len(specs) // (replicas + 1)
    if master_count < len(files):
        raise ClusterError(f'the backup has {len(files)} masters; {len(specs)} nodes with replicas={replicas} make {master_count}: '
                           f'give at least {len(files) * (replicas + 1)} nodes, or fewer replicas')
    listed = {spec.address for spec in specs}
    kept = [entry['address'] for entry in files if entry['address'] in listed]
    layout = plan_layout(specs, replicas, fixed_masters=kept)
    assignment: Dict[str, Dict[str, Any]] = {}
    for entry in files:
        if entry['address'] in layout.masters:
            assignment[entry['address']] = entry
    free = [master for master in layout.masters if master not in assignment]
    for entry in files:
        if entry not in assignment.values():
            assignment[free.pop(0)] = entry
    return layout, assignment


def _file_settings(states: Dict[str, NodeState]) -> Dict[str, Dict[str, str]]:
    addresses = list(states)
    outcomes = pipelines_at_once([(states[address].client, [('CONFIG', 'GET', name) for name in FILE_SETTINGS]) for address in addresses])
    settings: Dict[str, Dict[str, str]] = {}
    for address, outcome in zip(addresses, outcomes):
        if isinstance(outcome, NodeError):
            raise outcome
        values = {}
        for name, reply in zip(FILE_SETTINGS, outcome):
            if isinstance(reply, Exception):
                raise ClusterError(f'{address}: CONFIG GET {name} failed ({reply}); the restore must know where the node keeps its files')
            values[name] = config_value(reply, name) or ''
        values['executable'] = states[address].executable
        settings[address] = values
    return settings


def plan_restore(pool: NodePool, manifest: Dict[str, Any], specs: Sequence[NodeSpec], replicas: int, force: bool) -> Dict[str, Any]:
    """Before anything is touched: every node answers, none holds data (unless `force`), and which file goes where."""
    layout, assignment = restore_layout(manifest, specs, replicas)
    states = probe_all(pool, specs, 'restore the cluster')
    busy = []
    for spec in specs:
        state = states[spec.address]
        if state.keys or len(state.view.members()) > 1 or state.myself.slots:
            busy.append(f'{spec.address} (holds {state.keys} keys, knows {len(state.view.members()) - 1} other node(s), '
                        f'owns {state.myself.slot_count} slots)')
    if busy and not force:
        raise ClusterError('not empty: ' + '; '.join(busy) + '; a restore replaces what they hold: allow it with force '
                           '(restore.yml: redis_restore_force=true) once sure; nothing was changed')
    settings = _file_settings(states)
    placements = [dict(node=address, file=entry['file'], sha256=entry['sha256'], size=entry['size'], keys=entry['keys'],
                       slots=entry['slots'], backup_node=entry['address'], **settings[address])
                  for address, entry in assignment.items()]
    empty = [dict(node=spec.address, **settings[spec.address]) for spec in specs if spec.address not in assignment]
    entries = []
    for spec in specs:
        if spec.address in layout.masters:
            slots = parse_slot_ranges(assignment[spec.address]['slots']) if spec.address in assignment else []
            entries.append(dict(address=spec.address, role='master', slots=slots, zone=spec.zone))
        else:
            entries.append(dict(address=spec.address, role='replica', master_address=layout.replicas.get(spec.address), zone=spec.zone))
    warnings = list(layout.warnings)
    extra = [master for master in layout.masters if master not in assignment]
    if extra:
        warnings.append(f'{", ".join(extra)}: masters without a file of the backup, left without slots; rebalance the cluster '
                        '(playbooks/rebalance.yml, or site.yml) to give them their share')
    return dict(changed=True, placements=placements, empty=empty, masters=layout.masters, replicas=layout.replicas, not_empty=busy,
                warnings=warnings, diff=dict(before='', after=render_layout(entries)))


def _wait_synced(states: Dict[str, NodeState], replicas: Sequence[str], timeout: float) -> None:
    """Every replica's link to its master up and its first synchronisation over."""
    clients = [states[address].client for address in replicas]

    def check() -> Optional[str]:
        for client, outcome in zip(clients, pipelines_at_once([(client, [('INFO', 'replication')]) for client in clients])):
            if isinstance(outcome, NodeError):
                raise outcome
            info = parse_info(outcome[0])
            if info.get('master_link_status') != 'up' or info.get('master_sync_in_progress', '0') != '0':
                return f'{client.address}: master_link_status:{info.get("master_link_status")}, sync in progress:{info.get("master_sync_in_progress")}'
        return None
    wait_until(check, timeout, 'the replicas to copy their masters')


def verify_restore(states: Dict[str, NodeState], assignment: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Each master's keys per slot against its file's, and the sampled values' digests. Keys whose TTL ran out are
    gone by design (a master drops them when it loads the file, and later as it finds them), and counted until it
    does: a slot may lack the keys of it whose TTL ends before now, never those whose TTL ended after the save, give
    or take CLOCK_MARGIN_MS for the clocks of the hosts."""
    now_ms = int(time.time() * 1000)
    problems: List[str] = []
    report = []
    masters = list(assignment)
    commands = {address: [('CLUSTER', 'COUNTKEYSINSLOT', slot) for slot in ranges_to_slots(parse_slot_ranges(assignment[address]['slots']))]
                for address in masters}
    outcomes = pipelines_at_once([(states[address].client, commands[address]) for address in masters])
    for address, outcome in zip(masters, outcomes):
        entry = assignment[address]
        if isinstance(outcome, NodeError):
            raise outcome
        saved_ms = int(entry.get('saved_at') or 0) * 1000
        expected = {int(slot): count for slot, count in entry.get('slot_counts', {}).items()}
        expiring = {int(slot): times for slot, times in entry.get('expiring', {}).items()}
        wrong = []
        found = 0
        for command, reply in zip(commands[address], outcome):
            slot = int(command[2])
            if isinstance(reply, Exception):
                raise ClusterError(f'{address}: CLUSTER COUNTKEYSINSLOT {slot} failed: {reply}')
            count = int(reply)
            found += count
            total = expected.get(slot, 0)
            gone_before = sum(1 for expire in expiring.get(slot, []) if expire <= saved_ms - CLOCK_MARGIN_MS)
            gone_by_now = sum(1 for expire in expiring.get(slot, []) if expire <= now_ms + CLOCK_MARGIN_MS)
            if not total - gone_by_now <= count <= total - gone_before:
                wrong.append(f'slot {slot}: {count} keys, the file has {total}')
        sampled = mismatched = 0
        for item in entry.get('sample', []):
            if item.get('expire_ms') and int(item['expire_ms']) <= now_ms + CLOCK_MARGIN_MS:
                continue
            if item.get('digest') is None:
                continue
            sampled += 1
            kind, digest = live_digest(states[address].client, key_bytes(item))
            if (kind, digest) != (item['kind'], item['digest']):
                mismatched += 1
                wrong.append(f'key {item.get("key", item.get("key_base64"))}: {kind} with digest {digest}, the file has {item["kind"]} {item["digest"]}')
        if wrong:
            problems.append(f'{address} (from {entry["file"]}): ' + '; '.join(wrong[:10]) + (f' and {len(wrong) - 10} more' if len(wrong) > 10 else ''))
        report.append(dict(node=address, file=entry['file'], keys=found, file_keys=entry['keys'], slots=entry['slots'],
                           sampled=sampled, mismatched=mismatched))
    return dict(verified=report, problems=problems)


def complete_restore(pool: NodePool, manifest: Dict[str, Any], specs: Sequence[NodeSpec], replicas: int, wait_timeout: float,
                     check_mode: bool) -> Dict[str, Any]:
    """After the masters started with their files: the rest of each one's slots, the meetings, the replicas; then the
    check against the manifest. A run that stopped part-way is completed; a restored cluster is only checked again."""
    started = time.monotonic()
    layout, assignment = restore_layout(manifest, specs, replicas)
    states = probe_all(pool, specs, 'restore the cluster')
    for spec in specs:
        state = states[spec.address]
        if spec.address in assignment:
            entry = assignment[spec.address]
            if state.myself.is_replica:
                raise ClusterError(f'{spec.address}: is a replica, but it is to be the master holding {entry["file"]}; restore.yml places the file and '
                                   'starts the node with an empty cluster configuration')
            outside = sorted(set(ranges_to_slots(state.myself.slots)) - set(ranges_to_slots(parse_slot_ranges(entry['slots']))))
            if outside:
                raise ClusterError(f'{spec.address}: owns slot(s) {", ".join(format_ranges(slots_to_ranges(outside[:20])))} that {entry["file"]} '
                                   f'does not hold: it did not load that file; nothing was changed')
            if state.keys == 0 and entry['keys'] and not state.myself.slots:
                raise ClusterError(f'{spec.address}: holds no key, {entry["file"]} holds {entry["keys"]}: the file was not loaded '
                                   '(placed where the server does not read it?); nothing was changed')
        elif state.keys:
            raise ClusterError(f'{spec.address}: holds {state.keys} keys but no file of the backup is meant for it; nothing was changed')

    actions: List[Dict[str, Any]] = []
    for address, entry in assignment.items():
        wanted = set(ranges_to_slots(parse_slot_ranges(entry['slots'])))
        missing = sorted(wanted - set(ranges_to_slots(states[address].myself.slots)))
        if missing and len(states[address].view.members()) == 1:
            actions.append(dict(action='addslots', node=address, slots=format_ranges(slots_to_ranges(missing))))
        elif missing:
            raise ClusterError(f'{address}: already met other nodes without owning all of {entry["file"]}\'s slots '
                               f'({len(missing)} missing); restart the restore from the file placement')
    actions += joining_actions(specs, layout, states)

    result: Dict[str, Any] = dict(changed=bool(actions), actions=actions, masters=layout.masters, replicas=layout.replicas, warnings=list(layout.warnings))
    if check_mode:
        result['duration'] = round(time.monotonic() - started, 3)
        return result
    try:
        _apply(actions, list(specs), states, wait_timeout)
        final = wait_for_agreement([state.client for state in states.values()], wait_timeout)
        _wait_synced(states, list(layout.replicas), wait_timeout)
    except (ClusterError, NodeError) as exc:
        raise ClusterError(f'{exc}; the restore stopped part-way: run it again to complete it', changed=bool(actions)) from exc
    result.update(verify_restore(states, assignment))
    result['summary'] = [f'{item["node"]}: {item["keys"]} keys in slots {", ".join(item["slots"])} (the file {item["file"]} has {item["file_keys"]}); '
                         f'{item["sampled"]} sampled values compared, {item["mismatched"]} differ' for item in result['verified']]
    zones = {spec.address: spec.zone for spec in specs if spec.zone}
    result['cluster'] = describe_cluster(next(iter(final.values())).view, zones)
    if result['problems']:
        result['failure'] = 'the restored cluster does not match the backup: ' + ' | '.join(result['problems'])
    result['duration'] = round(time.monotonic() - started, 3)
    return result
