"""Grow the cluster onto two new hosts and shrink it back, under a cluster-aware write load with an acknowledgement
ledger: scale_out.yml adds a master and its replica and rebalances, scale_in.yml drains and removes them.

The tests share one cluster and run in file order; each step checks what it did.
"""

from __future__ import annotations

import pytest
from redis.cluster import ClusterNode, RedisCluster

from containers import PORT, assert_switch_refused, paced_ledger, upgrade_vars

NEW_HOSTS = ['hs-scale-7', 'hs-scale-8']
SEEDED = 5000
GROWN = {'redis_cluster_group': 'redis_grown'}


@pytest.fixture(scope='module')
def state():
    """What the steps hand to each other: the ledger, the addresses of the new hosts."""
    return {}


def grown_zones(cluster):
    return {f'{cluster.address(host)}:{PORT}': str(cluster.host_vars(host).get('redis_zone', host)) for host in cluster.hosts('redis_grown')}


def cluster_client(cluster) -> RedisCluster:
    return RedisCluster(startup_nodes=[ClusterNode(cluster.address(host), PORT) for host in cluster.hosts()],
                        password=cluster.password, decode_responses=True, socket_timeout=5)


def key_total(cluster) -> int:
    """Keys over every master that owns slots: a key left behind on its old owner would count twice."""
    return sum(int(cluster.client(cluster.host_of(address)).dbsize()) for address in cluster.masters())


def test_seed_data_and_start_the_write_load(cluster, state):
    # The keys test_faults.py's writers left (it runs first, on the same cluster) stay where they are and count.
    state['before'] = key_total(cluster)
    client = cluster_client(cluster)
    for start in range(0, SEEDED, 500):
        pipe = client.pipeline()
        for number in range(start, start + 500):
            pipe.set(f'seed:{number}', f'value-{number}')
        pipe.execute()
    client.close()
    assert key_total(cluster) == state['before'] + SEEDED
    # Bounded: it stops by itself after 15 minutes even if a step hangs. Paced at 100 writes a second: every key the
    # writer adds is one more for the scale-out's rebalance and the scale-in's drain to move, and the writer's CPU is
    # taken from the playbooks under test.
    ledger = paced_ledger(cluster, writes_per_second=100, max_seconds=900, max_writes=90_000, prefix='scale')
    state['ledger'] = ledger.start()
    ledger.wait_for_writes(200, timeout=30)
    assert len(ledger.acknowledged) >= 200, ledger.errors[-5:]


def test_scale_out_adds_a_master_and_its_replica(cluster, state):
    new = [f'{cluster.address(host)}:{PORT}' for host in NEW_HOSTS]
    state['new'] = new
    before = cluster.topology()
    run = cluster.playbook('playbooks/scale_out.yml', extra_vars=GROWN)
    assert run.returncode == 0, run.output[-4000:]

    topology = cluster.topology()
    for address in new:
        assert address in topology, f'{address} did not join: {sorted(topology)}'
    masters = cluster.masters()
    assert len(masters) == 4, masters
    new_masters = [address for address in new if topology[address]['role'] == 'master']
    new_replicas = [address for address in new if topology[address]['role'] == 'replica']
    assert len(new_masters) == 1 and len(new_replicas) == 1, {address: topology[address]['role'] for address in new}
    # The new replica follows the new master, in another zone.
    if topology[new_replicas[0]]['master_id'] != topology[new_masters[0]]['id']:
        print(run.output[run.output.find('TASK [Show the plan]'):][:3000], run.output[run.output.find('TASK [Say what was done]'):][:3000])
        print({address: (node['id'], node['role'], node['master_id'], node['slots']) for address, node in before.items()})
        print({address: (node['id'], node['role'], node['master_id'], node['slots']) for address, node in topology.items()})
    assert topology[new_replicas[0]]['master_id'] == topology[new_masters[0]]['id']
    zones = grown_zones(cluster)
    assert zones[new_replicas[0]] != zones[new_masters[0]]
    # Rebalanced: each of the four masters owns about a quarter of the slots.
    report = cluster.info(zones=zones)
    counts = {node['address']: node['slot_count'] for node in report['nodes'] if node['role'] == 'master'}
    assert all(abs(count - 4096) <= 2 for count in counts.values()), counts
    assert report['problems'] == [], report['problems']


def test_scale_out_again_changes_nothing(cluster):
    # The cluster part only (the roles' idempotence is proven by the secure scenario's second site.yml run): nothing
    # left to join.
    run = cluster.playbook('playbooks/scale_out.yml', extra_vars=GROWN, tags='cluster')
    assert run.returncode == 0, run.output[-4000:]
    assert run.total('changed') == 0, run.changed_tasks()
    assert 'nothing to join' in run.output


def test_scale_in_check_mode_plans_and_changes_nothing(cluster, state):
    new = state['new']
    before = {host: cluster.topology(host) for host in cluster.hosts()}
    planned = cluster.playbook('playbooks/scale_in.yml', check=True,
                               extra_vars=dict(GROWN, redis_scale_in_nodes=new, redis_scale_in_stop=True))
    assert planned.returncode == 0, planned.output[-4000:]
    assert planned.total('changed') > 0
    assert 'move the' in planned.output and 'remove master' in planned.output and 'remove replica' in planned.output
    # Same roles, owners and members on every node (link timings aside).
    after = {host: cluster.topology(host) for host in cluster.hosts()}
    assert {host: {address: (node['role'], node['slots']) for address, node in view.items()} for host, view in after.items()} == \
        {host: {address: (node['role'], node['slots']) for address, node in view.items()} for host, view in before.items()}


def test_scale_in_drains_and_removes_them(cluster, state):
    new = state['new']
    leaving = dict(GROWN, redis_scale_in_nodes=new, redis_scale_in_stop=True)
    run = cluster.playbook('playbooks/scale_in.yml', extra_vars=leaving)
    assert run.returncode == 0, run.output[-4000:]
    again = cluster.playbook('playbooks/scale_in.yml', extra_vars=leaving)
    assert again.returncode == 0, again.output[-4000:]
    assert again.total('changed') == 0, again.changed_tasks()
    assert len(cluster.masters()) == 3
    # Every node that stays has forgotten both of them (and keeps forgetting them past the 60 s forget ban only
    # because they are stopped, as scale_in.yml was asked).
    for host in cluster.hosts():
        known = cluster.topology(host)
        assert not set(new) & set(known), f'{host} still knows {sorted(set(new) & set(known))}'
    for host in NEW_HOSTS:
        assert cluster.address(host) + f':{PORT}' not in cluster.masters()


def test_no_acknowledged_write_lost_and_no_key_lost_or_doubled(cluster, state):
    ledger = state['ledger']
    ledger.stop()
    acknowledged = len(ledger.acknowledged)
    assert acknowledged > 1000, f'the load was too light to prove anything: {acknowledged} writes'
    assert ledger.lost() == {}
    client = cluster_client(cluster)
    seeds = client.mget_nonatomic([f'seed:{number}' for number in range(SEEDED)])
    assert seeds == [f'value-{number}' for number in range(SEEDED)]
    # Writes that failed on the client may still have landed: count them as they are.
    unacknowledged = [key for key in (f'scale:{number}' for number in range(ledger.attempted)) if key not in ledger.acknowledged]
    landed = sum(1 for value in client.mget_nonatomic(unacknowledged) if value is not None) if unacknowledged else 0
    client.close()
    assert key_total(cluster) == state['before'] + SEEDED + acknowledged + landed
    print(f'scale: {acknowledged} acknowledged writes, {len(ledger.errors)} refused or failed during the moves, 0 lost')


def test_cluster_healthy_after_scale_in(cluster):
    report = cluster.info()
    assert report['cluster_state'] == 'ok'
    assert report['problems'] == [], report['problems']
    assert (report['masters'], report['replicas']) == (3, 3)


def test_switch_from_redis8_to_valkey_refused_before_any_change(cluster):
    """Last: upgrade.yml to Valkey 8.1.1 stops in its checks, naming every node, and no node restarts. Redis 7.4 and
    later write RDB format 12, which Valkey 8.1 refuses as a foreign format (src/rdb.h reserves 12-79), in its own files
    and from a primary alike: a node restarted from Redis 8.0.2 onto Valkey never comes back ("Can't handle RDB format
    version 12"). This cluster runs Debian 13's Redis 8.0.2; the opposite switch is refused in the default scenario."""
    def run_ids():
        return {host: cluster.client(host).info('server')['run_id'] for host in cluster.hosts()}

    before = run_ids()
    refused = cluster.playbook('playbooks/upgrade.yml', extra_vars=upgrade_vars('valkey', '8.1.1', 'valkey-8.1.1'))
    assert_switch_refused(cluster, refused, 'runs Redis 8.0.2')
    assert run_ids() == before
