#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: redis_cluster_create
short_description: Form a Redis or Valkey cluster from empty nodes, idempotently
version_added: 0.1.0
description:
  - Forms a cluster from cluster-enabled nodes, the way C(redis-cli --cluster create) does, but as desired state.
  - Every node is checked before anything is written. A node that is unreachable, not cluster-enabled, already in
    another cluster, holding keys, or listed twice fails the task with a message naming it, and no node is changed.
  - Masters are spread over zones (or hosts) and no replica is placed in its master's zone (or, without zones, on its
    master's host) whenever the nodes allow it; sibling replicas are spread too. When they do not allow it, a warning
    names each pair that shares a failure domain.
  - Slots are split evenly in contiguous ranges. Config epochs are set distinct, all pairs are met directly, and the
    module returns only when every node agrees on the slot map and reports C(cluster_state:ok).
  - On a formed cluster nothing changes. A create interrupted half-way is completed by the next run.
options:
  wait_timeout:
    description: Seconds to wait for the nodes to meet and agree on the configuration.
    type: float
    default: 60
extends_documentation_fragment:
  - hashslot.redis.cluster_nodes
  - hashslot.redis.connection
attributes:
  check_mode:
    support: full
    description: Returns the planned O(nodes) layout and RV(actions); nothing is written.
  diff_mode:
    support: full
    description: Shows the topology before and after, one line per node.
author:
  - hashslot.redis contributors (@hashslot)
'''

EXAMPLES = r'''
- name: Form a three-zone cluster of six nodes
  hashslot.redis.redis_cluster_create:
    nodes:
      - {host: 10.0.1.10, port: 6379, zone: a}
      - {host: 10.0.2.10, port: 6379, zone: b}
      - {host: 10.0.3.10, port: 6379, zone: c}
      - {host: 10.0.1.11, port: 6379, zone: a}
      - {host: 10.0.2.11, port: 6379, zone: b}
      - {host: 10.0.3.11, port: 6379, zone: c}
    replicas: 1
    login_user: admin
    login_password: "{{ vault_redis_admin_password }}"

- name: Six instances on one machine, as in the guides
  hashslot.redis.redis_cluster_create:
    nodes:
      - {host: 127.0.0.1, port: 7000}
      - {host: 127.0.0.1, port: 7001}
      - {host: 127.0.0.1, port: 7002}
      - {host: 127.0.0.1, port: 7003}
      - {host: 127.0.0.1, port: 7004}
      - {host: 127.0.0.1, port: 7005}
    wait_timeout: 30
'''

RETURN = r'''
actions:
  description: What was done (or, in check mode, would be done), in order.
  returned: always
  type: list
  elements: dict
  sample: [{action: addslots, node: "10.0.1.10:6379", slots: ["0-5461"]}, {action: meet, node: "10.0.1.10:6379", peer: "10.0.2.10:6379"}]
cluster:
  description: The nodes of the cluster after the run (in check mode, as planned).
  returned: always
  type: list
  elements: dict
  sample: [{id: 07c37dfeb235213a872192d90877d0cd55635b91, address: "10.0.1.10:6379", role: master, slots: ["0-5461"], zone: a}]
duration:
  description: Seconds the module spent, from the first connection to the cluster agreeing.
  returned: always
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hashslot.redis.plugins.module_utils.cluster_create import create_cluster
from ansible_collections.hashslot.redis.plugins.module_utils.module_support import run_cluster_module
from ansible_collections.hashslot.redis.plugins.module_utils.placement import NodeSpec
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import common_argument_spec, node_argument_spec


def main():
    argument_spec = common_argument_spec()
    node_option = node_argument_spec(with_zone=True)
    argument_spec.update(
        nodes=dict(type='list', elements='dict', required=True, options=node_option['options']),
        replicas=dict(type='int', default=1),
        wait_timeout=dict(type='float', default=60),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    specs = [NodeSpec(host=item['host'], port=item['port'], zone=item.get('zone')) for item in module.params['nodes']]
    run_cluster_module(module, lambda pool: create_cluster(pool, specs, module.params['replicas'], module.params['wait_timeout'], module.check_mode))


if __name__ == '__main__':
    main()
