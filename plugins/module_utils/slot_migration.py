# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Moving slots and their keys between masters, many slots per round trip, streams in parallel.

Per batch of slots: IMPORTING on the target, MIGRATING on the source, then GETKEYSINSLOT and
MIGRATE ... KEYS pipelined across the batch until every slot is empty, then SETSLOT NODE on the
target first, the source next, the other masters last (the order redis-cli settled on so a slot
is never left without an owner). Every step tolerates having been done already, so the same
code finishes a migration that an interrupted run left open.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ansible_collections.hashslot.redis.plugins.module_utils.cluster import ClusterError
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import (
    ConnectionOptions, NodeClient, NodeError, NodePool, fanned_pipeline,
)
from ansible_collections.hashslot.redis.plugins.module_utils.reshard_plan import SlotMove

# Valkey 8 replicates SETSLOT to replicas before applying it and answers these when they are slow
# or when the node was demoted meanwhile; the command is idempotent, so it is sent again.
RETRYABLE_SETSLOT = ('NOREPLICAS', 'UNBLOCKED')
SETSLOT_RETRIES = 20
# Valkey 8 and later hold each CLUSTER SETSLOT on a primary with replicas until the replicas acknowledged it (about a
# millisecond on loopback), one command at a time per connection: a batch's SETSLOTs go out over up to SETSLOT_LANES
# connections to the node, at least SETSLOT_PER_LANE each, so that one acknowledgement releases many.
SETSLOT_LANES = 16
SETSLOT_PER_LANE = 8
MIGRATE_RETRIES = 6
# Longest rejoin delay Redis imposes on a master (cluster-node-timeout is clamped to 5 s there), with margin.
CLUSTERDOWN_WAIT = 15.0
# The source runs pipelined MIGRATEs one after the other, and each waits up to its timeout on every I/O step when the
# target has stopped answering (paused, partitioned): at most MIGRATE_WINDOW of them are sent in one round trip, first
# with a timeout of at most QUICK_MIGRATE_TIMEOUT ms. A MIGRATE that times out is followed by a PING of the target;
# only a target that answers gets the full migrate_timeout (a large key), one that does not ends the run, naming it.
MIGRATE_WINDOW = 4
QUICK_MIGRATE_TIMEOUT = 5000


@dataclass
class MigrationSettings:
    pipeline: int = 1000
    parallel: int = 4
    migrate_timeout: int = 60000
    replace: bool = False
    slot_batch: int = 128


@dataclass
class NodeEndpoint:
    node_id: str
    host: str
    port: int

    @property
    def address(self) -> str:
        return f'[{self.host}]:{self.port}' if ':' in self.host else f'{self.host}:{self.port}'


@dataclass
class MigrationStats:
    moved_slots: int = 0
    moved_keys: int = 0
    replaced_keys: int = 0
    migrate_calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, slots: int = 0, keys: int = 0, replaced: int = 0, calls: int = 0) -> None:
        with self.lock:
            self.moved_slots += slots
            self.moved_keys += keys
            self.replaced_keys += replaced
            self.migrate_calls += calls


def _error_text(reply: object) -> str:
    return str(reply)


class StreamMigrator:
    """One source -> target stream, on its own connections (one thread each)."""

    def __init__(self, options: ConnectionOptions, source: NodeEndpoint, target: NodeEndpoint, masters: Sequence[NodeEndpoint],
                 settings: MigrationSettings, stats: MigrationStats):
        self.options = options
        self.pool = NodePool(options)
        # Extra connections for SETSLOT batches (fanned_pipeline), opened when first needed.
        self.lane_pools = [NodePool(options) for dummy in range(SETSLOT_LANES - 1)]
        self.source = source
        self.target = target
        self.others = [master for master in masters if master.node_id not in (source.node_id, target.node_id)]
        self.settings = settings
        self.stats = stats

    def client(self, endpoint: NodeEndpoint) -> NodeClient:
        return self.pool.get(endpoint.host, endpoint.port)

    def lanes(self, endpoint: NodeEndpoint, commands: int) -> List[NodeClient]:
        """Connections to one node for a batch of `commands` SETSLOTs: the main one, plus lanes as the batch needs."""
        count = max(1, min(SETSLOT_LANES, commands // SETSLOT_PER_LANE))
        return [self.client(endpoint)] + [pool.get(endpoint.host, endpoint.port) for pool in self.lane_pools[:count - 1]]

    def drop(self, endpoint: NodeEndpoint) -> None:
        for pool in [self.pool] + self.lane_pools:
            pool.drop(endpoint.address)

    def close(self) -> None:
        for pool in [self.pool] + self.lane_pools:
            pool.close()

    def _setslot(self, endpoint: NodeEndpoint, slots: Sequence[int], words: Callable[[int], Tuple], tolerate: Sequence[str] = ()) -> None:
        """SETSLOT for many slots in one round trip (over several connections: see SETSLOT_LANES); retry what Valkey
        asks to retry, accept `tolerate`."""
        pending = list(slots)
        for attempt in range(SETSLOT_RETRIES):
            try:
                commands = [('CLUSTER', 'SETSLOT', slot, *words(slot)) for slot in pending]
                replies = fanned_pipeline(self.lanes(endpoint, len(commands)), commands)
            except NodeError as exc:
                # UNBLOCKED closes the connection; reconnect and send again. A node that does not answer at all (paused,
                # partitioned) is not waited for again: the run ends naming it, within command_timeout.
                self.drop(endpoint)
                if attempt + 1 == SETSLOT_RETRIES or exc.timed_out:
                    raise ClusterError(f'{endpoint.address}: CLUSTER SETSLOT failed: {exc}', changed=True) from exc
                time.sleep(0.05)
                continue
            retry = []
            for slot, reply in zip(pending, replies):
                if not isinstance(reply, Exception):
                    continue
                text = _error_text(reply)
                if any(marker in text for marker in RETRYABLE_SETSLOT):
                    retry.append(slot)
                elif not any(marker in text for marker in tolerate):
                    raise ClusterError(f'{endpoint.address}: CLUSTER SETSLOT {slot} {" ".join(str(word) for word in words(slot))} failed: {text}', changed=True)
            if not retry:
                return
            pending = retry
            time.sleep(0.05)
        raise ClusterError(f'{endpoint.address}: CLUSTER SETSLOT kept answering {RETRYABLE_SETSLOT} for slots {pending[:5]}', changed=True)

    def _migrate_command(self, keys: Sequence[bytes], replace: bool, timeout: int) -> Tuple:
        command: List = ['MIGRATE', self.target.host, self.target.port, '', 0, timeout]
        if replace:
            command.append('REPLACE')
        if self.options.login_password:
            if self.options.login_user:
                command += ['AUTH2', self.options.login_user, self.options.login_password]
            else:
                command += ['AUTH', self.options.login_password]
        command.append('KEYS')
        command.extend(keys)
        return tuple(command)

    def _resolve_busy_keys(self, slot: int, keys: Sequence[bytes]) -> List[bytes]:
        """Keys already on the target (a MIGRATE cut short copies without deleting): equal values may be replaced."""
        source_dumps = self.client(self.source).pipeline([('DUMP', key) for key in keys], decode=False)
        target_commands: List[Tuple] = []
        for key in keys:
            target_commands += [('ASKING',), ('DUMP', key)]
        target_replies = self.client(self.target).pipeline(target_commands, decode=False)[1::2]
        conflicts = []
        for key, mine, theirs in zip(keys, source_dumps, target_replies):
            if isinstance(mine, Exception) or isinstance(theirs, Exception):
                raise ClusterError(f'slot {slot}: cannot compare key {key!r} on {self.source.address} and {self.target.address}: '
                                   f'{mine or theirs}', changed=True)
            if theirs is not None and mine is not None and mine != theirs:
                conflicts.append(key)
        if conflicts and not self.settings.replace:
            names = ', '.join(repr(key.decode('utf-8', 'replace')) for key in conflicts[:5])
            raise ClusterError(
                f'slot {slot}: {len(conflicts)} key(s) exist on both {self.source.address} and {self.target.address} with different values '
                f'({names}); the migration stopped with the slot open. Inspect them, then run again with replace: true to keep the '
                f"source's values", changed=True)
        return list(keys)

    def _target_silent(self) -> Optional[str]:
        """Why the target does not answer a PING within connect_timeout, or None when it answers (a transient refusal,
        LOADING or BUSY, is an answer: the node is alive)."""
        options = dataclasses.replace(self.options, command_timeout=self.options.connect_timeout, transient_timeout=0.0)
        probe = NodeClient(self.target.host, self.target.port, options)
        try:
            probe.connect()
            probe.call('PING')
            return None
        except NodeError as exc:
            return None if exc.state else exc.reason
        finally:
            probe.close()

    def _migrate_window(self, source: NodeClient, work: Sequence[Tuple[int, Sequence[bytes]]], replace: Dict[int, bool],
                        timeout: Dict[int, int]) -> List:
        """MIGRATE for each (slot, keys), MIGRATE_WINDOW at a time; the source's read timeout covers the three I/O steps
        of the longest."""
        replies: List = []
        for start in range(0, len(work), MIGRATE_WINDOW):
            window = work[start:start + MIGRATE_WINDOW]
            source.set_timeout(max(timeout[slot] for slot, dummy in window) / 1000.0 * 3 + 10)
            replies += source.pipeline([self._migrate_command(keys, replace[slot], timeout[slot]) for slot, keys in window])
        return replies

    def move_keys(self, slots: Sequence[int]) -> None:
        batch = {slot: self.settings.pipeline for slot in slots}
        timeout = {slot: min(self.settings.migrate_timeout, QUICK_MIGRATE_TIMEOUT) for slot in slots}
        replace = {slot: False for slot in slots}
        failures = {slot: 0 for slot in slots}
        source = self.client(self.source)
        pending = list(slots)
        clusterdown_deadline = time.monotonic() + CLUSTERDOWN_WAIT
        while pending:
            key_lists = source.pipeline([('CLUSTER', 'GETKEYSINSLOT', slot, batch[slot]) for slot in pending], decode=False)
            work = []
            for slot, keys in zip(pending, key_lists):
                if isinstance(keys, Exception):
                    raise ClusterError(f'{self.source.address}: CLUSTER GETKEYSINSLOT {slot} failed: {keys}', changed=True)
                if keys:
                    work.append((slot, keys))
            if not work:
                return
            replies = self._migrate_window(source, work, replace, timeout)
            self.stats.add(calls=len(work))
            pending = []
            for (slot, keys), reply in zip(work, replies):
                pending.append(slot)
                if not isinstance(reply, Exception):
                    self.stats.add(keys=len(keys) if reply == 'OK' else 0, replaced=len(keys) if replace[slot] else 0)
                    replace[slot] = False
                    continue
                text = _error_text(reply)
                if 'CLUSTERDOWN' in text and time.monotonic() < clusterdown_deadline:
                    # The target is inside its rejoin delay (a master just added) and refuses keys for a few seconds.
                    time.sleep(0.05)
                elif 'BUSYKEY' in text:
                    self._resolve_busy_keys(slot, keys)
                    replace[slot] = True
                elif 'IOERR' in text or 'timeout' in text.lower():
                    silent = self._target_silent()
                    if silent:
                        raise ClusterError(f'{self.target.address}: stopped answering during MIGRATE of slot {slot} from {self.source.address} '
                                           f'({text}; PING: {silent}); slot {slot} is left open: run again once the node answers, or once '
                                           'its replica has taken over (after cluster-node-timeout)', changed=True)
                    # A large key: fewer keys per MIGRATE and more time for each I/O step.
                    if timeout[slot] < self.settings.migrate_timeout:
                        timeout[slot] = self.settings.migrate_timeout
                    else:
                        failures[slot] += 1
                        if failures[slot] > MIGRATE_RETRIES:
                            raise ClusterError(f'{self.source.address}: MIGRATE of slot {slot} to {self.target.address} keeps failing: {text}; '
                                               'raise migrate_timeout', changed=True)
                        timeout[slot] = timeout[slot] * 2
                    batch[slot] = max(1, batch[slot] // 10)
                else:
                    raise ClusterError(f'{self.source.address}: MIGRATE of slot {slot} to {self.target.address} failed: {text}', changed=True)

    def run(self, slots: Sequence[int]) -> None:
        step = max(1, self.settings.slot_batch)
        for start in range(0, len(slots), step):
            chunk = list(slots[start:start + step])
            # Target first: once the source says MIGRATING, clients are sent to the target with ASK.
            self._setslot(self.target, chunk, lambda slot: ('IMPORTING', self.source.node_id), tolerate=("I'm already the owner",))
            self._setslot(self.source, chunk, lambda slot: ('MIGRATING', self.target.node_id), tolerate=("I'm not the owner",))
            self.move_keys(chunk)
            self._setslot(self.target, chunk, lambda slot: ('NODE', self.target.node_id))
            self._setslot(self.source, chunk, lambda slot: ('NODE', self.target.node_id),
                          tolerate=('only with masters', 'only with primaries'))
            self.stats.add(slots=len(chunk))
        # The other masters learn the new owner from the target's pong broadcast (it bumps its epoch);
        # telling them directly, once per stream, only saves them a gossip round.
        for other in self.others:
            try:
                self._setslot(other, slots, lambda slot: ('NODE', self.target.node_id))
            except (ClusterError, NodeError):
                continue


def run_moves(options: ConnectionOptions, moves: Sequence[SlotMove], endpoints: Dict[str, NodeEndpoint], settings: MigrationSettings) -> MigrationStats:
    """Run every move; streams (source, target) in parallel up to settings.parallel."""
    stats = MigrationStats()
    masters = list(endpoints.values())
    errors: List[BaseException] = []

    def stream(move: SlotMove) -> None:
        migrator = StreamMigrator(options, endpoints[move.source], endpoints[move.target], masters, settings, stats)
        try:
            migrator.run(move.slots)
        except BaseException as exc:  # reported after every stream stopped
            errors.append(exc)
        finally:
            migrator.close()

    with ThreadPoolExecutor(max_workers=max(1, settings.parallel)) as executor:
        list(executor.map(stream, moves))
    if errors:
        first = errors[0]
        if isinstance(first, (ClusterError, NodeError)):
            raise ClusterError(str(first), changed=True) from first
        raise first
    return stats


def endpoint_map(nodes: Sequence[Tuple[str, str, int]]) -> Dict[str, NodeEndpoint]:
    return {node_id: NodeEndpoint(node_id, host, port) for node_id, host, port in nodes}
