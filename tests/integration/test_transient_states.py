"""Transient node states are waited out within transient_timeout, then fail naming the node and the state.

Each state is made on purpose: a replica restarted with a data set it loads slowly (LOADING, as after a restart or a
full resynchronisation; key-load-delay stretches the load), a master running a long script (BUSY) and a master in
DEBUG SLEEP (no answer at all). The behaviour is the modules' own, not the server's: one build proves it.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis
from redis.crc import key_slot

from conftest import form_cluster
from playbook import run_tasks
from servers import raw_command

pytestmark = pytest.mark.one_build

LOADED_KEYS = 40000
# Microseconds per key while loading: 40,000 keys take about 12 s, short enough to wait out. While a module must meet
# the state whatever the machine's load, the test holds the load with a longer delay (the server reads it at each key).
KEY_LOAD_DELAY = '300'


def roles(cluster):
    """(master, replica of it, another replica) among the servers."""
    by_id = {raw_command(server, 'CLUSTER', 'MYID'): server for server in cluster}
    masters, replicas = {}, []
    for line in raw_command(cluster[0], 'CLUSTER', 'NODES').splitlines():
        fields = line.split()
        if 'master' in fields[2]:
            masters[fields[0]] = by_id[fields[0]]
        else:
            replicas.append((by_id[fields[0]], fields[3]))
    replica, master_id = replicas[0]
    return masters[master_id], replica, replicas[1][0]


def fill_master(master, count: int) -> None:
    """`count` keys in one slot the master owns, replicated to its replica before this returns."""
    slots = set()
    for line in raw_command(master, 'CLUSTER', 'NODES').splitlines():
        if 'myself' in line:
            for part in line.split()[8:]:
                low, dummy, high = part.partition('-')
                slots.update(range(int(low), int(high or low) + 1))
    tag = next(f'tag{index}' for index in range(100000) if key_slot(f'tag{index}'.encode()) in slots)
    client = master.client()
    for start in range(0, count, 5000):
        pipe = client.pipeline(transaction=False)
        for index in range(start, min(start + 5000, count)):
            pipe.set(f'{{{tag}}}:{index}', 'x' * 20)
        pipe.execute()
    assert client.wait(1, 10000) == 1


def restart_loading(replica) -> None:
    """Save, stop and start the replica so that it loads LOADED_KEYS keys slowly; returns while it answers LOADING."""
    raw_command(replica, 'SAVE')
    replica.stop()
    replica.extra['key-load-delay'] = KEY_LOAD_DELAY
    # A small data set is loaded between two event-loop turns unless this is small too: the node would answer nothing.
    replica.extra['loading-process-events-interval-bytes'] = '4096'
    replica.start(wait_ready=False)
    with pytest.raises(redis.exceptions.BusyLoadingError):
        raw_command(replica, 'DBSIZE')


def loading(replica) -> bool:
    try:
        raw_command(replica, 'DBSIZE')
        return False
    except redis.exceptions.BusyLoadingError:
        return True


def test_loading_member_is_waited_out(cluster, servers):
    master, loading_replica, other_replica = roles(cluster)
    fill_master(master, LOADED_KEYS)
    restart_loading(loading_replica)

    # A bound shorter than the load: the module fails naming the loading node and its state, having changed nothing.
    # The load is held meanwhile (3 ms a key: the whole load would take 2 minutes).
    raw_command(loading_replica, 'CONFIG', 'SET', 'key-load-delay', '3000')
    refused = run_tasks([{'hashslot.redis.redis_cluster_node': dict(cluster=master.node, node=other_replica.node, state='absent',
                                                                    transient_timeout=1)}]).result(0)
    assert loading(loading_replica)
    raw_command(loading_replica, 'CONFIG', 'SET', 'key-load-delay', KEY_LOAD_DELAY)
    assert refused.get('failed') and loading_replica.address in refused['msg'] and 'loading its data set' in refused['msg'], refused
    other_id = raw_command(other_replica, 'CLUSTER', 'MYID')
    assert other_id in raw_command(master, 'CLUSTER', 'NODES')

    # The default bound: removing another node while a member loads (what scale_in.yml met) waits, then succeeds.
    assert loading(loading_replica)
    run = run_tasks([
        {'hashslot.redis.redis_cluster_node': dict(cluster=master.node, node=other_replica.node, state='absent')},
        {'hashslot.redis.redis_cluster_info': dict(node=master.node)},
    ])
    removed, report = run.result(0), run.result(1)
    assert not removed.get('failed'), removed
    assert removed['changed'] is True
    assert other_id not in raw_command(master, 'CLUSTER', 'NODES')
    assert not report.get('failed'), report
    assert int(raw_command(loading_replica, 'DBSIZE')) == LOADED_KEYS
    assert loading_replica.address in {node['address'] for node in report['nodes']}
    assert not [problem for problem in report['problems'] if problem['kind'] == 'node_unreachable'], report['problems']


def blocked_for(master, seconds: float, command) -> threading.Thread:
    """Run a blocking command on the master in a thread; returns once the master has stopped answering others."""
    def block():
        client = master.client(socket_timeout=seconds + 30)
        command(client)

    thread = threading.Thread(target=block, daemon=True)
    thread.start()
    time.sleep(0.5)
    return thread


def script_until_killed(client, script: str) -> None:
    try:
        client.eval(script, 0)
    except redis.exceptions.ResponseError as error:
        assert 'killed' in str(error).lower(), error


def real_problems(report):
    # Every node of a loopback cluster is on one host: replicas always share their master's failure domain.
    return [problem for problem in report['problems'] if problem['kind'] != 'replica_same_domain']


def test_busy_and_sleeping_masters_are_waited_out(servers):
    cluster = form_cluster(servers, **{'enable-debug-command': 'local', 'busy-reply-threshold': '100', 'cluster-node-timeout': '15000'})
    master, dummy, dummy2 = roles(cluster)
    spin = "local t = redis.call('TIME')[1] while tonumber(redis.call('TIME')[1]) - t < %d do end return 1"

    # The script runs until it is killed (or 120 s), so the module meets it however long ansible-playbook takes to start.
    thread = blocked_for(master, 120, lambda client: script_until_killed(client, spin % 120))
    with pytest.raises(redis.exceptions.ResponseError, match='^BUSY '):
        raw_command(master, 'DBSIZE')
    busy = run_tasks([{'hashslot.redis.redis_cluster_info': dict(node=master.node, transient_timeout=0.5)}]).result(0)
    raw_command(master, 'SCRIPT', 'KILL')
    thread.join(30)
    assert not thread.is_alive()
    assert busy.get('failed'), busy
    assert master.address in busy['msg'] and 'busy running a script' in busy['msg'], busy

    thread = blocked_for(master, 8, lambda client: client.eval(spin % 8, 0))
    waited = run_tasks([{'hashslot.redis.redis_cluster_info': dict(node=master.node)}]).result(0)
    thread.join(30)
    assert not waited.get('failed'), waited
    assert len(waited['nodes']) == 6 and not real_problems(waited), waited['problems']

    # DEBUG SLEEP: the node answers nothing at all for 2 s; the module's read waits (command timeout 30 s).
    thread = blocked_for(master, 2, lambda client: client.execute_command('DEBUG', 'SLEEP', 2))
    asleep = run_tasks([{'hashslot.redis.redis_cluster_info': dict(node=master.node)}]).result(0)
    thread.join(30)
    assert not asleep.get('failed'), asleep
    assert len(asleep['nodes']) == 6 and not real_problems(asleep), asleep['problems']
