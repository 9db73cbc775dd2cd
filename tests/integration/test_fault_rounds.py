"""Ten faults in a row (issue 17): a random master killed (SIGKILL, then started again on its data directory) or frozen
(SIGSTOP past cluster-node-timeout, then SIGCONT), under the acknowledgement ledger. After every round the master's
replica serves its slots and the old master is back as a replica with its link up; at the end the cluster is healthy
and the acknowledged writes lost are measured and bounded.

Automatic failover under asynchronous replication may lose a write the old master acknowledged and had not sent yet
(docs/reliability.md): a killed master may take a few with it, a frozen one sends nothing after it stops, so nearly none.
"""

from __future__ import annotations

import bisect
import itertools
import os
import random
import subprocess
import time
from typing import Callable, Dict, List, Optional

import pytest
import redis
from redis.crc import key_slot

from conftest import form_cluster
from load import AckLedger
from servers import RedisServer, cluster_info, raw_command

from ansible_collections.hashslot.redis.plugins.module_utils.cluster_health import inspect_cluster
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import ConnectionOptions, NodeError, NodePool

ROUNDS = 10
# Short, so that ten failovers fit in the suite: a failover takes the node timeout plus about a second (FAIL agreed,
# then the replica's election delay of 0.5-1 s).
NODE_TIMEOUT_MS = 1000
# Bounds of each wait, far above what a round takes on a quiet machine (about 2.5 s in all), for a busy one.
PROMOTION_TIMEOUT = 20.0
REJOIN_TIMEOUT = 30.0
POLL_INTERVAL = 0.05
# What async replication may lose: a killed master takes with it the writes it acknowledged and had not yet sent to its
# replica (on loopback, at most a few per kill); a frozen master sent every write it acknowledged before it froze.
LOST_PER_KILL = 5
LOST_PER_PAUSE = 1


def wait_for(what: str, check: Callable[[], Optional[str]], timeout: float) -> float:
    """Poll `check` (None: done, else why not) until done; fail after `timeout` naming what and the last reason."""
    started = time.monotonic()
    while True:
        try:
            reason = check()
        except (redis.RedisError, NodeError, OSError) as exc:
            reason = f'{type(exc).__name__}: {exc}'
        if reason is None:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            pytest.fail(f'{what}: not after {timeout:g} s: {reason}')
        time.sleep(POLL_INTERVAL)


def health(seed: RedisServer, zones: Dict[str, str]) -> Dict:
    """redis_cluster_info's report, from the collection's engine (no ansible-playbook run: it is polled)."""
    with NodePool(ConnectionOptions(connect_timeout=2, command_timeout=5, transient_timeout=5)) as pool:
        return inspect_cluster(pool, '127.0.0.1', seed.port, zones)


def unsettled(report: Dict) -> Optional[str]:
    """Why the report is not of a settled cluster: no problem, 3 masters sharing all slots, each with one replica
    whose link is up."""
    if report['problems']:
        return f'problems: {report["problems"]}'
    masters = [node for node in report['nodes'] if node['role'] == 'master' and node['slot_count']]
    replicas = [node for node in report['nodes'] if node['role'] == 'replica']
    if len(masters) != 3 or sum(node['slot_count'] for node in masters) != 16384:
        return f'masters: {[(node["address"], node["slot_count"]) for node in masters]}'
    if sorted(node['master_id'] for node in replicas) != sorted(node['id'] for node in masters):
        return f'replicas: {[(node["address"], node["master_address"]) for node in replicas]}'
    down = [node['address'] for node in replicas if node.get('master_link_status') != 'up']
    if down:
        return f'replication link not up on {down}'
    return None


def owned_key(master: Dict) -> str:
    """A key in one of the master's slots."""
    ranges = [[int(bound) for bound in part.split('-')] for part in master['slots']]
    return next(key for key in (f'fault-rounds:{index}' for index in itertools.count())
                if any(bounds[0] <= key_slot(key.encode()) <= bounds[-1] for bounds in ranges))


def unreplicated(report: Dict, by_address: Dict[str, RedisServer]) -> Optional[str]:
    """None once every master's replica acknowledged (WAIT) a write made on the master now. A replica reports its link
    up as soon as it has loaded its full sync, but when its first REPLCONF ACK reached the master before the master saw
    its fork end, the master holds the stream back until the replica's next ACK, a second later (Redis 7.0, diskless
    sync): a master lost in that second takes with it every write it acknowledged meanwhile (232 in one run here)."""
    for master in report['nodes']:
        if master['role'] != 'master' or not master['slot_count']:
            continue
        client = by_address[master['address']].client(socket_timeout=5)
        try:
            client.set(owned_key(master), 'marker')
            if client.wait(1, 1000) < 1:
                return f'the replica of {master["address"]} has not acknowledged a write made on it'
        finally:
            client.close()
    return None


def slots_served(servers: List[RedisServer], heir: RedisServer) -> Optional[str]:
    """None once the heir is a master and every live node serves all 16384 slots."""
    if raw_command(heir, 'ROLE')[0] != 'master':
        return f'{heir.address} is still a replica'
    for server in servers:
        info = cluster_info(server)
        if info.get('cluster_state') != 'ok' or info.get('cluster_slots_ok') != '16384':
            return f'{server.address}: cluster_state:{info.get("cluster_state")} cluster_slots_ok:{info.get("cluster_slots_ok")}'
    return None


@pytest.mark.one_build
def test_ten_rounds_of_kill_or_pause_of_a_random_master_end_healthy(build, servers):
    seed = int(os.environ.get('HASHSLOT_FAULT_SEED') or random.SystemRandom().randrange(2 ** 32))
    print(f'HASHSLOT_FAULT_SEED={seed}')
    rng = random.Random(seed)
    # Half of each, in a random order: both faults are met whatever the seed.
    faults = ['kill', 'pause'] * (ROUNDS // 2)
    rng.shuffle(faults)

    cluster = form_cluster(servers, **{'cluster-node-timeout': str(NODE_TIMEOUT_MS)})
    by_address = {server.address: server for server in cluster}
    zones = {server.address: 'abc'[index % 3] for index, server in enumerate(cluster)}
    report: Dict = {}

    def settled() -> Optional[str]:
        report.update(health(cluster[0], zones))
        return unsettled(report) or unreplicated(report, by_address)

    wait_for('the new cluster to settle', settled, REJOIN_TIMEOUT)
    ledger = AckLedger([server.address for server in cluster], counters=64, max_seconds=300).start()
    ledger.wait_for_writes(250)
    # ledger.attempted when each fault was injected: a lost key is charged to the fault nearest it.
    marks: List[int] = []
    timings = []
    started = time.monotonic()
    try:
        for number, fault in enumerate(faults, 1):
            round_started = time.monotonic()
            masters = sorted((node for node in report['nodes'] if node['role'] == 'master'), key=lambda node: node['port'])
            victim_entry = rng.choice(masters)
            victim = by_address[victim_entry['address']]
            heir = next(by_address[node['address']] for node in report['nodes'] if node['master_id'] == victim_entry['id'])
            others = [server for server in cluster if server is not victim]
            where = f'seed {seed}, round {number} ({fault} of master {victim.address}, replica {heir.address})'

            marks.append(ledger.attempted)
            if fault == 'kill':
                victim.kill()
            else:
                victim.pause()
            try:
                promotion = wait_for(f'{where}: the replica serving the slots', lambda: slots_served(others, heir), PROMOTION_TIMEOUT)
            finally:
                # Frozen until its replica took over: longer than the node timeout, as the failover needs.
                if fault == 'pause':
                    victim.resume()
            if fault == 'kill':
                # nodes.conf kept: the server knows its id and learns from the others that it lost its slots.
                victim.start()

            def rejoined() -> Optional[str]:
                reason = settled()
                entry = next((node for node in report['nodes'] if node['address'] == victim.address), None)
                if reason is None and (entry is None or entry['master_address'] != heir.address):
                    reason = f'{victim.address} is not a replica of {heir.address}: {entry}'
                return reason

            rejoin = wait_for(f'{where}: the old master back as a replica, the cluster settled', rejoined, REJOIN_TIMEOUT)
            timings.append((fault, promotion, rejoin, time.monotonic() - round_started))
    finally:
        ledger.stop()
    elapsed = time.monotonic() - started

    lost = ledger.lost()
    lost_keys = sorted(int(key.rsplit(':', 1)[1]) for key in lost if key.rsplit(':', 1)[1].isdigit() and ':counter:' not in key)
    lost_counters = sorted(key for key in lost if ':counter:' in key)
    charged = {'kill': 0, 'pause': 0}
    for key_number in lost_keys:
        index = bisect.bisect_left(marks, key_number)
        candidates = [candidate for candidate in (index - 1, index) if 0 <= candidate < len(marks)]
        nearest = min(candidates, key=lambda candidate: abs(marks[candidate] - key_number))
        charged[faults[nearest]] += 1
    writes = len(ledger.acknowledged)
    for number, (fault, promotion, rejoin, took) in enumerate(timings, 1):
        print(f'round {number}: {fault:5} promoted after {promotion:.2f} s, settled {rejoin:.2f} s later, round {took:.2f} s')
    print(f'{ROUNDS} rounds in {elapsed:.1f} s ({elapsed / ROUNDS:.2f} s a round, node timeout {NODE_TIMEOUT_MS} ms); '
          f'{writes} writes and {sum(ledger.counter_acked.values())} increments acknowledged, {len(ledger.errors)} refused; '
          f'lost: {len(lost_keys)} keys ({charged["kill"]} at kills, {charged["pause"]} at pauses), {len(lost_counters)} counters; '
          f'seed {seed}')

    # The end state, as redis_cluster_info and redis-cli --cluster check see it.
    final = health(cluster[1], zones)
    assert final['healthy'] is True and final['cluster_state'] == 'ok', final['problems']
    assert unsettled(final) is None, unsettled(final)
    assert final['masters'] == 3 and final['replicas'] == 3
    check = subprocess.run([build.cli, '--cluster', 'check', cluster[0].address], capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0 and '[ERR]' not in check.stdout and '[WARNING]' not in check.stdout, check.stdout[-2000:]
    assert '[OK] All 16384 slots covered.' in check.stdout, check.stdout[-2000:]

    # The writer went on through the rounds (250 a second when the machine lets it; 3600 in all with two of these tests
    # side by side): the cluster took writes again after every failover.
    assert writes >= 100 * ROUNDS, (writes, ledger.errors[-5:])
    assert charged['kill'] <= LOST_PER_KILL * faults.count('kill'), (seed, lost_keys, marks)
    assert charged['pause'] <= LOST_PER_PAUSE * faults.count('pause'), (seed, lost_keys, marks)
    # A lost increment shows as a counter below its last acknowledged value (or an INCR answering one): as rare.
    assert len(lost_counters) <= LOST_PER_KILL * faults.count('kill') + LOST_PER_PAUSE * faults.count('pause'), {key: lost[key] for key in lost_counters}
