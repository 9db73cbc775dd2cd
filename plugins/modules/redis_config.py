#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: redis_config
short_description: Bring a running Redis or Valkey server's settings to a desired state without a restart
version_added: 0.1.0
description:
  - Compares each wanted setting with the server's C(CONFIG GET) answer and changes the ones that differ with
    C(CONFIG SET), one at a time, so the server never restarts for a setting it can take at run time.
  - Settings that only a restart applies (the port, the data directory, C(cluster-enabled), C(daemonize), TLS
    files and the like, or any the server calls immutable) are never changed; they are returned in
    RV(restart_required) so the caller can schedule a rolling restart.
  - Values are compared the way the server stores them (C(4gb) is C(4294967296), C(true) is C(yes)).
  - Every setting is checked against the server before the first change; one the server does not know fails
    the task with nothing changed - unless the server runs another version than O(server_version), the one the
    settings were written for (an upgrade installed it and restarts the server later); then settings it does not know,
    or whose value it refuses, are returned in RV(restart_required).
  - It never runs C(CONFIG REWRITE); the configuration file is the caller's (the C(redis_server) role templates it
    from the same settings).
options:
  settings:
    description:
      - Wanted settings, directive name to value (booleans become C(yes)/C(no)).
      - A list value is a directive repeated in the file (C(rename-command)); it is read only at start-up and is
        not compared.
      - The values of secret settings (C(masterauth), C(requirepass), C(tls-key-file-pass), C(tls-client-key-file-pass))
        are masked wherever the result shows them, its diff and invocation included.
    type: dict
    required: true
  reload_tls:
    description:
      - Make the server re-read its TLS certificate, key and CA files now, without a restart (C(CONFIG SET
        tls-cert-file) to the path it already has, which rebuilds the server's TLS context). Set it when the files
        changed on disk (a renewed or re-issued certificate); new connections get the new certificate, open ones
        keep theirs.
      - A server without TLS is left alone. Files that do not belong together (a key of another certificate) fail
        the task and the server keeps serving the previous ones.
      - The task is C(changed) when the files were reloaded (in check mode, when they would be).
    type: bool
    default: false
    version_added: 0.2.0
  server_version:
    description:
      - The server version the settings were written for (as the server prints it, C(9.1.2)); the C(redis_server)
        role passes the installed one. Empty - no check.
    type: str
    version_added: 0.2.0
extends_documentation_fragment:
  - hashslot.redis.node
  - hashslot.redis.connection
attributes:
  check_mode:
    support: full
    description: Reads the server and returns the settings a real run would change.
  diff_mode:
    support: full
    description: Shows the changed settings before and after (secrets masked).
author:
  - hashslot.redis contributors (@hashslot)
'''

EXAMPLES = r'''
- name: Raise maxmemory on a running node, no restart
  hashslot.redis.redis_config:
    node: {host: 10.0.1.10, port: 6379}
    settings:
      maxmemory: 8gb
      maxmemory-policy: allkeys-lru
  register: applied

- name: Say which nodes need the rolling restart playbook
  ansible.builtin.debug:
    msg: "restart needed for {{ applied.restart_required }}"
  when: applied.restart_required | length > 0

- name: Serve a renewed certificate (same paths, new files) without a restart
  hashslot.redis.redis_config:
    node: {host: 10.0.1.10, port: 6379}
    settings: {}
    reload_tls: true
    tls: true
    ca_certs: /etc/redis/tls/ca.crt
'''

RETURN = r'''
settings_changed:
  description: Settings changed with CONFIG SET (in check mode, the ones a real run would change).
  returned: always
  type: list
  elements: str
  sample: [maxmemory]
restart_required:
  description: Settings whose running value differs from the wanted one and that only a restart applies.
  returned: always
  type: list
  elements: str
  sample: [databases]
tls_reloaded:
  description: Whether the server re-read its TLS files (O(reload_tls); in check mode, whether it would).
  returned: always
  type: bool
  version_added: 0.2.0
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hashslot.redis.plugins.module_utils.module_support import run_cluster_module
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import common_argument_spec, node_argument_spec
from ansible_collections.hashslot.redis.plugins.module_utils.server_config import ConfigApplyError, apply_settings, reload_tls, secret_values


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        node=node_argument_spec(),
        settings=dict(type='dict', required=True),
        reload_tls=dict(type='bool', default=False),
        server_version=dict(type='str'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    # `settings` is a plain dict, so Ansible does not know that masterauth or requirepass in it are secrets: without
    # this their values would come back in the result's invocation (shown at -v and above).
    module.no_log_values.update(secret_values(module.params['settings']))

    def operation(pool):
        client = pool.get(module.params['node']['host'], module.params['node']['port'])
        try:
            result = apply_settings(client, module.params['settings'], module.check_mode, module.params['server_version'])
            result['tls_reloaded'] = module.params['reload_tls'] and reload_tls(client, module.check_mode)
            result['changed'] = result['changed'] or result['tls_reloaded']
            return result
        except ConfigApplyError as exc:
            return dict(changed=False, failure=str(exc))

    run_cluster_module(module, operation)


if __name__ == '__main__':
    main()
