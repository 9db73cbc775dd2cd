#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: redis_cluster_reshard
short_description: Move hash slots and their keys between masters - rebalance, move, drain, fix
version_added: 0.1.0
description:
  - Before any action, a migration left half-done (slots C(MIGRATING) or C(IMPORTING)) is finished, or cancelled when the
    target holds none of its keys, so re-running after an interrupted run converges with no key lost. When the source
    or the target was taken over by its replica meanwhile, the migration is finished with the new master (the one the
    failed node now replicates, the slot's owner by config epoch, or the only master holding keys of the slot).
  - Before planning, waits up to O(wait_timeout) for the cluster to settle - a master still claiming a slot another
    master took with a higher epoch, a master with slots unreachable while its replica may take over - then fails
    naming what did not settle, having changed nothing.
  - C(rebalance) gives every master a slot count proportional to O(weights), doing nothing while every master is
    within O(threshold) percent of its share.
  - C(move) gives O(slots) to O(target). C(drain) gives all of O(source)'s slots to the other masters in proportion to
    their weights (scale-in). C(fix) closes open slots and gives every uncovered slot an owner, deterministically (the
    only master holding keys for it, else the owner of the nearest lower slot); it fails closed rather than guess.
  - Every action first repairs what an interrupted migration left - open slots, and keys a master holds in a slot
    another master owns (orphans, see RV(actions)).
  - Slots move in batches; C(SETSLOT) and C(MIGRATE) are pipelined across the batch, O(pipeline) keys go in each
    C(MIGRATE), and O(parallel) source-to-target streams run at once. A large key that times out is retried in
    smaller batches with a longer timeout.
  - No run waits long on a node that stopped answering (paused, partitioned). At most four C(MIGRATE) commands are
    pipelined at a time, first with a timeout of min(O(migrate_timeout), 5000) ms; when one times out the target is
    sent a C(PING), and a target that does not answer within O(connect_timeout) ends the run, naming it, after at most
    4 x min(O(migrate_timeout), 5000) ms + O(connect_timeout). A source that stops answering ends it when the read of
    one C(MIGRATE) has waited 3 x its timeout + 10 s; any other node when a command has waited 30 s. The slot is left
    open, and once the node is back or its replica has taken over (after C(cluster-node-timeout)) the next run
    finishes it.
  - A key already present on the target (left by a C(MIGRATE) cut short) is replaced only when both values are equal,
    unless O(replace=true).
  - Works on Redis 7 and 8 and on Valkey 8 and 9. Valkey holds each C(SETSLOT) on a primary until its replicas
    acknowledged it, one command at a time per connection, so a batch's C(SETSLOT)s go out over up to 16 connections to
    the node; its C(NOREPLICAS) and C(UNBLOCKED) answers are retried.
  - With O(method=atomic) (chosen by O(method=auto) when every master runs Valkey 9.0 or later) the servers move the
    slots themselves - C(CLUSTER MIGRATESLOTS) sent to each source, one job per target, followed with
    C(CLUSTER GETSLOTMIGRATIONS). The source streams a snapshot of the slots and the writes that follow, pauses writes to
    them only for the hand-over, and clients see only C(MOVED). Jobs of different sources run at once. A job that fails
    or is cancelled is started again for the slots its source still owns, three attempts in all. The run ends when
    every master agrees on the new owners.
  - A job outlives the run that started it. A run killed while jobs are in flight leaves them running; the next run
    finds them on the masters, waits for them (each must show progress at least every max(60 s, O(migrate_timeout))),
    then plans again from the slots' real owners and starts what is missing.
  - Atomic migration authenticates the source to the target as the replication user (C(primaryuser)/C(primaryauth));
    with ACLs that user needs C(+cluster|syncslots) and the commands that rebuild the keys, which the
    C(hashslot.redis.redis_server) role grants on Valkey 9.
options:
  node:
    description: Any member of the cluster.
    type: dict
    required: true
    suboptions:
      host:
        description: Host name or IP address.
        type: str
        required: true
      port:
        description: Client port.
        type: int
        default: 6379
  action:
    description: What to do.
    type: str
    choices: [rebalance, move, drain, fix]
    default: rebalance
  weights:
    description:
      - Relative weight of masters, keyed by C(host:port) or node id; 1.0 for masters not listed. Weight 0 empties a master.
    type: dict
    default: {}
  threshold:
    description: Percent by which a master may differ from its share before O(action=rebalance) moves anything.
    type: float
    default: 2
  use_empty_masters:
    description: Whether masters without slots take part in O(action=rebalance) and O(action=drain).
    type: bool
    default: true
  slots:
    description: Slots for O(action=move), as numbers or ranges such as C(0-1000).
    type: list
    elements: str
  target:
    description: The master that receives O(slots) in O(action=move).
    type: dict
    suboptions:
      host:
        description: Host name or IP address.
        type: str
        required: true
      port:
        description: Client port.
        type: int
        default: 6379
  source:
    description: The master to empty in O(action=drain).
    type: dict
    suboptions:
      host:
        description: Host name or IP address.
        type: str
        required: true
      port:
        description: Client port.
        type: int
        default: 6379
  method:
    description:
      - How keys move. C(keys) - C(SETSLOT) and C(MIGRATE) driven from here, on every server. C(atomic) - Valkey's atomic
        slot migration (Valkey 9.0 and later on every master; refused naming a master without it, before any change).
        C(auto) - C(atomic) when every master has it, else C(keys).
      - O(pipeline), O(parallel), O(slot_batch) and O(replace) apply to C(keys) only. Open slots left by an interrupted
        C(keys) run are always finished with C(keys).
    type: str
    choices: [auto, atomic, keys]
    default: auto
    version_added: 0.2.0
  pipeline:
    description: Keys per C(MIGRATE) command (and per C(GETKEYSINSLOT)).
    type: int
    default: 1000
  parallel:
    description: Source-to-target streams run at once.
    type: int
    default: 4
  slot_batch:
    description: Slots opened (C(IMPORTING)/C(MIGRATING)) and closed together in one round trip per stream.
    type: int
    default: 128
  migrate_timeout:
    description:
      - Milliseconds C(MIGRATE) may wait on each I/O step of a large key; doubled for a slot whose keys keep timing out.
      - A first C(MIGRATE) of each slot waits at most 5000 ms (or this, if less); the full value is given only once the
        target has answered a C(PING), so a target that stopped answering is found quickly.
    type: int
    default: 60000
  replace:
    description: On C(BUSYKEY), overwrite the target's key with the source's even when their values differ.
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait for the cluster to settle before planning, and for every master to agree on the slot map afterwards.
    type: float
    default: 60
extends_documentation_fragment:
  - hashslot.redis.connection
attributes:
  check_mode:
    support: full
    description:
      - Returns the plan (repairs and moves with source, target, slot ranges and keys per move, the method, and with
        C(atomic) the jobs); nothing is written. Atomic jobs still running from an earlier run are listed in
        RV(in_flight); a real run waits for them first, then plans again.
  diff_mode:
    support: full
    description: Shows the slot map before and after.
author:
  - hashslot.redis contributors (@hashslot)
'''

EXAMPLES = r'''
- name: Spread slots over every master, new empty ones included
  hashslot.redis.redis_cluster_reshard:
    node: {host: 10.0.1.10, port: 6379}

- name: Give a bigger machine twice the share
  hashslot.redis.redis_cluster_reshard:
    node: {host: 10.0.1.10, port: 6379}
    weights:
      "10.0.1.12:6379": 2

- name: Empty a master before removing it
  hashslot.redis.redis_cluster_reshard:
    node: {host: 10.0.1.10, port: 6379}
    action: drain
    source: {host: 10.0.3.10, port: 6379}

- name: Move two ranges to one master
  hashslot.redis.redis_cluster_reshard:
    node: {host: 10.0.1.10, port: 6379}
    action: move
    slots: ["0-1000", "5461"]
    target: {host: 10.0.2.10, port: 6379}

- name: Rebalance a Valkey 9 cluster with atomic slot migration, failing if a master cannot do it
  hashslot.redis.redis_cluster_reshard:
    node: {host: 10.0.1.10, port: 6379}
    method: atomic

- name: Close what an interrupted reshard left open
  hashslot.redis.redis_cluster_reshard:
    node: {host: 10.0.1.10, port: 6379}
    action: fix
'''

RETURN = r'''
actions:
  description:
    - Every step done (or planned in check mode) - stable, finish_migration, remove_orphans, assign, move.
    - C(remove_orphans) names a master holding keys (C(keys)) of a slot another master (C(owner)) owns, outside any open
      migration, as a migration whose target froze past the node timeout leaves them; copies equal to the owner's are
      deleted, keys the owner lacks are restored on it, and a copy that differs stops the run naming the keys.
  returned: always
  type: list
  elements: dict
moves:
  description: The slot moves of the action, each with source, target, slots, slot_count and keys (counted before the run).
  returned: always
  type: list
  elements: dict
  sample: [{source: "10.0.1.10:6379", target: "10.0.1.12:6379", slots: ["4096-5461"], slot_count: 1366, keys: 62310}]
moved_slots:
  description: Slots moved, open-slot repairs included.
  returned: always
  type: int
moved_keys:
  description: Keys moved.
  returned: always
  type: int
replaced_keys:
  description: Keys migrated with REPLACE after a BUSYKEY.
  returned: when slots moved
  type: int
orphans_removed:
  description: Orphaned copies deleted because the slot's owner holds the same value (see RV(actions)).
  returned: when orphaned keys were found and the run changed the cluster
  type: int
  version_added: 0.2.0
orphans_restored:
  description: Orphaned keys the slot's owner lacked, restored on it (with their TTL) and deleted from the holder.
  returned: when orphaned keys were found and the run changed the cluster
  type: int
  version_added: 0.2.0
method:
  description: How keys moved (or would move in check mode) - C(atomic) or C(keys).
  returned: always
  type: str
  sample: atomic
  version_added: 0.2.0
jobs:
  description:
    - With C(atomic), one entry per job - source, target, slots (ranges), slot_count, keys (counted before the run),
      state (C(planned) in check mode, C(success) after a run), attempts, seconds (from start to success as polled),
      and C(failures) - the state and message of each attempt that failed.
  returned: when the method is atomic and slots move
  type: list
  elements: dict
  sample: [{source: "10.0.1.10:6379", target: "10.0.1.12:6379", slots: "0-1365", slot_count: 1366, keys: 20851,
            state: success, attempts: 1, seconds: 0.276}]
  version_added: 0.2.0
in_flight:
  description: Check mode only - atomic jobs still running on the masters (node, name, slots, state, target), which a real run waits for before it plans.
  returned: when such jobs run
  type: list
  elements: dict
  version_added: 0.2.0
waited_for:
  description: Atomic jobs a previous run left running, which this run waited for before planning (node, name, slots).
  returned: when there were any
  type: list
  elements: dict
  version_added: 0.2.0
duration:
  description: Seconds spent.
  returned: always
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hashslot.redis.plugins.module_utils.cluster_reshard import reshard
from ansible_collections.hashslot.redis.plugins.module_utils.module_support import run_cluster_module
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import common_argument_spec, node_argument_spec
from ansible_collections.hashslot.redis.plugins.module_utils.slot_migration import MigrationSettings


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        node=node_argument_spec(),
        action=dict(type='str', default='rebalance', choices=['rebalance', 'move', 'drain', 'fix']),
        method=dict(type='str', default='auto', choices=['auto', 'atomic', 'keys']),
        weights=dict(type='dict', default={}),
        threshold=dict(type='float', default=2),
        use_empty_masters=dict(type='bool', default=True),
        slots=dict(type='list', elements='str'),
        target=node_argument_spec(required=False),
        source=node_argument_spec(required=False),
        pipeline=dict(type='int', default=1000),
        parallel=dict(type='int', default=4),
        slot_batch=dict(type='int', default=128),
        migrate_timeout=dict(type='int', default=60000),
        replace=dict(type='bool', default=False),
        wait_timeout=dict(type='float', default=60),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[('action', 'move', ('slots', 'target')), ('action', 'drain', ('source',))],
    )
    params = module.params
    settings = MigrationSettings(pipeline=max(1, params['pipeline']), parallel=max(1, params['parallel']), slot_batch=max(1, params['slot_batch']),
                                 migrate_timeout=max(1, params['migrate_timeout']), replace=params['replace'])
    run_cluster_module(module, lambda pool: reshard(
        pool, params['node']['host'], params['node']['port'], params['action'], settings, weights=params['weights'],
        threshold=params['threshold'], use_empty_masters=params['use_empty_masters'], slots=params['slots'], target=params['target'],
        source=params['source'], wait_timeout=params['wait_timeout'], check_mode=module.check_mode, method=params['method']))


if __name__ == '__main__':
    main()
