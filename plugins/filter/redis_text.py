# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The filters that render server files: redis_config_text (redis.conf lines) and redis_acl_text (the ACL file),
redis_acl_users (the users of that file, with the rules plugins/module_utils/acl.py defines), redis_replication_rules
(the replication user's ACL rules for a server version), redis_version_settings (the settings a version offers that the
role turns on) and redis_server_version (the version in a server's --version output).

Each is documented in its own YAML file next to this one (redis_config_text.yml, redis_acl_text.yml, ...).
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

from ansible_collections.hashslot.redis.plugins.module_utils.acl import AclError, acl_file_lines, replication_rules, server_users
from ansible_collections.hashslot.redis.plugins.module_utils.server_config import config_lines, version_settings


def _text(filter_name, value, expected, what, render):
    """The rendered lines, newline-terminated; bad input becomes a filter error naming the problem."""
    if not isinstance(value, expected):
        raise AnsibleFilterError(f'{filter_name} expects a {expected.__name__} of {what}, got {type(value).__name__}')
    try:
        return '\n'.join(render(value)) + '\n'
    except (AclError, ValueError) as exc:
        raise AnsibleFilterError(str(exc)) from exc


def redis_config_text(settings):
    return _text('redis_config_text', settings, dict, 'settings', config_lines)


def redis_acl_text(users):
    return _text('redis_acl_text', users, list, 'users', acl_file_lines)


def redis_acl_users(users, admin, replication, exporter=None, flavor='redis', version=''):
    if not isinstance(users, list) or not isinstance(admin, dict) or not isinstance(replication, dict):
        raise AnsibleFilterError('redis_acl_users expects the list of the inventory\'s users and the admin and replication users as dicts')
    return server_users(users, admin, replication, exporter, str(flavor), str(version or ''))


def redis_replication_rules(flavor, version=''):
    return replication_rules(str(flavor), str(version or ''))


def redis_version_settings(flavor, version='', zone=''):
    return version_settings(str(flavor), str(version or ''), str(zone or ''))


def redis_server_version(version_output):
    """The version in a server's --version output (Redis server v=7.0.15 ... / Valkey server v=9.1.2 ...), or ''."""
    found = re.search(r'v=([0-9][^ ]*)', str(version_output or ''))
    return found.group(1) if found else ''


class FilterModule:
    def filters(self):
        return {'redis_config_text': redis_config_text, 'redis_acl_text': redis_acl_text, 'redis_acl_users': redis_acl_users,
                'redis_replication_rules': redis_replication_rules, 'redis_version_settings': redis_version_settings,
                'redis_server_version': redis_server_version}
