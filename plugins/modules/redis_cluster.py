#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: redis_cluster
short_description: Make a Redis or Valkey cluster match its description (form, grow, shrink, rebalance)
version_added: 0.2.0
description:
  - Desired state for a whole cluster. Given its nodes, the replicas per master and the balance wanted, the module
    reads every node, plans from whatever the cluster is now, and carries the plan out. The plan is the same whether
    the cluster is empty, half formed, formed with fewer nodes, or left part-way by an earlier run that was stopped;
    the layout it leads to depends only on the description and on which masters own slots.
  - Empty nodes and nothing formed yet are formed into a cluster (as M(hashslot.redis.redis_cluster_create) does, a
    creation cut short included).
  - On a formed cluster, nodes of the description that are not members join. Masters are the nodes that own slots plus
    as many new ones as make C(len(nodes) // (replicas + 1)) masters, spread over zones; every other node replicates
    the master that keeps replicas in failure domains of their own (zones, else hosts) whenever the nodes allow it,
    each master getting C(replicas) replicas while nodes last. The new masters then get their share of the slots
    (by O(nodes[].weight)), keys included; the replicas of the new masters attach after the moves (attached to an
    empty master, Redis and Valkey send a replica elsewhere while its master's first slots arrive). Redis and Valkey
    may still move a replica on their own while slots move (replica migration to an orphaned master); after the moves
    every replica is read and any one the cluster moved is put back where the plan puts it, with a warning.
  - Members listed in O(remove), or with O(prune) every member not in O(nodes), give their slots to the masters that stay,
    their replicas replicate a master that stays, and they are forgotten by every node and reset.
  - A cluster entry without an address (a node whose server came back at its address with an empty data directory,
    under a new id) is taken over by its replica when it still owns slots, then forgotten; the server at that address
    then joins like any new node.
  - Everything is checked before the first write. A node that is unreachable, in another cluster, holding keys or
    listed twice, a description that would leave fewer than 3 masters or take a master's last replica away, fail the
    task naming the node, and nothing changes.
options:
  nodes:
    description:
      - The nodes the cluster is to have. Members of the cluster that are not listed stay (see O(prune)).
    type: list
    elements: dict
    required: true
    suboptions:
      host:
        description: Host name or IP address of the node, as the other nodes reach it.
        type: str
        required: true
      port:
        description: Client port of the node.
        type: int
        default: 6379
      zone:
        description: Failure-domain label (availability zone, rack). Without it the host is the failure domain.
        type: str
      role:
        description:
          - A hint for a node that is not a master owning slots yet. V(master) makes it one of the masters, V(replica)
            keeps it a replica. A master that owns slots stays one (drain it first), a replica stays one (fail over).
        type: str
        choices: [master, replica]
      weight:
        description: Relative share of the slots this node gets as a master (1 when not given). 0 moves its slots to the other masters and makes it a replica.
        type: float
  replicas:
    description: Replicas per master.
    type: int
    default: 1
  join_role:
    description:
      - V(auto) lets new nodes form new shards (masters and their replicas) as the node count asks. V(replica) adds
        them all as replicas of the existing masters (the ones with the fewest replicas, in another zone).
    type: str
    choices: [auto, replica]
    default: auto
  remove:
    description:
      - Members to take out of the cluster, as host:port (IPv6 in brackets). Their slots move to the masters that
        stay, keys included, then every node forgets them. A node not in the cluster is skipped.
    type: list
    elements: str
    default: []
  prune:
    description: Also take out every member that is not in O(nodes), as O(remove) does.
    type: bool
    default: false
  allow_master_without_replica:
    description:
      - By default a description that would take the last replica of a master away (its replicas leave and no node
        can take their place) is refused. True lets it go on with a warning.
    type: bool
    default: false
  rebalance:
    description:
      - Keep every master within O(threshold) percent of its share of the slots (by weight), moving slots and their
        keys. When false, slots only move off members that leave.
    type: bool
    default: true
  threshold:
    description: Percent a master may be off its share before slots move.
    type: float
    default: 2
  method:
    description: How slots move; see M(hashslot.redis.redis_cluster_reshard).
    type: str
    choices: [auto, atomic, keys]
    default: auto
  pipeline:
    description: Keys per MIGRATE call when slots move key by key.
    type: int
    default: 1000
  parallel:
    description: Moves between distinct pairs of masters run at once.
    type: int
    default: 4
  migrate_timeout:
    description: Milliseconds a single MIGRATE call (or an atomic migration's step) may take.
    type: int
    default: 60000
  wait_timeout:
    description: Seconds to wait, after each change, for the nodes to agree on the configuration.
    type: float
    default: 120
extends_documentation_fragment:
  - hashslot.redis.connection
attributes:
  check_mode:
    support: full
    description: Returns the plan (RV(steps)) and nothing is written. Nodes that do not answer yet are taken for new, empty nodes.
  diff_mode:
    support: full
    description: Shows the layout before and after, one line per node.
seealso:
  - module: hashslot.redis.redis_cluster_create
  - module: hashslot.redis.redis_cluster_reshard
  - module: hashslot.redis.redis_cluster_node
author:
  - hashslot.redis contributors (@hashslot)
'''

EXAMPLES = r'''
- name: Eight nodes in three zones, one replica per master (forms, or grows the cluster to this)
  hashslot.redis.redis_cluster:
    nodes:
      - {host: 10.0.1.10, port: 6379, zone: a}
      - {host: 10.0.2.10, port: 6379, zone: b}
      - {host: 10.0.3.10, port: 6379, zone: c}
      - {host: 10.0.1.11, port: 6379, zone: a}
      - {host: 10.0.2.11, port: 6379, zone: b}
      - {host: 10.0.3.11, port: 6379, zone: c}
      - {host: 10.0.1.12, port: 6379, zone: a}
      - {host: 10.0.2.12, port: 6379, zone: b}
    replicas: 1
    login_user: admin
    login_password: "{{ vault_redis_admin_password }}"

- name: Take two nodes out, their slots and keys moved first
  hashslot.redis.redis_cluster:
    nodes: "{{ redis_cluster_nodes | rejectattr('port', 'in', [7006, 7007]) }}"
    remove: ["10.0.1.12:7006", "10.0.2.12:7007"]

- name: Show the plan only
  hashslot.redis.redis_cluster:
    nodes: "{{ redis_cluster_nodes }}"
  check_mode: true
  diff: true
  register: plan
'''

RETURN = r'''
steps:
  description:
    - What was done (or, in check mode, would be done), in order. Each names its nodes. C(step) is one of C(create),
      C(takeover), C(forget), C(join), C(replicate), C(rebalance) or C(drain) (with C(moves), each a source, target and
      slot count). C(create) counts its actions by kind (C(addslots), C(set_config_epoch), C(meet), C(replicate)).
  returned: always
  type: list
  elements: dict
  sample: [{step: join, node: "10.0.1.12:6379", role: master}, {step: replicate, node: "10.0.2.12:6379", master: "10.0.1.12:6379"},
           {step: rebalance, moves: [{source: "10.0.1.10:6379", target: "10.0.1.12:6379", slot_count: 1366}]}]
not_serving:
  description:
    - Nodes of the description that did not answer (check mode only; a real run fails on them). The plan takes them for
      new, empty nodes, as they are before a first run starts them.
  returned: always
  type: list
  elements: str
masters:
  description: The masters of the planned layout.
  returned: always
  type: list
  elements: str
moves:
  description: The slot moves that ran (source, target, slots, slot_count, keys), as M(hashslot.redis.redis_cluster_reshard) returns them.
  returned: when slots were considered for moving (not in check mode)
  type: list
  elements: dict
cluster:
  description: The nodes of the cluster after the run.
  returned: when not in check mode
  type: list
  elements: dict
duration:
  description: Seconds the module spent.
  returned: always
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hashslot.redis.plugins.module_utils.cluster_desired import converge
from ansible_collections.hashslot.redis.plugins.module_utils.module_support import run_cluster_module
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import common_argument_spec, node_argument_spec
from ansible_collections.hashslot.redis.plugins.module_utils.slot_migration import MigrationSettings


def main():
    argument_spec = common_argument_spec()
    node_options = node_argument_spec(with_zone=True)['options']
    node_options.update(role=dict(type='str', choices=['master', 'replica']), weight=dict(type='float'))
    argument_spec.update(
        nodes=dict(type='list', elements='dict', required=True, options=node_options),
        replicas=dict(type='int', default=1),
        join_role=dict(type='str', default='auto', choices=['auto', 'replica']),
        remove=dict(type='list', elements='str', default=[]),
        prune=dict(type='bool', default=False),
        allow_master_without_replica=dict(type='bool', default=False),
        rebalance=dict(type='bool', default=True),
        threshold=dict(type='float', default=2),
        method=dict(type='str', default='auto', choices=['auto', 'atomic', 'keys']),
        pipeline=dict(type='int', default=1000),
        parallel=dict(type='int', default=4),
        migrate_timeout=dict(type='int', default=60000),
        wait_timeout=dict(type='float', default=120),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    settings = MigrationSettings(pipeline=max(1, params['pipeline']), parallel=max(1, params['parallel']),
                                 migrate_timeout=max(1, params['migrate_timeout']))
    run_cluster_module(module, lambda pool: converge(
        pool, params['nodes'], params['replicas'], settings, remove=params['remove'], prune=params['prune'], join_role=params['join_role'],
        rebalance=params['rebalance'], threshold=params['threshold'], method=params['method'], wait_timeout=params['wait_timeout'],
        check_mode=module.check_mode, allow_master_without_replica=params['allow_master_without_replica']))


if __name__ == '__main__':
    main()
