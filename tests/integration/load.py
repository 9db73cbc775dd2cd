"""A cluster-aware writer that records every acknowledged write, to prove none is lost."""

from __future__ import annotations

import threading
import time
from typing import Dict, List, Optional

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
                 password: Optional[str] = None, rate: Optional[float] = 250.0):
        self.startup = [ClusterNode(*address.rsplit(':', 1)) for address in addresses]
        self.max_writes = max_writes
        self.max_seconds = max_seconds
        self.prefix = prefix
        self.password = password
        self.rate = rate
        self.acknowledged: Dict[str, str] = {}
        # Writes tried so far: keys <prefix>:0 .. <prefix>:attempted-1 (a failed one may still have landed).
        self.attempted = 0
        self.errors: List[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='ack-ledger', daemon=True)

    def _client(self) -> RedisCluster:
        return RedisCluster(startup_nodes=self.startup, password=self.password, decode_responses=True, socket_timeout=2, socket_connect_timeout=2)

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
            number += 1
            self.attempted = number
        client.close()

    def start(self) -> 'AckLedger':
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
        """Acknowledged keys whose value is not readable afterwards."""
        client = self._client()
        missing: Dict[str, object] = {}
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
