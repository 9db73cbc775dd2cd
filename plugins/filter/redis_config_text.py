# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
name: redis_config_text
short_description: Render a settings dict as redis.conf / valkey.conf lines
version_added: 0.1.0
description:
  - One C(name value) line per setting, in the dict's order; booleans become C(yes)/C(no); a list repeats the
    directive; values with spaces or quotes are quoted the way the server's parser reads them.
  - The C(redis_config) module applies the same dict to a running server.
positional: _input
options:
  _input:
    description: Directive name to value.
    type: dict
    required: true
author:
  - hashslot.redis contributors
'''

EXAMPLES = r'''
- name: Write a config file from settings
  ansible.builtin.copy:
    content: "{{ {'port': 7000, 'cluster-enabled': true, 'save': '3600 1'} | hashslot.redis.redis_config_text }}"
    dest: /etc/redis/redis-7000.conf
    mode: "0640"
'''

RETURN = r'''
_value:
  description: The configuration text, one directive per line, ending with a newline.
  type: str
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.hashslot.redis.plugins.module_utils.server_config import config_lines


def redis_config_text(settings):
    if not isinstance(settings, dict):
        raise AnsibleFilterError(f'redis_config_text expects a dict of settings, got {type(settings).__name__}')
    try:
        return '\n'.join(config_lines(settings)) + '\n'
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self):
        return {'redis_config_text': redis_config_text}
