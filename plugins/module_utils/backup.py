# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A backup directory of backup.yml: its manifest, written from the files themselves, checked before a restore trusts
it, and the retention of older backups.

The manifest is made from the fetched RDB files, not from the live cluster: the key counts per slot and the sampled
value digests are those of the point in time each file holds, whatever was written to the cluster since.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
from typing import Any, Dict, List, Optional, Sequence

from ansible_collections.hashslot.redis.plugins.module_utils.rdb import RdbError, summarize_rdb
from ansible_collections.hashslot.redis.plugins.module_utils.topology import SLOT_COUNT, format_ranges, parse_slot_ranges, ranges_to_slots, slots_to_ranges

MANIFEST = 'manifest.json'
FORMAT = 1
# backup.yml names each backup after the UTC time it started: 20250101T120000Z.
BACKUP_NAME = re.compile(r'^[0-9]{8}T[0-9]{6}Z$')
READ_SIZE = 1 << 20


class BackupError(Exception):
    """A backup that cannot be trusted; the message names the file and what is wrong with it."""

    changed = False


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(READ_SIZE), b''):
            digest.update(block)
    return digest.hexdigest()


def _private(root: str) -> None:
    """The backup's directories 0700 and its files 0600: a snapshot holds every key and value of its shard."""
    os.chmod(root, stat.S_IRWXU)
    for directory, folders, files in os.walk(root):
        for name in folders:
            os.chmod(os.path.join(directory, name), stat.S_IRWXU)
        for name in files:
            os.chmod(os.path.join(directory, name), stat.S_IRUSR | stat.S_IWUSR)


def _slot_counts(summary: Dict[str, Any]) -> Dict[int, int]:
    return {int(slot): int(count) for slot, count in summary['slot_counts'].items()}


def describe_file(root: str, snapshot: Dict[str, Any], sample: int) -> Dict[str, Any]:
    """The manifest's entry of one snapshot (a redis_snapshot result with the folder it was fetched to, `dest`)."""
    relative = os.path.join(snapshot['dest'], os.path.basename(snapshot['path']))
    path = os.path.join(root, relative)
    if not os.path.isfile(path):
        raise BackupError(f'{path}: missing; the snapshot of {snapshot["node"]} was not fetched')
    try:
        summary = summarize_rdb(path, sample=sample)
    except RdbError as exc:
        raise BackupError(f'{path}: not a readable RDB file: {exc}') from exc
    slots = ranges_to_slots(parse_slot_ranges(snapshot.get('slots') or []))
    owned = set(slots)
    counts = _slot_counts(summary)
    stray = sorted(slot for slot in counts if owned and slot not in owned)
    if owned and stray:
        raise BackupError(f'{path}: holds keys of {len(stray)} slot(s) {snapshot["node"]} did not own when it saved '
                          f'({", ".join(format_ranges(slots_to_ranges(stray[:20])))}); take the backup again')
    return dict(node_id=snapshot.get('node_id'), address=snapshot['node'], role=snapshot.get('role', 'master'),
                slots=format_ranges(slots_to_ranges(slots)), file=relative, sha256=summary['sha256'], size=summary['size'],
                keys=summary['keys'], expires=summary['expires'], slot_counts={str(slot): count for slot, count in sorted(counts.items())},
                expiring=summary['expiring'], server=snapshot.get('server') or summary['server'],
                version=snapshot.get('version') or summary['server_version'], rdb_version=summary['rdb_version'],
                saved_at=summary['ctime'] or snapshot.get('last_save_time'), sample=summary['sample'])


def write_manifest(root: str, snapshots: Sequence[Dict[str, Any]], layout: Optional[List[Dict[str, Any]]] = None, sample: int = 100,
                   check_mode: bool = False) -> Dict[str, Any]:
    """manifest.json in `root` (the backup's directory) from the fetched files; the directory made private."""
    # A loop's registered results: the loop item's keys (dest, role) with the result's over them.
    snapshots = [dict(snapshot.get('item') or {}, **{key: value for key, value in snapshot.items() if key != 'item'}) for snapshot in snapshots]
    entries = [describe_file(root, snapshot, sample) for snapshot in snapshots if not snapshot.get('skipped')]
    manifest = dict(format=FORMAT, backup=os.path.basename(os.path.normpath(root)), files=entries, nodes=layout or [])
    manifest['masters'] = _coverage(manifest, root)
    if not check_mode:
        path = os.path.join(root, MANIFEST)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR), 'w') as handle:
            json.dump(manifest, handle, indent=1, sort_keys=True)
        _private(root)
    return manifest


def _coverage(manifest: Dict[str, Any], root: str) -> int:
    """The masters' files must hold all 16384 slots, each once; returns how many masters there are."""
    owner: Dict[int, str] = {}
    masters = [entry for entry in manifest['files'] if entry.get('role', 'master') == 'master' and entry['slots']]
    for entry in masters:
        for slot in ranges_to_slots(parse_slot_ranges(entry['slots'])):
            if slot in owner:
                raise BackupError(f'{root}: slot {slot} is in both {owner[slot]} and {entry["file"]}')
            owner[slot] = entry['file']
    missing = slots_to_ranges(sorted(set(range(SLOT_COUNT)) - set(owner)))
    if missing:
        raise BackupError(f'{root}: incomplete: no file holds slot(s) {", ".join(format_ranges(missing[:10]))}'
                          f'{" and more" if len(missing) > 10 else ""} ({len(ranges_to_slots(missing))} in all)')
    return len(masters)


def read_manifest(root: str, check_files: bool = True) -> Dict[str, Any]:
    """The manifest of the backup in `root`, refused (BackupError naming the file) when it is missing, incomplete, or a
    file is missing or does not match its size and sha256."""
    manifest = load_manifest(os.path.join(root, MANIFEST), root)
    if check_files:
        for entry in manifest['files']:
            verify_file(root, entry)
    return manifest


def load_manifest(path: str, root: Optional[str] = None) -> Dict[str, Any]:
    """A manifest file (a copy of it too: `root` only names the backup in messages), its form and coverage checked."""
    root = root or os.path.dirname(path)
    try:
        with open(path) as handle:
            manifest = json.load(handle)
    except FileNotFoundError as exc:
        raise BackupError(f'{path}: missing; not a backup made by backup.yml, or the run that made it did not finish') from exc
    except ValueError as exc:
        raise BackupError(f'{path}: not valid JSON ({exc})') from exc
    if not isinstance(manifest, dict) or manifest.get('format') != FORMAT or not isinstance(manifest.get('files'), list):
        raise BackupError(f'{path}: not a manifest of format {FORMAT}')
    _coverage(manifest, root)
    return manifest


def verify_file(root: str, entry: Dict[str, Any]) -> None:
    path = os.path.join(root, entry['file'])
    if not os.path.isfile(path):
        raise BackupError(f'{path}: missing (the manifest lists it for {entry["address"]})')
    size = os.path.getsize(path)
    if size != entry['size']:
        raise BackupError(f'{path}: {size} bytes, the manifest says {entry["size"]}: the file was changed or cut short')
    if file_sha256(path) != entry['sha256']:
        raise BackupError(f'{path}: its sha256 is not the one in the manifest: the file was changed')


def prune(base: str, keep: int, current: str, check_mode: bool = False) -> List[str]:
    """With `keep` > 0: the backups in `base` beyond the newest `keep` complete ones removed, and the incomplete ones
    (no manifest: a run that failed) older than `current`; returns the removed directories. Only directories named
    as backup.yml names them are considered."""
    if keep <= 0 or not os.path.isdir(base):
        return []
    names = sorted((name for name in os.listdir(base) if BACKUP_NAME.match(name) and os.path.isdir(os.path.join(base, name))), reverse=True)
    complete = [name for name in names if os.path.isfile(os.path.join(base, name, MANIFEST))]
    removed = list(complete[keep:])
    removed += [name for name in names if name not in complete and name < os.path.basename(os.path.normpath(current))]
    removed = sorted(set(removed))
    if not check_mode:
        for name in removed:
            shutil.rmtree(os.path.join(base, name))
    return [os.path.join(base, name) for name in removed]


def check_rdb_path(executable: str) -> str:
    """The RDB checker installed beside a server binary: redis-check-rdb beside redis-server, valkey-check-rdb beside
    valkey-server."""
    directory, name = os.path.split(executable)
    return os.path.join(directory, name.replace('-server', '-check-rdb'))


def restore_steps(plan: Dict[str, Any], instances: Sequence[Dict[str, Any]], staging: str) -> List[Dict[str, Any]]:
    """What restore.yml does on each host, from redis_restore's plan (state=planned) and the inventory's instances
    (redis_instance_map): per instance, the backup's file it loads (`source`, relative to the backup's directory, and
    `staged`, where it is copied on the host first; both empty for a node that starts without data) and the
    redis_server role's `restore` settings."""
    by_address = {entry['address']: entry for entry in instances}
    steps = []
    for item in list(plan['placements']) + list(plan['empty']):
        entry = by_address.get(item['node'])
        if entry is None:
            raise BackupError(f'{item["node"]}: no instance of the inventory serves it, so its data cannot be replaced')
        source = item.get('file', '')
        staged = f'{staging}/{entry["node"]["port"]}.rdb' if source else ''
        settings = {name: item[name] for name in ('dir', 'dbfilename', 'appenddirname', 'appendfilename', 'cluster-config-file')}
        steps.append(dict(inventory_host=entry['inventory_host'], instance=entry['instance'], address=item['node'], source=source,
                          staged=staged, sha256=item.get('sha256', ''), keys=item.get('keys', 0), executable=item.get('executable', ''),
                          check_rdb=check_rdb_path(item['executable']) if source and item.get('executable') else '',
                          restore=dict(settings, staged=staged)))
    return steps


def restore_plan_lines(plan: Dict[str, Any]) -> List[str]:
    """redis_restore's plan in words: which file each master loads, each replica's master, the nodes that held data."""
    lines = [f'{item["node"]} loads {item["file"]} ({item["keys"]} keys, slots {", ".join(item["slots"])}; saved by {item["backup_node"]})'
             for item in plan['placements']]
    for replica, master in sorted(plan['replicas'].items()):
        lines.append(f'{replica} replicates {master}')
    for item in plan['empty']:
        if item['node'] in plan['masters']:
            lines.append(f'{item["node"]} master without data')
    for text in plan.get('not_empty', []):
        lines.append(f'{text}: its data is replaced (force)')
    return lines
