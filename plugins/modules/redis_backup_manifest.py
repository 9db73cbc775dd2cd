#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: redis_backup_manifest
short_description: Write the manifest of a cluster backup from its RDB files, or check a backup against it
version_added: 0.2.0
description:
  - Runs where the backup's files are (the controller, with C(delegate_to) set to C(localhost)). Reads every RDB file of a
    backup directory (a pure Python reader, no server needed) and writes C(manifest.json) beside them, with, per file, the
    node id and address it came from, the slots the node owned when it saved, the file's size and sha256, its key count
    in all and per slot, the server and its version, the time of the save, and the digests of a sample of values.
  - The counts and digests are those of the files, so a restore can check the restored cluster against the point in
    time each file holds, whatever was written to the cluster after.
  - Refuses, naming the file, a file that is missing or unreadable, a file holding keys of slots its node did not own,
    and a backup whose masters' files do not hold every one of the 16384 slots exactly once.
  - Makes the backup's directory C(0700) and its files C(0600). With O(keep), removes the oldest backups beside it.
options:
  path:
    description: The backup's directory (C(<redis_backup_dir>/<timestamp>)).
    type: path
    required: true
  state:
    description:
      - V(present) writes the manifest from the files (O(snapshots) required).
      - V(verified) writes nothing. It reads the manifest and checks that it is whole (the masters' files hold every
        slot once) and that every file it lists is there with its size and sha256, as a restore does before it trusts a
        backup, and fails naming the file otherwise.
    type: str
    choices: [present, verified]
    default: present
  snapshots:
    description:
      - The snapshots the backup took, as M(hashslot.redis.redis_snapshot) returns them, each with C(dest), the folder
        of O(path) its file was fetched to, and C(role) (C(master) unless told). The registered results of a loop
        do, the keys of each result's C(item) being taken too.
      - Required with O(state=present).
    type: list
    elements: dict
  layout:
    description: The cluster's nodes at backup time (M(hashslot.redis.redis_cluster_info)'s C(nodes)), recorded as they are.
    type: list
    elements: dict
    default: []
  sample:
    description: How many keys of each file have their value's digest recorded, for a restore to compare.
    type: int
    default: 100
  keep:
    description:
      - How many complete backups (those with a manifest) to keep in the parent directory of O(path), the newest ones;
        the older ones are removed, and so are incomplete ones (a run that failed) older than O(path). C(0) keeps all.
      - Only directories named as backup.yml names them (C(20250101T120000Z)) are considered.
    type: int
    default: 0
attributes:
  check_mode:
    support: full
    description: Reads and checks the files and says what would be removed; writes and removes nothing.
  diff_mode:
    support: none
    description: The manifest is new with each backup.
notes:
  - Reads RDB files of Redis 7.0 to 8.x and Valkey 7.2 to 9.x (strings, lists, sets, sorted sets, hashes with or without
    field expirations, streams and module values). Values of streams and of modules are counted, not sampled.
seealso:
  - module: hashslot.redis.redis_snapshot
author:
  - hashslot.redis contributors (@hashslot)
'''

EXAMPLES = r'''
- name: Describe the fetched snapshots
  hashslot.redis.redis_backup_manifest:
    path: "{{ backup_root }}"
    snapshots: "{{ snapshots.results }}"
    keep: 14
  delegate_to: localhost
  run_once: true
'''

RETURN = r'''
manifest:
  description: The manifest's path.
  returned: always
  type: str
files:
  description: Each file's entry of the manifest, without its per-slot counts and sample (C(file), C(address), C(node_id), C(slots), C(keys), C(sha256), ...).
  returned: always
  type: list
  elements: dict
key_count:
  description: Keys in all the masters' files.
  returned: always
  type: int
masters:
  description: How many masters' files the backup has.
  returned: always
  type: int
removed:
  description: The older backups removed (with O(keep)), or that would be in check mode.
  returned: always
  type: list
  elements: str
'''

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hashslot.redis.plugins.module_utils.backup import MANIFEST, BackupError, prune, read_manifest, write_manifest


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            state=dict(type='str', choices=['present', 'verified'], default='present'),
            snapshots=dict(type='list', elements='dict'),
            layout=dict(type='list', elements='dict', default=[]),
            sample=dict(type='int', default=100),
            keep=dict(type='int', default=0),
        ),
        required_if=[('state', 'present', ('snapshots',))],
        supports_check_mode=True,
    )
    params = module.params
    started = time.monotonic()
    root = os.path.normpath(params['path'])
    removed = []
    try:
        if params['state'] == 'verified':
            manifest = read_manifest(root)
        else:
            manifest = write_manifest(root, params['snapshots'], params['layout'], params['sample'], module.check_mode)
            removed = prune(os.path.dirname(root), params['keep'], root, module.check_mode)
    except (BackupError, OSError) as exc:
        module.fail_json(msg=str(exc))
    files = [{key: value for key, value in entry.items() if key not in ('slot_counts', 'sample')} for entry in manifest['files']]
    module.exit_json(changed=params['state'] == 'present', manifest=os.path.join(root, MANIFEST), files=files,
                     key_count=sum(entry['keys'] for entry in manifest['files'] if entry['role'] == 'master'), masters=manifest['masters'],
                     removed=removed, duration=round(time.monotonic() - started, 3))


if __name__ == '__main__':
    main()
