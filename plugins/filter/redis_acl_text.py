# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
name: redis_acl_text
short_description: Render ACL users as the server's ACL file (aclfile), passwords hashed
version_added: 0.1.0
description:
  - One C(user <name> on|off resetpass #<sha256> <rules>) line per user, in the list's order; the C(default) user
    comes first, disabled and without rights, unless the list names it.
  - Passwords are written as their SHA-256 only, so the same users always render the same text and a changed
    password is a changed line. Rules that would carry a password or the user's state (C(>pass), C(#hash), C(on),
    C(nopass), ...) are refused: those come from the user's own fields.
positional: _input
options:
  _input:
    description:
      - The users. Each is a dict with C(name), one of C(password) or C(password_sha256) (not needed when
        C(enabled=false), or with C(nopass=true)), C(rules) (a list of ACL rules or one space-separated string)
        and C(enabled) (default true).
    type: list
    elements: dict
    required: true
author:
  - hashslot.redis contributors
'''

EXAMPLES = r'''
- name: Write an ACL file
  ansible.builtin.copy:
    content: >-
      {{ [{'name': 'app', 'password': app_password, 'rules': '~app:* +@read +@write -@dangerous'}]
         | hashslot.redis.redis_acl_text }}
    dest: /etc/redis/redis-6379.acl
    owner: root
    group: redis
    mode: "0640"
  no_log: true
'''

RETURN = r'''
_value:
  description: The ACL file text, one user per line, ending with a newline.
  type: str
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.hashslot.redis.plugins.module_utils.acl import AclError, acl_file_lines


def redis_acl_text(users):
    if not isinstance(users, list):
        raise AnsibleFilterError(f'redis_acl_text expects a list of users, got {type(users).__name__}')
    try:
        return '\n'.join(acl_file_lines(users)) + '\n'
    except AclError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self):
        return {'redis_acl_text': redis_acl_text}
