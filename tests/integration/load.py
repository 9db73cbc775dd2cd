"""A cluster-aware writer that records every acknowledged write, to prove none is lost."""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import redis
from redis.cluster import ClusterNode, RedisCluster


class AckLedger:
    """Writes ledger:<n> = n in a loop; a write counts only once the cluster acknowledged it.

    Bounded: stops by itself after `max_writes` writes or `max_seconds`, whichever comes first. Paced at `rate` writes
    a second (None: as fast as it can): 250 a second put dozens of writes into the slots a reshard or a failover is
    moving, and leave the machine's cores to the operation under test. A writer costs CPU for as long as it runs and
    every key it writes is one more for a reshard to move: on a busy machine a faster one slows the operation it
    watches, which then runs longer under it.
    """

    def __init__(self, addresses: List[str], max_writes: int = 200000, max_seconds: float = 120.0, prefix: str = 'ledger',
                 password: Optional[str] = None, rate: Optional[float] = 250.0, counters: int = 0,
                 client_options: Optional[Dict[str, Any]] = None):
        self.startup = [ClusterNode(*address.rsplit(':', 1)) for address in addresses]
        # How the writer logs in beyond a password: an ACL user, TLS with a client certificate (redis-py's options).
        self.client_options = dict(client_options or {})
        self.max_writes = max_writes
        self.max_seconds = max_seconds
        self.prefix = prefix
        self.password = password
        self.rate = rate
        self.acknowledged: Dict[str, str] = {}
        # Besides the unique keys, `counters` counters spread over the slots (redis-rb-cluster's consistency test): each
        # write is followed by an INCR of one of them. A lost update shows as a counter below its last acknowledged
        # value, read back at the end or answered by a later INCR (`regressions`).
        self.counter_keys = [f'{prefix}:counter:{index}' for index in range(counters)]
        self.counter_acked: Dict[str, int] = {key: 0 for key in self.counter_keys}
        self.counter_tried: Dict[str, int] = {key: 0 for key in self.counter_keys}
        self.regressions: List[Tuple[str, str]] = []
        # Writes tried so far: keys <prefix>:0 .. <prefix>:attempted-1 (a failed one may still have landed).
        self.attempted = 0
        self.errors: List[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='ack-ledger', daemon=True)

    def _client(self) -> RedisCluster:
        return RedisCluster(startup_nodes=self.startup, password=self.password, decode_responses=True, socket_timeout=2, socket_connect_timeout=2,
                            **self.client_options)

    def _run(self) -> None:
        client = self._client()
        started = time.monotonic()
        deadline = started + self.max_seconds
        number = 0
        while not self._stop.is_set() and number < self.max_writes and time.monotonic() < deadline:
            if self.rate:
                ahead = started + number / self.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            key = f'{self.prefix}:{number}'
            try:
                client.set(key, str(number))
            except redis.RedisError as exc:
                # Not acknowledged: the writer may retry later keys, this one simply does not count.
                self.errors.append(f'{key}: {type(exc).__name__}: {exc}')
                time.sleep(0.01)
            except (AttributeError, KeyError, TypeError) as exc:
                # redis-py's cluster client can trip over its own slot cache while the topology changes;
                # the write is not acknowledged and a fresh client carries on.
                self.errors.append(f'{key}: client error {type(exc).__name__}: {exc}')
                client.close()
                client = self._client()
                time.sleep(0.01)
            else:
                self.acknowledged[key] = str(number)
            if self.counter_keys:
                self._increment(client, self.counter_keys[number % len(self.counter_keys)])
            number += 1
            self.attempted = number
        client.close()

    def _increment(self, client: RedisCluster, counter: str) -> None:
        self.counter_tried[counter] += 1
        try:
            value = int(client.incr(counter))
        except (redis.RedisError, AttributeError, KeyError, TypeError) as exc:
            self.errors.append(f'{counter}: INCR: {type(exc).__name__}: {exc}')
            return
        # A value at or below the last acknowledged one: an acknowledged increment was lost.
        if value <= self.counter_acked[counter]:
            self.regressions.append((counter, f'INCR answered {value} after {self.counter_acked[counter]} was acknowledged'))
        self.counter_acked[counter] = max(value, self.counter_acked[counter])

    @property
    def keys_written(self) -> int:
        """Keys the ledger put in the cluster: its acknowledged keys and its counters (made at start)."""
        return len(self.acknowledged) + len(self.counter_keys)

    def start(self) -> 'AckLedger':
        if self.counter_keys:
            client = self._client()
            for counter in self.counter_keys:
                client.set(counter, 0)
            client.close()
        self._thread.start()
        return self

    def wait_for_writes(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < count and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def lost(self) -> Dict[str, object]:
        """Acknowledged keys whose value is not readable afterwards, counters read below their last acknowledged value
        (or above every increment tried), and regressions seen while writing."""
        client = self._client()
        missing: Dict[str, object] = {}
        for counter in self.counter_keys:
            value = int(client.get(counter) or 0)
            if not self.counter_acked[counter] <= value <= self.counter_tried[counter]:
                missing[counter] = f'{value}, acknowledged {self.counter_acked[counter]} of {self.counter_tried[counter]} tried'
        for counter, regression in self.regressions:
            missing[f'{counter} (while writing)'] = regression
        keys = list(self.acknowledged)
        for start in range(0, len(keys), 500):
            batch = keys[start:start + 500]
            pipe = client.pipeline()
            for key in batch:
                pipe.get(key)
            for key, value in zip(batch, pipe.execute()):
                if value != self.acknowledged[key]:
                    missing[key] = value
        client.close()
        return missing
