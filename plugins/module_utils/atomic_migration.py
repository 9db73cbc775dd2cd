# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Atomic slot migration (Valkey 9.0 and later): the servers move the slots themselves.

`CLUSTER MIGRATESLOTS SLOTSRANGE <start> <end> ... NODE <target> [SLOTSRANGE ... NODE ...]` sent to the source starts
one job per target: the source forks, streams a snapshot of the slots to the target, then the writes that came after,
pauses writes to those slots for the hand-over, and the target takes them over with a new config epoch. Clients see
MOVED only. Each job is followed with `CLUSTER GETSLOTMIGRATIONS` on its source (state `success`, `failed` or
`cancelled` at the end, with a message). Jobs of different sources run at the same time; a source snapshots one job at
a time. A failed or cancelled job is started again, for the slots its source still owns, up to JOB_ATTEMPTS times.

A job outlives the connection that started it: a run killed while jobs are in flight leaves them running, and the next
run finds them (in_flight) and waits for them before it plans.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ansible_collections.hashslot.redis.plugins.module_utils.cluster import ClusterError, NodeState, read_node
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import NodeClient, NodeError
from ansible_collections.hashslot.redis.plugins.module_utils.topology import parse_slot_ranges, ranges_to_slots, slots_to_ranges

# The first release with CLUSTER MIGRATESLOTS.
ATOMIC_SINCE = (9, 0, 0)
METHODS = ('auto', 'atomic', 'keys')
TERMINAL = ('success', 'failed', 'cancelled')
JOB_ATTEMPTS = 3
POLL_INTERVAL = 0.02
RETRY_PAUSE = 0.5


def atomic_capable(state: NodeState) -> bool:
    return state.server_name == 'valkey' and tuple(state.version) >= ATOMIC_SINCE


def choose_method(requested: str, masters: Dict[str, NodeState]) -> str:
    """`atomic` or `keys` for a run: auto takes atomic when every master has it; atomic refuses a master without it."""
    if requested not in METHODS:
        raise ClusterError(f'method must be one of {", ".join(METHODS)}, got {requested}')
    lacking = [state for state in masters.values() if not atomic_capable(state)]
    if requested == 'atomic' and lacking:
        names = ', '.join(f'{state.address} ({state.server_name} {".".join(str(part) for part in state.version)})' for state in lacking)
        raise ClusterError(f'method=atomic needs Valkey 9.0 or later on every master; {names} lacks CLUSTER MIGRATESLOTS. '
                           'Nothing was changed: upgrade them, or use method=keys (or auto)')
    if requested == 'keys' or lacking:
        return 'keys'
    return 'atomic'


def ranges_text(slots: Iterable[int]) -> str:
    """The slots as the server writes a job's slot_ranges: 'start-end' pairs separated by spaces."""
    return ' '.join(f'{start}-{end}' for start, end in slots_to_ranges(sorted(slots)))


def parse_ranges_text(text: str) -> List[int]:
    return ranges_to_slots(parse_slot_ranges(text.split()))


def _entry(reply: object) -> Dict[str, str]:
    if isinstance(reply, dict):
        items = list(reply.items())
    else:
        flat = list(reply)  # RESP2: a flat list of field, value, field, value ...
        items = list(zip(flat[0::2], flat[1::2]))
    return {str(name): str(value) for name, value in items}


def migrations(client: NodeClient) -> List[Dict[str, str]]:
    """CLUSTER GETSLOTMIGRATIONS of one node: its jobs (running and recently finished), each a dict of strings."""
    return [_entry(item) for item in client.call('CLUSTER', 'GETSLOTMIGRATIONS') or []]


def in_flight(masters: Dict[str, NodeState]) -> List[Dict[str, str]]:
    """Export jobs still running on any master capable of atomic migration (a run killed part-way leaves them)."""
    running = []
    for state in masters.values():
        if not atomic_capable(state):
            continue
        for job in migrations(state.client):
            if job.get('operation') == 'EXPORT' and job.get('state') not in TERMINAL:
                running.append(dict(job, node=state.address))
    return running


class Progress:
    """When each job (by name) last showed progress: a new state or a new last_update_time in GETSLOTMIGRATIONS."""

    def __init__(self, stall_timeout: float):
        self.stall_timeout = stall_timeout
        self.marks: Dict[str, Tuple[Tuple[str, str], float]] = {}

    def stalled(self, entry: Dict[str, str]) -> bool:
        """Record the entry; whether it has shown no progress for stall_timeout seconds."""
        now = time.monotonic()
        mark = (entry.get('state', ''), entry.get('last_update_time', ''))
        previous = self.marks.get(entry['name'])
        if previous is None or previous[0] != mark:
            self.marks[entry['name']] = (mark, now)
            return False
        return now - previous[1] > self.stall_timeout


def wait_in_flight(masters: Dict[str, NodeState], stall_timeout: float) -> List[Dict[str, str]]:
    """Wait until no master runs an export job; return the jobs that were running. A job that shows no progress
    (state and last update unchanged) for stall_timeout seconds stops the wait, naming it."""
    seen: Dict[str, Dict[str, str]] = {}
    progress = Progress(stall_timeout)
    while True:
        running = in_flight(masters)
        if not running:
            return list(seen.values())
        for job in running:
            seen[job['name']] = job
            if progress.stalled(job):
                raise ClusterError(f'{job["node"]}: slot migration {job["name"]} (slots {job.get("slot_ranges")}) has been '
                                   f'{job.get("state")} for {stall_timeout:g}s without progress; cancel it with CLUSTER '
                                   'CANCELSLOTMIGRATIONS on that node, then run again')
        time.sleep(POLL_INTERVAL * 5)


@dataclass
class AtomicJob:
    source_id: str
    target_id: str
    source: str
    target: str
    slots: List[int]
    keys: int = 0
    name: Optional[str] = None
    state: str = 'pending'
    message: str = ''
    attempts: int = 0
    started: float = 0.0
    seconds: float = 0.0
    history: List[str] = field(default_factory=list)

    def report(self) -> Dict:
        return dict(source=self.source, target=self.target, slots=ranges_text(self.slots).replace(' ', ','),
                    slot_count=len(self.slots), keys=self.keys, state=self.state, attempts=self.attempts,
                    seconds=round(self.seconds, 3), **({'message': self.message} if self.message else {}),
                    **({'failures': list(self.history)} if self.history else {}))


@dataclass
class AtomicStats:
    moved_slots: int = 0
    moved_keys: int = 0
    replaced_keys: int = 0  # the keys method's BUSYKEY replacements; atomic migration has none
    jobs: List[Dict] = field(default_factory=list)


def _start(client: NodeClient, jobs: Sequence[AtomicJob]) -> None:
    """One MIGRATESLOTS on the source for all its jobs; each job learns its server-side name."""
    known = {entry['name'] for entry in migrations(client)}
    command: List = ['CLUSTER', 'MIGRATESLOTS']
    for job in jobs:
        command.append('SLOTSRANGE')
        for start, end in slots_to_ranges(sorted(job.slots)):
            command += [start, end]
        command += ['NODE', job.target_id]
    try:
        client.call(*command)
    except NodeError as exc:
        raise ClusterError(f'{client.address}: CLUSTER MIGRATESLOTS of slots {", ".join(ranges_text(job.slots) for job in jobs)} '
                           f'failed: {exc.reason}', changed=any(job.attempts for job in jobs)) from exc
    started = time.monotonic()
    fresh = [entry for entry in migrations(client) if entry['name'] not in known and entry.get('operation') == 'EXPORT']
    for job in jobs:
        wanted = sorted(job.slots)
        match = next((entry for entry in fresh if entry.get('target_node') == job.target_id
                      and sorted(parse_ranges_text(entry.get('slot_ranges', ''))) == wanted), None)
        if match is None:
            raise ClusterError(f'{client.address}: CLUSTER MIGRATESLOTS answered OK but CLUSTER GETSLOTMIGRATIONS shows no '
                               f'job for slots {ranges_text(job.slots)}', changed=True)
        # Polled from now on: a state read here may already be the end of the attempt before this one was counted.
        job.name, job.state, job.started = match['name'], 'started', started
        job.attempts += 1


def _owned_by(state_client: NodeClient, node_id: str) -> List[int]:
    """The slots `node_id` owns in the view of the node behind state_client."""
    node = read_node(state_client).view.nodes.get(node_id)
    return ranges_to_slots(node.slots) if node else []


def run_jobs(clients: Dict[str, NodeClient], jobs: Sequence[AtomicJob], stall_timeout: float) -> AtomicStats:
    """Start every job (one MIGRATESLOTS per source), follow them to the end, start a failed or cancelled job again for
    the slots its source still owns (JOB_ATTEMPTS in all); raise naming the job that kept failing."""
    by_source: Dict[str, List[AtomicJob]] = {}
    for job in jobs:
        by_source.setdefault(job.source_id, []).append(job)
    for source_id, group in by_source.items():
        _start(clients[source_id], group)
    progress = Progress(stall_timeout)
    while True:
        running = [job for job in jobs if job.state not in TERMINAL]
        if not running:
            break
        time.sleep(POLL_INTERVAL)
        for source_id in sorted({job.source_id for job in running}):
            client = clients[source_id]
            entries = {entry['name']: entry for entry in migrations(client)}
            restart: List[AtomicJob] = []
            for job in (job for job in running if job.source_id == source_id):
                entry = entries.get(job.name)
                if entry is None:
                    raise ClusterError(f'{client.address}: slot migration {job.name} (slots {ranges_text(job.slots)} to '
                                       f'{job.target}) is no longer listed by CLUSTER GETSLOTMIGRATIONS; run again', changed=True)
                job.state, job.message = entry.get('state', ''), entry.get('message', '')
                now = time.monotonic()
                if progress.stalled(entry) and job.state not in TERMINAL:
                    raise ClusterError(f'{client.address}: slot migration of {ranges_text(job.slots)} to {job.target} has been '
                                       f'{job.state} for {stall_timeout:g}s without progress; it is left running: run again to '
                                       'wait for it, or cancel it with CLUSTER CANCELSLOTMIGRATIONS on the source', changed=True)
                if job.state == 'success':
                    job.seconds = now - job.started
                elif job.state in ('failed', 'cancelled'):
                    job.history.append(f'{job.state}: {job.message}' if job.message else job.state)
                    if job.attempts >= JOB_ATTEMPTS:
                        hint = ''
                        if 'NOPERM' in job.message:
                            hint = (' The source logs in to the target as its primaryuser (the replication user), which needs '
                                    '+cluster|syncslots and the commands that rebuild keys (the redis_server role grants them on '
                                    'Valkey 9).')
                        raise ClusterError(f'{client.address}: slot migration of {ranges_text(job.slots)} to {job.target} '
                                           f'{job.state} {job.attempts} times (last: {job.message.strip() or "no message"}); slots '
                                           f'already moved stay moved: run again once the cause is fixed.{hint}', changed=True)
                    restart.append(job)
            if restart:
                time.sleep(RETRY_PAUSE)
                still_owned = set(_owned_by(client, source_id))
                again = []
                for job in restart:
                    job.slots = [slot for slot in job.slots if slot in still_owned]
                    if job.slots:
                        again.append(job)
                    else:
                        job.state = 'success'
                if again:
                    _start(client, again)
    stats = AtomicStats()
    unfinished = [job for job in jobs if job.state != 'success']
    if unfinished:
        raise ClusterError(f'slot migrations did not succeed: {", ".join(f"{job.source} -> {job.target} {job.state}" for job in unfinished)}',
                           changed=True)
    for job in jobs:
        stats.moved_slots += len(job.slots)
        stats.moved_keys += job.keys
        stats.jobs.append(job.report())
    return stats
