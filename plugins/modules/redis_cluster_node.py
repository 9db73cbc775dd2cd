#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: redis_cluster_node
short_description: Add a node to a Redis or Valkey cluster, or remove one
version_added: 0.1.0
description:
  - C(state=present) meets an empty node into the cluster, waits until every node knows it, and makes it a replica when
    O(role=replica). A new master gets no slots; move slots to it with the reshard module.
  - C(state=absent) forgets the node on every other node (within Redis's 60 s ban window, so gossip does not bring it
    back) and resets it with C(CLUSTER RESET SOFT) when it is reachable. A dead node is removed the same way.
  - A master that still owns slots is refused with a message saying to drain it first, unless O(drain=true); a master
    with replicas is refused too.
  - Every live member must be reachable; a member that is down but not yet flagged C(fail) stops the run before anything
    is written.
options:
  cluster:
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
  node:
    description: The node to add or remove. Required unless O(node_id) names the node to remove.
    type: dict
    suboptions:
      host:
        description: Host name or IP address, as the other nodes reach it.
        type: str
        required: true
      port:
        description: Client port.
        type: int
        default: 6379
      zone:
        description: Failure-domain label of the node, used to choose its master.
        type: str
  node_id:
    description:
      - With O(state=absent), the node to remove by its id (or a unique prefix of 8 characters or more) instead of
        its address.
      - The way to forget a node the cluster lists without an address (C(noaddr)). A server that came back at its
        address with another node id (an empty data directory) leaves its old id so, and no address names it any more.
        Such a node is only forgotten on every member. One that still owns slots is refused, naming the replica to
        promote first (hashslot.redis.redis_failover C(mode=takeover)); redis_cluster_info reports these as
        C(ghost_node).
    type: str
    version_added: 0.2.0
  state:
    description: Whether the node should be a member.
    type: str
    choices: [present, absent]
    default: present
  role:
    description: Role of a present node.
    type: str
    choices: [master, replica]
    default: replica
  master:
    description:
      - Master of a replica. Default the master with the fewest replicas, preferring another failure domain than the node's.
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
  zones:
    description: Failure-domain labels of the members, keyed by C(host:port) or node id, used to choose a master.
    type: dict
    default: {}
  drain:
    description:
      - With O(state=absent), first move every slot of a master that still owns some to the other masters (as
        hashslot.redis.redis_cluster_reshard C(action=drain) does), then remove it. Without it such a master is refused.
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait for the cluster to learn (or forget) the node.
    type: float
    default: 60
extends_documentation_fragment:
  - hashslot.redis.connection
attributes:
  check_mode:
    support: full
    description: Validates and returns the planned RV(actions); nothing is written.
  diff_mode:
    support: full
    description: Shows the topology before and after.
author:
  - hashslot.redis contributors (@hashslot)
'''

EXAMPLES = r'''
- name: Add a replica in zone c; its master is chosen for it
  hashslot.redis.redis_cluster_node:
    cluster: {host: 10.0.1.10, port: 6379}
    node: {host: 10.0.3.12, port: 6379, zone: c}
    role: replica

- name: Add an empty master (rebalance afterwards)
  hashslot.redis.redis_cluster_node:
    cluster: {host: 10.0.1.10, port: 6379}
    node: {host: 10.0.1.12, port: 6379}
    role: master

- name: Scale in - empty a master of its slots, then remove it
  hashslot.redis.redis_cluster_node:
    cluster: {host: 10.0.1.10, port: 6379}
    node: {host: 10.0.1.12, port: 6379}
    state: absent
    drain: true

- name: Remove a replica whose host died
  hashslot.redis.redis_cluster_node:
    cluster: {host: 10.0.1.10, port: 6379}
    node: {host: 10.0.2.11, port: 6379}
    state: absent

- name: Forget the old id a node left when it came back with an empty data directory (a ghost_node problem)
  hashslot.redis.redis_cluster_node:
    cluster: {host: 10.0.1.10, port: 6379}
    node_id: 1982c270332ba172791fd75272c213c8d5f1254e
    state: absent
'''

RETURN = r'''
actions:
  description: What was done (or planned in check mode), in order.
  returned: always
  type: list
  elements: dict
  sample: [{action: meet, node: "10.0.3.12:6379", peer: "10.0.1.10:6379"}, {action: replicate, node: "10.0.3.12:6379", master: "10.0.1.10:6379"}]
node:
  description: The node, as host:port (its id when named by O(node_id)).
  returned: always
  type: str
duration:
  description: Seconds spent.
  returned: always
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hashslot.redis.plugins.module_utils.cluster_membership import ensure_absent, ensure_present
from ansible_collections.hashslot.redis.plugins.module_utils.cluster_reshard import reshard
from ansible_collections.hashslot.redis.plugins.module_utils.module_support import run_cluster_module
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import common_argument_spec, node_argument_spec
from ansible_collections.hashslot.redis.plugins.module_utils.slot_migration import MigrationSettings


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        cluster=node_argument_spec(),
        node=node_argument_spec(required=False, with_zone=True),
        node_id=dict(type='str'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        role=dict(type='str', default='replica', choices=['master', 'replica']),
        master=node_argument_spec(required=False),
        zones=dict(type='dict', default={}),
        drain=dict(type='bool', default=False),
        wait_timeout=dict(type='float', default=60),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, required_one_of=[('node', 'node_id')],
                           mutually_exclusive=[('node', 'node_id')], required_if=[('state', 'present', ('node',))])
    params = module.params

    def operation(pool):
        def drain_first(check_mode):
            return reshard(pool, params['cluster']['host'], params['cluster']['port'], 'drain', MigrationSettings(),
                           source=params['node'], wait_timeout=params['wait_timeout'], check_mode=check_mode)

        if params['state'] == 'absent':
            return ensure_absent(pool, params['cluster'], params['node'], params['wait_timeout'], module.check_mode,
                                 drain=drain_first if params['drain'] and params['node'] else None, node_id=params['node_id'])
        return ensure_present(pool, params['cluster'], params['node'], params['role'], params['master'], params['zones'],
                              params['wait_timeout'], module.check_mode)

    run_cluster_module(module, operation)


if __name__ == '__main__':
    main()
