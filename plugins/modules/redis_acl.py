#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: redis_acl
short_description: Make a running Redis or Valkey server load the ACL users it should have, without a restart
version_added: 0.1.0
description:
  - Compares a running server's ACL users with the wanted ones (the user set, each user's state and its password
    hashes from C(ACL GETUSER)) and runs C(ACL LOAD) when they differ or when O(reload=true), so a new user, a
    disabled user or a changed password takes effect without a restart.
  - The ACL file itself is written by the caller (the C(redis_server) role renders it with the
    C(hashslot.redis.redis_acl_text) filter from the same O(users)); this module never writes files and never runs
    C(ACL SAVE).
  - A server that was not started with O(acl_file) as its C(aclfile) cannot load it; the module then changes nothing
    and returns C(aclfile) in RV(restart_required).
  - Rules are not compared (servers rewrite them); a changed file, O(reload=true), reloads them.
  - With O(server_version), a server running another version than the one the file was written for is not asked to
    load it (its rules may name commands that version lacks, as Valkey 9's C(cluster|syncslots) for Valkey 8); the module
    changes nothing and returns C(version) in RV(restart_required) - the new server reads the file when it starts.
options:
  users:
    description:
      - The wanted users, as the C(redis_server) role's C(redis_server_acl_users) (plus its admin and replication users).
      - The C(default) user is wanted off with no rights unless listed.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: User name.
        type: str
        required: true
      password:
        description: Password (only its SHA-256 is compared).
        type: str
      password_sha256:
        description: SHA-256 of the password, instead of O(users[].password).
        type: str
      enabled:
        description: Whether the user can log in.
        type: bool
        default: true
      nopass:
        description: Any password logs the user in.
        type: bool
        default: false
      rules:
        description: ACL rules (C(~keys*), C(+@read), C(-@dangerous)); only validated here.
        type: raw
  acl_file:
    description:
      - The C(aclfile) the server must be running with; when it is not, nothing is loaded and a restart is reported.
      - Omit to load whatever file the server has.
    type: path
  server_version:
    description:
      - The server version the ACL file was written for (as the server prints it, C(9.1.2)); the C(redis_server) role
        passes the installed one. Empty - no check.
    type: str
    version_added: 0.2.0
  previous_login_password:
    description:
      - The password the server may still know O(login_user) by, tried when it refuses O(login_password) - a rotation
        of the admin's own password, which the loaded file then changes. RV(logged_in_with) says which one it took.
      - Refused with both (or with O(login_password) when this is not given), the module fails naming the node and
        saying to set this option (the C(redis_server) role's C(redis_server_admin_previous_password)).
    type: str
    version_added: 0.2.0
  reload:
    description:
      - Run C(ACL LOAD) even when users, states and passwords match (the file changed, for example its rules).
    type: bool
    default: false
extends_documentation_fragment:
  - hashslot.redis.node
  - hashslot.redis.connection
attributes:
  check_mode:
    support: full
    description: Reads the server and says whether a real run would load the file.
  diff_mode:
    support: none
    description: No diff of users is shown, because their passwords are secrets.
author:
  - hashslot.redis contributors (@hashslot)
'''

EXAMPLES = r'''
- name: Roll a new application password out to a running node, no restart
  hashslot.redis.redis_acl:
    node: {host: 10.0.1.10, port: 6379}
    login_user: hashslot-admin
    login_password: "{{ vault_redis_admin_password }}"
    acl_file: /etc/redis/redis-6379.acl
    users:
      - {name: hashslot-admin, password: "{{ vault_redis_admin_password }}", rules: ["~*", "&*", "+@all"]}
      - {name: app, password: "{{ vault_app_password }}", rules: ["~app:*", "+@read", "+@write"]}

- name: Rotate the admin's own password (the file already names the new one; the server still knows the old one)
  hashslot.redis.redis_acl:
    node: {host: 10.0.1.10, port: 6379}
    login_user: hashslot-admin
    login_password: "{{ vault_redis_admin_password }}"
    previous_login_password: "{{ vault_redis_admin_previous_password }}"
    acl_file: /etc/redis/redis-6379.acl
    reload: true
    users:
      - {name: hashslot-admin, password: "{{ vault_redis_admin_password }}", rules: ["~*", "&*", "+@all"]}
'''

RETURN = r'''
differences:
  description: What differed (user names and fields, never a password or a hash).
  returned: always
  type: list
  elements: str
  sample: ["user app password"]
logged_in_with:
  description: Which password logged O(login_user) in, C(current) (O(login_password)) or C(previous) (O(previous_login_password)).
  returned: success
  type: str
  sample: current
  version_added: 0.2.0
loaded:
  description: Whether ACL LOAD ran.
  returned: always
  type: bool
running_version:
  description: The version the server runs, when it differs from O(server_version).
  returned: when the file was left for a restart onto another version
  type: str
  version_added: 0.2.0
restart_required:
  description: C(aclfile) when the server runs without the wanted ACL file, C(version) when it runs another version than O(server_version).
  returned: always
  type: list
  elements: str
'''

from dataclasses import replace

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hashslot.redis.plugins.module_utils.acl import admin_login, sync_acl
from ansible_collections.hashslot.redis.plugins.module_utils.module_support import run_cluster_module
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import (
    NodeClient, common_argument_spec, node_argument_spec,
)


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        node=node_argument_spec(),
        users=dict(type='list', elements='dict', required=True, options=dict(
            name=dict(type='str', required=True),
            password=dict(type='str', no_log=True),
            password_sha256=dict(type='str', no_log=True),
            enabled=dict(type='bool', default=True),
            nopass=dict(type='bool', default=False),
            rules=dict(type='raw'),
        )),
        acl_file=dict(type='path'),
        reload=dict(type='bool', default=False),
        server_version=dict(type='str'),
        previous_login_password=dict(type='str', no_log=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def operation(pool):
        host, port = module.params['node']['host'], module.params['node']['port']
        users = [{key: value for key, value in user.items() if value is not None} for user in module.params['users']]
        opened = []

        def connect(options):
            client = NodeClient(host, port, options)
            opened.append(client)
            client.connect()
            return client

        def reconnect():
            # The login user's password after the load: the wanted one when it is among the users.
            options = pool.options
            wanted = next((user.get('password') for user in users if user['name'] == options.login_user), None)
            return connect(replace(options, login_password=wanted) if wanted else options)

        try:
            client, logged_in_with = admin_login(connect, pool.options, module.params['previous_login_password'])
            result = sync_acl(client, users, module.params['acl_file'], module.params['reload'], module.check_mode,
                              reconnect, server_version=module.params['server_version'])
        finally:
            for client in opened:
                client.close()
        return dict(result, logged_in_with=logged_in_with)

    run_cluster_module(module, operation)


if __name__ == '__main__':
    main()
