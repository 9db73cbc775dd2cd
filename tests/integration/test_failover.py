"""redis_failover: verified promotion, idempotence, refusals, and no acknowledged write lost under load."""

from __future__ import annotations

import pytest

from load import AckLedger
from playbook import run_module
from servers import cluster_nodes_snapshot, raw_command


def roles(cluster):
    report = run_module('redis_cluster_info', node=cluster[0].node)
    return report, {node['address']: node for node in report['nodes']}


def test_failover_under_write_load_loses_no_acknowledged_write(cluster):
    report, by_address = roles(cluster)
    replica = next(node for node in report['nodes'] if node['role'] == 'replica')
    old_master = replica['master_address']
    server = next(node for node in cluster if node.address == replica['address'])

    before = cluster_nodes_snapshot(cluster)
    planned = run_module('redis_failover', check=True, diff=True, node=server.node)
    assert planned['changed'] is True and planned['actions'][0]['old_master'] == old_master
    assert cluster_nodes_snapshot(cluster) == before

    ledger = AckLedger([node.address for node in cluster], counters=64).start()
    ledger.wait_for_writes(2000)
    result = run_module('redis_failover', diff=True, node=server.node)
    ledger.wait_for_writes(len(ledger.acknowledged) + 2000)
    ledger.stop()
    assert not result.get('failed'), result
    assert result['changed'] is True and result['role'] == 'master' and result['old_master'] == old_master

    assert raw_command(server, 'ROLE')[0] == 'master'
    old = next(node for node in cluster if node.address == old_master)
    old_role = raw_command(old, 'ROLE')
    assert old_role[0] == 'slave' and int(old_role[2]) == server.port
    assert len(ledger.acknowledged) > 4000
    # Each write is followed by an INCR of one of 64 counters: about as many increments acknowledged, none lost.
    assert sum(ledger.counter_acked.values()) > 4000
    assert ledger.lost() == {}

    again = run_module('redis_failover', node=server.node)
    assert again['changed'] is False and again['actions'] == []


@pytest.mark.one_build
def test_failover_refusals(cluster, servers):
    report, dummy = roles(cluster)
    empty_master = servers.start(1)[0]
    dead_port = servers.ports.take()
    unreachable = run_module('redis_failover', node={'host': '127.0.0.1', 'port': dead_port})
    assert unreachable.get('failed') and f'127.0.0.1:{dead_port}' in unreachable['msg'] and 'unreachable' in unreachable['msg']
    slotless = run_module('redis_failover', node=empty_master.node)
    assert slotless.get('failed') and empty_master.address in slotless['msg'] and 'not a replica' in slotless['msg']

    replica = next(node for node in report['nodes'] if node['role'] == 'replica')
    master = next(node for node in cluster if node.address == replica['master_address'])
    server = next(node for node in cluster if node.address == replica['address'])
    # A slot open on the master (a reshard running or stopped part-way): refused up front, naming it, nothing changed.
    other = next(node for node in report['nodes'] if node['role'] == 'master' and node['address'] != master.address)
    slot = int(next(node for node in report['nodes'] if node['address'] == master.address)['slots'][0].split('-')[0])
    raw_command(master, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', other['id'])
    migrating = run_module('redis_failover', node=server.node)
    assert migrating.get('failed') and migrating['changed'] is False, migrating
    assert f'{slot} (migrating to {other["address"]})' in migrating['msg'] and 'action=fix' in migrating['msg'], migrating
    assert raw_command(server, 'ROLE')[0] == 'slave'
    raw_command(master, 'CLUSTER', 'SETSLOT', slot, 'STABLE')

    # The cluster must not promote the replica by itself once the master is gone (cluster-node-timeout is 3 s, less
    # than an ansible-playbook run on a busy machine): only the module's failover may. A forced manual failover
    # still works with this set.
    raw_command(server, 'CONFIG', 'SET', 'cluster-replica-no-failover', 'yes')
    master.kill()
    link_down = run_module('redis_failover', node=server.node)
    assert link_down.get('failed') and 'link to master' in link_down['msg'] and 'mode=force' in link_down['msg']
    assert raw_command(server, 'ROLE')[0] == 'slave'
    forced = run_module('redis_failover', node=server.node, mode='force')
    assert not forced.get('failed'), forced
    assert raw_command(server, 'ROLE')[0] == 'master'
