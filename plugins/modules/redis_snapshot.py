#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: redis_snapshot
short_description: Write an RDB snapshot of a Redis or Valkey node and wait until it is on disk
version_added: 0.1.0
description:
  - Sends C(BGSAVE SCHEDULE) (a save starts as soon as a running AOF rewrite ends) and waits until a snapshot
    begun after the request has finished, then returns the file's path from C(CONFIG GET dir) and C(dbfilename),
    so a playbook can copy it.
  - A save already in progress when the task starts is waited out and a new one is requested, so the file
    returned always holds the data as of the task, not older.
  - Fails, naming the node, when the save fails (C(rdb_last_bgsave_status) is not C(ok)) or does not finish
    within O(wait_timeout).
options:
  wait_timeout:
    description: Seconds to wait for the snapshot to be written.
    type: float
    default: 600
extends_documentation_fragment:
  - hashslot.redis.node
  - hashslot.redis.connection
attributes:
  check_mode:
    support: full
    description: Returns the file's path and reports a change; nothing is saved.
  diff_mode:
    support: none
    description: A snapshot writes the dump file; there is no configuration to diff.
author:
  - hashslot.redis contributors (@hashslot)
'''

EXAMPLES = r'''
- name: Snapshot a master
  hashslot.redis.redis_snapshot:
    node: {host: 10.0.1.10, port: 6379}
    wait_timeout: 1800
  register: snapshot

- name: Copy it to the controller
  ansible.builtin.fetch:
    src: "{{ snapshot.path }}"
    dest: "backups/{{ inventory_hostname }}/"
    flat: true
'''

RETURN = r'''
path:
  description: The RDB file on the node's host.
  returned: always
  type: str
  sample: /var/lib/redis/6379/dump.rdb
last_save_time:
  description: Unix time of the last successful save (in check mode, the one before the task).
  returned: always
  type: int
node_id:
  description: The node's cluster id (null when cluster support is off).
  returned: always
  type: str
slots:
  description:
    - The slots the node owned while it saved (ranges such as C(0-5460)), so the file holds the keys of these slots.
      The task fails when they changed between the request and the end of the save (a slot moving meanwhile).
  returned: always
  type: list
  elements: str
  sample: ["0-5460"]
server:
  description: C(redis) or C(valkey).
  returned: always
  type: str
version:
  description: The server's version.
  returned: always
  type: str
  sample: 8.1.1
duration:
  description: Seconds from the request until the snapshot was on disk.
  returned: when a snapshot was taken
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hashslot.redis.plugins.module_utils.module_support import run_cluster_module
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import common_argument_spec, node_argument_spec
from ansible_collections.hashslot.redis.plugins.module_utils.snapshot import take_snapshot


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        node=node_argument_spec(),
        wait_timeout=dict(type='float', default=600),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def operation(pool):
        client = pool.get(module.params['node']['host'], module.params['node']['port'])
        return take_snapshot(client, module.params['wait_timeout'], module.check_mode)

    run_cluster_module(module, operation)


if __name__ == '__main__':
    main()
