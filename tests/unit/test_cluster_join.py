"""The redis_cluster role's split of the instances a formed cluster lacks, and its list of ghosts (filters)."""

from __future__ import annotations

from ansible_collections.hashslot.redis.plugins.filter.redis_cluster_join import redis_ghost_nodes, redis_join_split


def node(node_id, role, zone, port, master_id=None, slots=0, flags=()):
    return dict(id=node_id, role=role, zone=zone, host='10.0.0.1', port=port, master_id=master_id, slot_count=slots, flags=list(flags))


def instance(port, zone):
    return dict(host='10.0.0.1', port=port, zone=zone)


CLUSTER = [
    node('a', 'master', 'a', 1, slots=5462), node('b', 'master', 'b', 2, slots=5461), node('c', 'master', 'c', 3, slots=5461),
    node('ra', 'replica', 'b', 4, master_id='a'), node('rb', 'replica', 'c', 5, master_id='b'), node('rc', 'replica', 'a', 6, master_id='c'),
]


def test_new_instances_form_shards_when_no_master_lacks_a_replica():
    split = redis_join_split([instance(7, 'a'), instance(8, 'b')], CLUSTER, 1)
    assert [entry['port'] for entry in split['masters']] == [7] and [entry['port'] for entry in split['replicas']] == [8]
    assert split['master_of'] == {}


def test_instances_back_empty_fill_the_masters_short_of_a_replica_in_other_zones():
    # Masters a and c lost their replicas (servers back empty, their old ids forgotten). Paired in order, the zone-a
    # instance would go to master a and the zone-c one to master c: the pairing is chosen over both at once.
    short = [entry for entry in CLUSTER if entry['id'] not in ('ra', 'rc')]
    split = redis_join_split([instance(9, 'a'), instance(10, 'c')], short, 1)
    assert split['masters'] == [] and [entry['port'] for entry in split['replicas']] == [9, 10]
    assert split['master_of'] == {'10.0.0.1:9': {'host': '10.0.0.1', 'port': 3}, '10.0.0.1:10': {'host': '10.0.0.1', 'port': 1}}


def test_a_failed_replica_leaves_an_opening_and_the_rest_form_a_shard():
    failed = [dict(entry, flags=['fail']) if entry['id'] == 'rb' else entry for entry in CLUSTER]
    split = redis_join_split([instance(11, 'a'), instance(12, 'b'), instance(13, 'c')], failed, 1)
    assert [entry['port'] for entry in split['masters']] == [12] and [entry['port'] for entry in split['replicas']] == [11, 13]
    assert split['master_of'] == {'10.0.0.1:11': {'host': '10.0.0.1', 'port': 2}}
    assert redis_join_split([instance(11, 'a')], failed, 1, 'replica') == {'masters': [], 'replicas': [instance(11, 'a')], 'master_of': {}}


def test_ghosts_are_listed_once_per_id_from_every_view():
    ghost = dict(kind='ghost_node', node='f' * 40, slot_count=0, replica=None, detail='...')
    views = [{'problems': [ghost, dict(kind='node_failed', node='10.0.0.1:1', detail='...')]}, {'problems': [ghost]},
             {'failed': True, 'msg': 'unreachable'}]
    assert redis_ghost_nodes(views) == [ghost]
