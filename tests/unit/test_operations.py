"""The operations playbooks' decisions (filters redis_given_vars, redis_cluster_summary, redis_rolling_plan,
redis_failover_choice, redis_upgrade_conflicts, redis_upgrade_status, redis_backup_plan, redis_backup_files and the
lookup redis_problem_kinds) on redis_cluster_info-shaped nodes."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from ansible.errors import AnsibleFilterError, AnsibleLookupError

from ansible_collections.hashslot.redis.plugins.filter.redis_operations import (
    redis_backup_files, redis_backup_plan, redis_cluster_summary, redis_failover_choice, redis_given_vars, redis_rolling_plan,
    redis_upgrade_conflicts, redis_upgrade_status,
)
from ansible_collections.hashslot.redis.plugins.lookup.redis_problem_kinds import LookupModule
from ansible_collections.hashslot.redis.plugins.module_utils.cluster_failover import choose_replica
from ansible_collections.hashslot.redis.plugins.module_utils.cluster_health import NODE_DOWN_KINDS, PROBLEM_KINDS
from ansible_collections.hashslot.redis.plugins.module_utils.rolling_restart import RESTART_RANKS, plan_rolling_restart, restart_kind


def node(port, role='master', master=None, slots=0, zone=None, link='up', offset=100, flags=(), server='redis', version='7.0.15'):
    entry = dict(id=f'id{port}', address=f'10.0.0.1:{port}', host='10.0.0.1', port=port, role=role, master_id=f'id{master}' if master else None,
                 slots=['0-5460'] if slots else [], slot_count=slots, flags=[role if role == 'master' else 'slave', *flags],
                 replication_offset=offset, server=server, version=version)
    if zone:
        entry['zone'] = zone
    if role == 'replica':
        entry['master_link_status'] = link
    return entry


def instance(port, host='db1'):
    return dict(address=f'10.0.0.1:{port}', node={'host': '10.0.0.1', 'port': port}, inventory_host=host, instance={'port': port}, zone='')


# Three shards: 7000-7002 masters, 7003-7005 their replicas in the next zone.
CLUSTER = [node(7000, slots=5461, zone='a'), node(7001, slots=5461, zone='b'), node(7002, slots=5462, zone='c'),
           node(7003, 'replica', 7000, zone='b'), node(7004, 'replica', 7001, zone='c'), node(7005, 'replica', 7002, zone='a')]
INSTANCES = [instance(port, 'db1' if port < 7003 else 'db2') for port in range(7000, 7006)]


# redis_given_vars

def test_blank_and_null_count_as_not_given_and_list_text_is_split():
    given = redis_given_vars({'a': '', 'b': None, 'c': ' \n', 'd': False, 'e': 0, 'f': ' x ', 'nodes': '10.0.0.1:7000, ,\n10.0.0.1:7001 ,'},
                             ['nodes'])
    assert given == {'d': False, 'e': 0, 'f': ' x ', 'nodes': ['10.0.0.1:7000', '10.0.0.1:7001']}
    # A list given as a list stays as it is; a string for a variable not named in lists stays a string.
    assert redis_given_vars({'nodes': ['a b'], 'other': 'a,b'}, ['nodes']) == {'nodes': ['a b'], 'other': 'a,b'}


@given(st.lists(st.text(alphabet='ab:1 ,\n\t', max_size=6), max_size=5))
def test_list_text_splits_into_its_non_blank_items(items):
    text = ','.join(items)
    parsed = redis_given_vars({'nodes': text}, ['nodes']).get('nodes', [])
    assert all(item and not any(char in item for char in ', \n\t') for item in parsed)
    assert ''.join(parsed) == ''.join(char for char in text if char not in ', \n\t')


def test_given_vars_needs_a_mapping():
    with pytest.raises(AnsibleFilterError, match='mapping'):
        redis_given_vars(['a'])


# redis_cluster_summary

def test_summary_lists_masters_by_address_with_their_replicas_then_problems():
    result = dict(cluster_state='ok', masters=2, replicas=1, nodes=[node(7001, slots=5461, zone='b'), node(7000, slots=5461, zone='a'),
                                                                    node(7003, 'replica', 7000), node(7002)],
                  problems=[dict(kind='master_without_replica', node='10.0.0.1:7001', detail='no replica')])
    result['nodes'][3].pop('server')
    assert redis_cluster_summary(result) == [
        'cluster_state ok: 2 masters, 1 replicas, 1 problem(s)',
        'master 10.0.0.1:7000 (zone a, redis 7.0.15) slots 0-5460 <- 10.0.0.1:7003 (zone -)',
        'master 10.0.0.1:7001 (zone b, redis 7.0.15) slots 0-5460 <- no replica',
        'master 10.0.0.1:7002 (zone -, 7.0.15) slots none <- no replica',
        'problem master_without_replica at 10.0.0.1:7001: no replica',
    ]


def test_summary_of_a_node_that_could_not_be_read():
    unread = {key: value for key, value in node(7000, slots=5461).items() if key not in ('server', 'version')}
    lines = redis_cluster_summary(dict(cluster_state='fail', masters=1, replicas=0, nodes=[unread], problems=[]))
    assert lines[1] == 'master 10.0.0.1:7000 (zone -) slots 0-5460 <- no replica'


# redis_rolling_plan

def test_rolling_plan_restarts_replicas_then_empty_masters_then_masters():
    cluster = CLUSTER + [node(7006)]
    plan = redis_rolling_plan(cluster, INSTANCES + [instance(7006)], [], True)
    assert [(step['address'][-4:], step['role']) for step in plan['steps']] == [
        ('7003', 'replica'), ('7004', 'replica'), ('7005', 'replica'), ('7006', 'empty master'),
        ('7000', 'master'), ('7001', 'master'), ('7002', 'master')]
    assert plan['steps'][0]['inventory_host'] == 'db2' and plan['steps'][0]['instance'] == {'port': 7003}
    assert plan['refusals'] == []
    assert plan['summary'].startswith('7 instance(s) to restart one at a time: 10.0.0.1:7003 (replica); ')
    assert plan['summary'].endswith('10.0.0.1:7002 (master, failed over first, then failed back)')
    assert 'then failed back' not in redis_rolling_plan(cluster, INSTANCES + [instance(7006)])['summary']


def test_rolling_plan_of_named_instances_refuses_unknown_ones_non_members_and_unprotected_masters():
    cluster = [entry for entry in CLUSTER if entry['port'] != 7004]
    plan = redis_rolling_plan(cluster, INSTANCES, ['10.0.0.1:7003', '10.0.0.1:7001', '10.0.0.1:7099'])
    assert [step['address'] for step in plan['steps']] == ['10.0.0.1:7003', '10.0.0.1:7001']
    assert plan['refusals'] == [
        'redis_rolling_nodes names 10.0.0.1:7099, which no host of the inventory runs (use host:port as the cluster knows it: '
        + ', '.join(entry['address'] for entry in INSTANCES) + ').',
        '10.0.0.1:7004 in the inventory is not a member of the cluster: join it with playbooks/scale_out.yml (or site.yml) first.',
        'master(s) 10.0.0.1:7001 have no replica whose link is up, so restarting them would take their slots offline; add replicas or '
        'restart them by hand in a maintenance window.']
    # A master without a working replica that is not restarted blocks nothing.
    assert redis_rolling_plan(cluster, INSTANCES[:4], ['10.0.0.1:7003'])['refusals'] == []


@st.composite
def clusters(draw):
    masters = draw(st.integers(1, 4))
    nodes = [node(7000 + index, slots=draw(st.sampled_from([0, 100]))) for index in range(masters)]
    for index in range(draw(st.integers(0, 6))):
        nodes.append(node(7100 + index, 'replica', 7000 + draw(st.integers(0, masters - 1)), link=draw(st.sampled_from(['up', 'down']))))
    return nodes


@given(clusters(), st.data())
def test_rolling_plan_restarts_each_chosen_member_once_in_rank_order(nodes, data):
    instances = [instance(entry['port']) for entry in nodes]
    only = data.draw(st.lists(st.sampled_from([entry['address'] for entry in nodes])))
    plan = plan_rolling_restart(nodes, instances, only)
    addresses = [step['address'] for step in plan['steps']]
    assert sorted(addresses) == sorted(set(only) or {entry['address'] for entry in nodes})
    ranks = [RESTART_RANKS.index(step['role']) for step in plan['steps']]
    assert ranks == sorted(ranks)
    by_address = {entry['address']: entry for entry in nodes}
    assert all(restart_kind(by_address[step['address']]) == step['role'] for step in plan['steps'])
    for address in plan['unprotected']:
        assert by_address[address]['slot_count'] and address in addresses
        assert not any(entry['master_id'] == by_address[address]['id'] and entry.get('master_link_status') == 'up' for entry in nodes)


# redis_failover_choice

def test_default_mode_prefers_another_domain_then_the_highest_offset_among_linked_replicas():
    master = node(7000, slots=5461, zone='a')
    replicas = [node(7003, 'replica', 7000, zone='a', offset=900), node(7004, 'replica', 7000, zone='b', offset=100),
                node(7005, 'replica', 7000, zone='c', offset=200), node(7006, 'replica', 7000, zone='c', offset=999, link='down'),
                node(7007, 'replica', 7000, zone='c', offset=999, flags=['fail?'])]
    assert choose_replica([master] + replicas, master)['port'] == 7005
    # Force and takeover: the most advanced offset first, whatever its link (a suspected replica too; a failed one never).
    assert choose_replica([master] + replicas, master, 'force')['port'] == 7006
    assert choose_replica([master] + replicas + [node(7008, 'replica', 7000, offset=5000, flags=['fail'])], master, 'takeover')['port'] == 7006
    # Ties keep the nodes' order; no zone means the host is the domain.
    hosts = [dict(node(7000, slots=1), host='h1'), dict(node(7001, 'replica', 7000), host='h1'), dict(node(7002, 'replica', 7000), host='h2'),
             dict(node(7003, 'replica', 7000), host='h3')]
    assert choose_replica(hosts, hosts[0])['port'] == 7002


def test_failover_choice_explains_why_there_is_no_replica():
    assert redis_failover_choice(CLUSTER, node='10.0.0.1:7003')['node']['port'] == 7003
    assert redis_failover_choice(CLUSTER, node='10.0.0.1:7000') == dict(node=CLUSTER[0], reason='')
    assert redis_failover_choice(CLUSTER, master='10.0.0.1:7000')['node']['port'] == 7003
    assert redis_failover_choice(CLUSTER, '10.0.0.1:7099') == dict(node={}, reason='is not a member of the cluster')
    assert redis_failover_choice(CLUSTER, master='10.0.0.1:7099')['reason'] == 'is not a member of the cluster'
    assert redis_failover_choice(CLUSTER, master='10.0.0.1:7003') == dict(node={}, reason='is not a master that owns slots (it is a replica with 0 slots)')
    down = [CLUSTER[0], node(7003, 'replica', 7000, link='down')]
    assert redis_failover_choice(down, master='10.0.0.1:7000')['reason'] == (
        'has no replica that can take over (none has its link to the master up; if the master is down use -e redis_failover_mode=force)')
    assert redis_failover_choice(down, master='10.0.0.1:7000', mode='force')['node']['port'] == 7003
    assert redis_failover_choice(down[:1], master='10.0.0.1:7000', mode='force') == dict(node={}, reason='has no replica that can take over')
    with pytest.raises(AnsibleFilterError, match='mode must be one of'):
        redis_failover_choice(CLUSTER, master='10.0.0.1:7000', mode='fast')


# redis_upgrade_conflicts, redis_upgrade_status

def test_switches_that_upgrade_refuses():
    nodes = [node(7000, version='7.2.4'), node(7001, version='7.4.1'), node(7002, server='valkey', version='8.1.1')]
    assert redis_upgrade_conflicts(nodes, 'valkey', '8.1.1') == dict(unreadable=['10.0.0.1:7001 runs Redis 7.4.1'], unmixable=[])
    assert redis_upgrade_conflicts(nodes, 'redis', '8.0.2') == dict(unreadable=[], unmixable=['10.0.0.1:7002 runs Valkey 8.1.1'])
    assert redis_upgrade_conflicts(nodes, 'redis', '7.2.4') == dict(unreadable=[], unmixable=[])
    assert redis_upgrade_conflicts(nodes, None, '8.0.0-rc1') == dict(unreadable=[], unmixable=['10.0.0.1:7002 runs Valkey 8.1.1'])


def test_upgrade_status_lists_instances_not_on_their_hosts_version():
    hostvars = dict(db1={'redis_install_flavor': 'valkey', 'redis_install_installed_version': '8.1.1'},
                    db2={'redis_install_installed_version': '7.0.15'})
    nodes = [node(7000, server='valkey', version='8.1.1'), node(7001), node(7003), node(7009, server='valkey', version='8.1.0')]
    instances = [instance(7000), instance(7001), instance(7002), instance(7003, 'db2')]
    status = redis_upgrade_status(nodes, instances, hostvars, 'db1')
    # 7002 is not in the cluster: outdated too (the rolling restart refuses it as no member).
    assert status['outdated'] == ['10.0.0.1:7001', '10.0.0.1:7002']
    assert status['wrong'] == ['10.0.0.1:7001 runs redis 7.0.15, not valkey 8.1.1', '10.0.0.1:7009 runs valkey 8.1.0, not valkey 8.1.1']


# redis_backup_plan, redis_backup_files

def test_backup_snapshots_masters_with_slots_or_every_node():
    cluster = CLUSTER + [node(7006), node(7007, slots=1)]
    plan = redis_backup_plan(cluster, INSTANCES + [instance(7006)])
    assert [target['address'] for target in plan['targets']] == ['10.0.0.1:7000', '10.0.0.1:7001', '10.0.0.1:7002']
    assert plan['targets'][0] == dict(INSTANCES[0], role='master', id='id7000', dest='db1-7000')
    assert plan['outside'] == ['10.0.0.1:7007']
    every = redis_backup_plan(cluster, INSTANCES + [instance(7006)], True)
    assert len(every['targets']) == 7 and every['outside'] == ['10.0.0.1:7007']


def test_backup_fetches_each_rdb_and_the_cluster_configuration_beside_it():
    target = dict(INSTANCES[0], dest='db1-7000')
    results = [dict(item=target, path='/var/lib/redis/7000/dump.rdb'), dict(item=target, changed=False)]
    assert redis_backup_files(results) == [dict(src='/var/lib/redis/7000/dump.rdb', dest='db1-7000'),
                                           dict(src='/var/lib/redis/7000/nodes-7000.conf', dest='db1-7000')]


# redis_problem_kinds

def problem_kinds_lookup() -> LookupModule:
    """The lookup as ansible's plugin loader hands it out: named (set_options reads the name, which ansible-core 2.16 and
    2.17 give a plugin only in the loader)."""
    lookup = LookupModule()
    lookup._load_name = 'hashslot.redis.redis_problem_kinds'
    return lookup


def test_problem_kinds_lookup_returns_pythons_lists():
    lookup = problem_kinds_lookup()
    assert lookup.run([]) == list(PROBLEM_KINDS)
    assert lookup.run(['node_down']) == list(NODE_DOWN_KINDS) and set(NODE_DOWN_KINDS) <= set(PROBLEM_KINDS)
    with pytest.raises(AnsibleLookupError, match='unknown group'):
        lookup.run(['down'])
