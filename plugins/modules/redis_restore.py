#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: redis_restore
short_description: Bring a Redis or Valkey cluster back from a backup's files, checked key by key
version_added: 0.2.0
description:
  - The cluster side of C(playbooks/restore.yml), in two steps around the placing of the files (which the playbook does
    on the hosts).
  - O(state=planned) reads every node of O(nodes) and writes nothing. It refuses nodes that hold data or belong to a
    cluster (unless O(force)), and a backup with more masters than the nodes make. It says which node loads which file
    of the backup (C(placements)) and where each node keeps its files (the server's C(dir), C(dbfilename),
    C(appenddirname), C(appendfilename), C(cluster-config-file)). The masters are chosen as a new cluster's are, spread
    over zones; a node listed at the address of a backed-up master stays that master.
  - O(state=restored), once each master started with its file and an empty cluster configuration (the server then
    owns the slots its keys are in), gives each master the rest of the slots its file's node owned, gives the masters
    distinct config epochs, makes the nodes meet, attaches the replicas (zone-aware) and waits until they copied their
    masters. It then checks the cluster against the manifest, failing the task on any difference - every slot is
    owned, each slot has the keys its file has (less those whose TTL ended since), and each sampled value has the
    digest recorded from the file. A run cut short is completed by the next; a restored cluster is checked again.
options:
  manifest:
    description: The backup's C(manifest.json) (M(hashslot.redis.redis_backup_manifest)), on the host the module runs on.
    type: path
    required: true
  state:
    description: V(planned) checks the nodes and says which file goes where; V(restored) forms the cluster around the loaded files and checks it.
    type: str
    choices: [planned, restored]
    default: restored
  force:
    description: With O(state=planned), accept nodes that hold data or belong to a cluster (the playbook then wipes them).
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait for the nodes to agree and for the replicas to copy their masters.
    type: float
    default: 600
extends_documentation_fragment:
  - hashslot.redis.cluster_nodes
  - hashslot.redis.connection
attributes:
  check_mode:
    support: full
    description: O(state=planned) never writes; O(state=restored) returns the actions it would take.
  diff_mode:
    support: partial
    description: O(state=planned) returns the layout of the restored cluster.
seealso:
  - module: hashslot.redis.redis_backup_manifest
  - module: hashslot.redis.redis_cluster_create
author:
  - hashslot.redis contributors (@hashslot)
'''

EXAMPLES = r'''
- name: Which file goes where (refused if a node holds data)
  hashslot.redis.redis_restore:
    manifest: /var/tmp/hashslot-restore/manifest.json
    nodes: "{{ redis_cluster_nodes }}"
    state: planned
  register: plan

- name: Form the cluster around the loaded files and check it against the manifest
  hashslot.redis.redis_restore:
    manifest: /var/tmp/hashslot-restore/manifest.json
    nodes: "{{ redis_cluster_nodes }}"
'''

RETURN = r'''
placements:
  description:
    - With O(state=planned), each master of the restored cluster and the file it loads (C(node), C(file), C(sha256),
      C(size), C(keys), C(slots), C(backup_node)), with where the node keeps its files and its server's C(executable).
  returned: state is planned
  type: list
  elements: dict
empty:
  description: With O(state=planned), the nodes that start without data (replicas, and masters beyond the backup's), with where they keep their files.
  returned: state is planned
  type: list
  elements: dict
not_empty:
  description: With O(state=planned) and O(force), the nodes that held data.
  returned: state is planned
  type: list
  elements: str
masters:
  description: The masters of the restored cluster.
  returned: always
  type: list
  elements: str
replicas:
  description: Each replica's master.
  returned: always
  type: dict
actions:
  description: With O(state=restored), what was (or would be) done (C(addslots), C(set_config_epoch), C(meet), C(replicate)).
  returned: state is restored
  type: list
  elements: dict
verified:
  description: Per master, the keys found and in its file, the slots, and how many sampled values were compared and differed.
  returned: state is restored and not in check mode
  type: list
  elements: dict
summary:
  description: The check in words, a line per master.
  returned: state is restored and not in check mode
  type: list
  elements: str
problems:
  description: The differences from the backup (the task fails when there is one).
  returned: state is restored and not in check mode
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hashslot.redis.plugins.module_utils.backup import BackupError, load_manifest
from ansible_collections.hashslot.redis.plugins.module_utils.module_support import run_cluster_module
from ansible_collections.hashslot.redis.plugins.module_utils.cluster_desired import wanted_nodes
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import common_argument_spec
from ansible_collections.hashslot.redis.plugins.module_utils.restore import complete_restore, plan_restore


def main() -> None:
    argument_spec = common_argument_spec()
    argument_spec.update(
        manifest=dict(type='path', required=True),
        nodes=dict(type='list', elements='dict', required=True, options=dict(
            host=dict(type='str', required=True),
            port=dict(type='int', default=6379),
            zone=dict(type='str'),
        )),
        replicas=dict(type='int', default=1),
        state=dict(type='str', choices=['planned', 'restored'], default='restored'),
        force=dict(type='bool', default=False),
        wait_timeout=dict(type='float', default=600),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    try:
        manifest = load_manifest(params['manifest'])
    except BackupError as exc:
        module.fail_json(msg=str(exc))

    def operation(pool):
        specs = [node.spec for node in wanted_nodes(params['nodes'])]
        if params['state'] == 'planned':
            return plan_restore(pool, manifest, specs, params['replicas'], params['force'])
        return complete_restore(pool, manifest, specs, params['replicas'], params['wait_timeout'], module.check_mode)

    run_cluster_module(module, operation)


if __name__ == '__main__':
    main()
