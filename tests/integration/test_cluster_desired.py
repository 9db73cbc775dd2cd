"""redis_cluster: forming, growing and shrinking by description; the same layout from every state a run can stop in."""

from __future__ import annotations

import threading
import time
from typing import Dict, List, Tuple

import pytest

from load import AckLedger
from playbook import run_module, run_tasks
from servers import RedisServer, cluster_nodes_snapshot, raw_command

ZONES = 'abcd'


def describe(nodes: List[RedisServer]) -> List[Dict]:
    return [dict(node.node, zone=ZONES[index % len(ZONES)]) for index, node in enumerate(nodes)]


def layout(nodes: List[RedisServer]) -> Tuple:
    """Masters, replica -> master and slot counts, by position in `nodes` (ports differ between clusters)."""
    index_of = {raw_command(node, 'CLUSTER', 'MYID'): position for position, node in enumerate(nodes)}
    view = raw_command(nodes[0], 'CLUSTER', 'NODES').splitlines()
    masters, replicas, counts = [], {}, {}
    for line in view:
        fields = line.split()
        if fields[0] not in index_of:
            continue
        position = index_of[fields[0]]
        if 'slave' in fields[2]:
            replicas[position] = index_of[fields[3]]
        else:
            masters.append(position)
            counts[position] = sum(int(item.partition('-')[2] or item) - int(item.partition('-')[0]) + 1
                                   for item in fields[8:] if not item.startswith('['))
    return tuple(sorted(masters)), tuple(sorted(replicas.items())), counts


def planned_layout(nodes: List[RedisServer], text: str) -> Tuple:
    """Masters and replica -> master by position, from the diff of the plan made before the run started."""
    position = {node.address: index for index, node in enumerate(nodes)}
    masters, replicas = [], {}
    for line in text.splitlines():
        fields = line.split()
        if fields[1] == 'master':
            masters.append(position[fields[0]])
        else:
            replicas[position[fields[0]]] = position[fields[3]]
    return tuple(sorted(masters)), tuple(sorted(replicas.items()))


def converge(nodes: List[RedisServer], check: bool = False, **params):
    return run_module('redis_cluster', check=check, diff=True, nodes=describe(nodes), wait_timeout=60, **params)


def meet(joining: List[RedisServer], seed: RedisServer, everyone: List[RedisServer]) -> None:
    for node in joining:
        raw_command(node, 'CLUSTER', 'MEET', '127.0.0.1', seed.port)
    ids = {raw_command(node, 'CLUSTER', 'MYID') for node in everyone}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(ids <= {line.split()[0] for line in raw_command(node, 'CLUSTER', 'NODES').splitlines() if 'handshake' not in line}
               for node in everyone):
            return
        time.sleep(0.05)
    raise AssertionError('the nodes did not meet')


def by_address(nodes: List[RedisServer], address: str) -> RedisServer:
    return next(node for node in nodes if node.address == address)


def test_forms_grows_and_is_idempotent(first_build_servers):
    servers = first_build_servers
    """Empty nodes formed; a second run changes nothing; check mode plans and writes nothing."""
    nodes = servers.start(6)
    planned = converge(nodes, check=True)
    assert planned['changed'] is True and planned['steps'][0]['step'] == 'create', planned
    assert all(len(raw_command(node, 'CLUSTER', 'NODES').splitlines()) == 1 for node in nodes)
    formed = converge(nodes)
    assert not formed.get('failed'), formed
    masters, replicas, counts = layout(nodes)
    assert len(masters) == 3 and len(replicas) == 3 and sum(counts.values()) == 16384
    again = converge(nodes)
    assert again['changed'] is False and again['steps'] == [], again


def _owned(node: RedisServer) -> int:
    for line in raw_command(node, 'CLUSTER', 'NODES').splitlines():
        if 'myself' in line:
            return sum(int(item.partition('-')[2] or item) - int(item.partition('-')[0]) + 1
                       for item in line.split()[8:] if not item.startswith('['))
    return 0


class ReplicaMover(threading.Thread):
    """What Redis and Valkey may do while slots move (replica migration, a replica following a claimant of its
    master's slots): while the new master owns its first slots, `replica` is sent to `elsewhere`. Bounded: it gives up
    after 60 s."""

    def __init__(self, master: RedisServer, replica: RedisServer, elsewhere: RedisServer):
        super().__init__(daemon=True)
        self.master, self.replica, self.elsewhere = master, replica, elsewhere
        self.moved_at = None
        self.halt = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while not self.halt.is_set() and time.monotonic() < deadline:
            owned = _owned(self.master)
            if 0 < owned < 2048:
                raw_command(self.replica, 'CLUSTER', 'REPLICATE', raw_command(self.elsewhere, 'CLUSTER', 'MYID'))
                self.moved_at = owned
                return
            time.sleep(0.005)


@pytest.mark.parametrize('stop', ['uninterrupted', 'first master joined', 'some replicas', 'mid-rebalance'])
def test_scale_out_from_every_stop_gives_the_same_layout(first_build_servers, stop):
    """A cluster of 6 grows to 8 (a new shard); the run is stopped (the state made by hand) at each step boundary, the
    next run completes it: the layout is the one planned before the run started, and no acknowledged write is lost.
    ('some replicas' has every new node met, so it is also the stop after the masters joined.) The uninterrupted run
    has a replica moved to another master while the new master owns its first slots, as Redis and Valkey may move
    one: the run puts it back and says so."""
    nodes = first_build_servers.start(8)
    formed = converge(nodes[:6])
    assert not formed.get('failed'), formed
    plan = converge(nodes, check=True)
    joins = [by_address(nodes, step['node']) for step in plan['steps'] if step['step'] == 'join']
    new_masters = [by_address(nodes, step['node']) for step in plan['steps'] if step['step'] == 'join' and step['role'] == 'master']
    assert len(joins) == 2 and len(new_masters) == 1, plan['steps']
    ledger = AckLedger([node.address for node in nodes[:6]], counters=16).start()
    ledger.wait_for_writes(200)
    if stop == 'first master joined':
        meet(new_masters[:1], nodes[0], nodes[:6] + new_masters[:1])
    elif stop != 'uninterrupted':
        meet(joins, nodes[0], nodes)
        if stop in ('some replicas', 'mid-rebalance'):
            pair = next(step for step in plan['steps'] if step['step'] == 'replicate')
            raw_command(by_address(nodes, pair['node']), 'CLUSTER', 'REPLICATE', raw_command(by_address(nodes, pair['master']), 'CLUSTER', 'MYID'))
        if stop == 'mid-rebalance':
            moved = run_module('redis_cluster_reshard', node=nodes[0].node, action='move', slots=['0-299'], target=new_masters[0].node)
            assert not moved.get('failed'), moved
            # and one slot left open half-way, as a killed migration leaves it
            source = next(node for node in nodes[:6] if _owns(node, 300))
            target_id = raw_command(new_masters[0], 'CLUSTER', 'MYID')
            raw_command(new_masters[0], 'CLUSTER', 'SETSLOT', 300, 'IMPORTING', raw_command(source, 'CLUSTER', 'MYID'))
            raw_command(source, 'CLUSTER', 'SETSLOT', 300, 'MIGRATING', target_id)
    mover = None
    if stop == 'uninterrupted':
        # An old replica, sent to an old master that is not its own.
        replica = next(node for node in nodes[:6] if not _owned(node))
        own = next(line.split()[3] for line in raw_command(replica, 'CLUSTER', 'NODES').splitlines() if 'myself' in line)
        elsewhere = next(node for node in nodes[:6] if _owned(node) and raw_command(node, 'CLUSTER', 'MYID') != own)
        mover = ReplicaMover(new_masters[0], replica, elsewhere)
        mover.start()
    result = converge(nodes)
    if mover is not None:
        mover.halt.set()
        mover.join()
    again = converge(nodes)
    ledger.stop()
    assert not result.get('failed'), result
    if mover is not None:
        assert mover.moved_at is not None, 'the rebalance ended before the replica could be moved: it must be slower'
        assert any('the cluster moved it' in warning for warning in result['warnings']), result['warnings']
    assert again['changed'] is False, again['steps']
    assert ledger.lost() == {}
    assert (layout(nodes)[:2]) == planned_layout(nodes, plan['diff']['after']), stop
    assert sorted(layout(nodes)[2].values()) == [4096] * 4


def _owns(node: RedisServer, slot: int) -> bool:
    for line in raw_command(node, 'CLUSTER', 'NODES').splitlines():
        if 'myself' in line:
            for item in line.split()[8:]:
                start, dummy, end = item.partition('-')
                if not item.startswith('[') and int(start) <= slot <= int(end or start):
                    return True
    return False


def test_scale_in_mid_drain_completes_and_refuses_bad_input(first_build_servers):
    """8 nodes shrink to 6: a master and its replica leave. Cut short mid-drain (some slots moved, one slot open), the
    next run completes it; bad descriptions fail naming the node and change nothing."""
    nodes = first_build_servers.start(8)
    formed = converge(nodes)
    assert not formed.get('failed'), formed
    masters, replicas, dummy = layout(nodes)
    leaving_master = nodes[masters[-1]]
    leaving_replica = nodes[next(replica for replica, master in replicas if master == masters[-1])]
    staying = [node for node in nodes if node not in (leaving_master, leaving_replica)]
    before = cluster_nodes_snapshot(nodes)
    two_shards = [nodes[position] for position in masters[:2]] + [nodes[replica] for replica, master in replicas if master in masters[:2]]
    refused = run_tasks([
        {'hashslot.redis.redis_cluster': {'nodes': describe(two_shards), 'remove': [node.address for node in nodes if node not in two_shards]}},
        {'hashslot.redis.redis_cluster': {'nodes': describe(nodes) + [{'host': '127.0.0.1', 'port': 1}]}},
        {'hashslot.redis.redis_cluster': {'nodes': describe(nodes), 'remove': [nodes[0].address]}},
    ]).results
    assert refused[0].get('failed') and 'at least 3' in refused[0]['msg'], refused[0]
    assert refused[1].get('failed') and '127.0.0.1:1' in refused[1]['msg'], refused[1]
    assert refused[2].get('failed') and nodes[0].address in refused[2]['msg'], refused[2]
    assert cluster_nodes_snapshot(nodes) == before

    ledger = AckLedger([node.address for node in staying], counters=16).start()
    ledger.wait_for_writes(200)
    first = nodes[masters[0]]
    part = [f'{start}-{start + 199}' for start in [_first_slot(leaving_master)]]
    moved = run_module('redis_cluster_reshard', node=first.node, action='move', slots=part, target=first.node)
    assert not moved.get('failed'), moved
    open_slot = _first_slot(leaving_master)
    raw_command(first, 'CLUSTER', 'SETSLOT', open_slot, 'IMPORTING', raw_command(leaving_master, 'CLUSTER', 'MYID'))
    raw_command(leaving_master, 'CLUSTER', 'SETSLOT', open_slot, 'MIGRATING', raw_command(first, 'CLUSTER', 'MYID'))
    result = converge(staying, remove=[leaving_master.address, leaving_replica.address])
    again = converge(staying, remove=[leaving_master.address, leaving_replica.address])
    ledger.stop()
    assert not result.get('failed'), result
    assert again['changed'] is False, again['steps']
    assert ledger.lost() == {}
    masters, replicas, counts = layout(staying)
    assert len(masters) == 3 and len(replicas) == 3 and sum(counts.values()) == 16384
    assert max(counts.values()) - min(counts.values()) <= 1
    for node in (leaving_master, leaving_replica):
        assert len(raw_command(node, 'CLUSTER', 'NODES').splitlines()) == 1


def _first_slot(node: RedisServer) -> int:
    for line in raw_command(node, 'CLUSTER', 'NODES').splitlines():
        if 'myself' in line:
            return int(next(item for item in line.split()[8:] if not item.startswith('[')).partition('-')[0])
    raise AssertionError(f'{node.address} owns no slot')


@pytest.mark.atomic_migration
def test_scale_out_on_valkey9_moves_the_slots_atomically(build, servers):
    """On Valkey 9 the new master's share moves by atomic slot migration, under the ledger, to the planned layout."""
    nodes = servers.start(8)
    formed = converge(nodes[:6])
    assert not formed.get('failed'), formed
    plan = converge(nodes, check=True)
    ledger = AckLedger([node.address for node in nodes[:6]], counters=16).start()
    ledger.wait_for_writes(200)
    result = converge(nodes)
    ledger.stop()
    assert not result.get('failed'), result
    assert result['method'] == 'atomic' and result['moved_slots'] == 4096, result
    assert ledger.lost() == {}
    assert layout(nodes)[:2] == planned_layout(nodes, plan['diff']['after'])
