#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: redis_failover
short_description: Promote a Redis or Valkey cluster replica to master, verified
version_added: 0.1.0
description:
  - Runs C(CLUSTER FAILOVER) on O(node) and returns only after verifying with C(ROLE) that O(node) is a master, that its
    old master (when reachable) is now its replica, and that every reachable node sees O(node) as the owner of the slots.
  - When O(node) is already a master that owns slots, nothing changes.
  - In the C(default) mode the master stops writes, the replica catches up with its replication offset, and only then
    takes over, so no acknowledged write is lost. Redis aborts a manual failover the master does not complete in 5 s;
    the module then issues it again until O(timeout).
  - A C(default) failover of a master with a slot open (C(MIGRATING) or C(IMPORTING), as while a reshard runs or after
    one stopped part-way) is refused before anything is written, naming the slots; finish the reshard or run
    M(hashslot.redis.redis_cluster_reshard) with C(action=fix) first. Should a failover still happen mid-migration,
    C(action=fix) finishes the migration with the new master.
options:
  node:
    description: The replica to promote.
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
  mode:
    description:
      - C(default) needs the master to be up and hands over without losing acknowledged writes.
      - C(force) does not wait for the master (use when it is down); writes it did not replicate are lost.
      - C(takeover) does not even wait for the other masters to agree (use when the majority is unreachable).
    type: str
    choices: [default, force, takeover]
    default: default
  timeout:
    description: Seconds to wait for the promotion and for the cluster to agree.
    type: float
    default: 60
extends_documentation_fragment:
  - hashslot.redis.connection
attributes:
  check_mode:
    support: full
    description: Validates the node and returns the planned RV(actions) without failing over.
  diff_mode:
    support: full
    description: Shows the topology before and after.
author:
  - hashslot.redis contributors (@hashslot)
'''

EXAMPLES = r'''
- name: Hand over a shard to its replica before maintenance on the master's host
  hashslot.redis.redis_failover:
    node: {host: 10.0.2.11, port: 6379}

- name: The master is gone for good, promote without it
  hashslot.redis.redis_failover:
    node: {host: 10.0.2.11, port: 6379}
    mode: force
'''

RETURN = r'''
actions:
  description: The failover done (or planned in check mode); empty when O(node) already was a master.
  returned: always
  type: list
  elements: dict
  sample: [{action: failover, node: "10.0.2.11:6379", mode: default, old_master: "10.0.1.10:6379"}]
node:
  description: The node, as host:port.
  returned: always
  type: str
role:
  description: Role of O(node) after the run.
  returned: when not in check mode
  type: str
  sample: master
old_master:
  description: The master O(node) replaced.
  returned: when a failover happened
  type: str
duration:
  description: Seconds spent.
  returned: always
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hashslot.redis.plugins.module_utils.cluster_failover import promote_replica
from ansible_collections.hashslot.redis.plugins.module_utils.module_support import run_cluster_module
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import common_argument_spec, node_argument_spec


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        node=node_argument_spec(),
        mode=dict(type='str', default='default', choices=['default', 'force', 'takeover']),
        timeout=dict(type='float', default=60),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    node = module.params['node']
    run_cluster_module(module, lambda pool: promote_replica(pool, node['host'], node['port'], module.params['mode'], module.params['timeout'],
                                                            module.check_mode))


if __name__ == '__main__':
    main()
