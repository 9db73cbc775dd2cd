# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""ACL users as data, and the ACL file the server reads (`aclfile`): pure Python, no server, no AnsibleModule.

A user is a dict: name, enabled, a password (hashed here) or its SHA-256, and rules (ACL SETUSER tokens such as
`~app:*`, `+@read`, `-@dangerous`). Passwords never reach the file or a message: the file holds `#<sha256>`, the only
form the server needs, so the same inventory always renders the same bytes and a changed password is a changed hash.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import LoginRefused, NodeError, parse_version
from ansible_collections.hashslot.redis.plugins.module_utils.server_config import running_version

# What the collection's own users may do. The admin runs the modules (CLUSTER, MIGRATE, CONFIG, ACL, ...).
ADMIN_RULES = ('~*', '&*', '+@all')
# A replica authenticates to its master with masteruser/masterauth and needs only these (Redis and Valkey docs).
REPLICATION_RULES = ('+psync', '+replconf', '+ping')
# Valkey 9's atomic slot migration: the source logs in to the target as its masteruser (primaryuser) and replays the
# slots' keys, then the writes that follow, as that user (SELECT, MULTI/EXEC and any write command). Not the commands
# that wipe or swap whole databases. Valkey before 9 refuses an ACL file naming cluster|syncslots.
ATOMIC_MIGRATION_RULES = ('+cluster|syncslots', '~*', '+select', '+multi', '+exec', '+@write', '-flushall', '-flushdb', '-swapdb')
ATOMIC_MIGRATION_SINCE = (9, 0)
# Applications: every key and command except the dangerous and administrative categories (FLUSHALL, CONFIG, DEBUG,
# SHUTDOWN, ACL, ...). An inventory's own rules replace these.
APPLICATION_RULES = ('~*', '&*', '+@all', '-@dangerous', '-@admin')

NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}$')
SHA256 = re.compile(r'^[0-9a-f]{64}$')
# Tokens the rendering owns: state and passwords come from `enabled` and the password fields, never from rules.
OWNED_TOKENS = ('on', 'off', 'nopass', 'resetpass', 'reset')
OWNED_PREFIXES = ('>', '<', '#', '!')


def replication_rules(flavor: str, version: str = '') -> List[str]:
    """The replication user's rules for a server: REPLICATION_RULES, plus ATOMIC_MIGRATION_RULES on Valkey 9.0 and
    later (`version` as the server prints it; an unknown version gets the rules every server accepts)."""
    rules = list(REPLICATION_RULES)
    if str(flavor).lower() == 'valkey' and parse_version(str(version or ''))[:2] >= ATOMIC_MIGRATION_SINCE:
        rules += ATOMIC_MIGRATION_RULES
    return rules


def server_users(inventory_users: Iterable[Dict[str, Any]], admin: Dict[str, Any], replication: Dict[str, Any],
                 exporter: Optional[Dict[str, Any]] = None, flavor: str = 'redis', version: str = '') -> List[Dict[str, Any]]:
    """The users of the redis_server role's ACL file, in order: the admin (ADMIN_RULES), the replication user (its
    rules for the server `flavor` and `version`), the exporter's user when it has a password (its own rules), then the
    inventory's users, which get APPLICATION_RULES unless they give their own. `admin` and `replication` are
    {name, password}; the dicts are copied, never changed."""
    users = [dict(admin, rules=list(ADMIN_RULES)), dict(replication, rules=replication_rules(flavor, version))]
    if exporter and exporter.get('password'):
        users.append(dict(exporter))
    users += [{'rules': list(APPLICATION_RULES), **user} for user in inventory_users]
    return users


def admin_login(connect: Callable[[Any], Any], options: Any, previous_password: Optional[str] = None) -> Tuple[Any, str]:
    """A client logged in as `options.login_user`, and the password that did it: `current` (options.login_password) or
    `previous` - a rotation, where the server still knows the admin by `previous_password` until it loads the new file.

    `connect(options)` returns a connected client or raises LoginRefused. Refused with both (or with the only one), the
    error says what to set, rather than the caller matching the text of a refusal.
    """
    try:
        return connect(options), 'current'
    except LoginRefused as exc:
        refused = exc
    if previous_password:
        try:
            return connect(replace(options, login_password=previous_password)), 'previous'
        except LoginRefused:
            pass
    tried = 'login_password and previous_login_password' if previous_password else 'login_password'
    raise NodeError(refused.address, f'refused the admin user {options.login_user} with {tried}, so its ACL users were not loaded; '
                    'when rotating the admin password, set previous_login_password (the redis_server role: '
                    'redis_server_admin_previous_password) to the one the server still has')


class AclError(ValueError):
    """Bad ACL input: the message names the user and the reason, never a password."""


def password_sha256(password: str) -> str:
    return hashlib.sha256(password.encode('utf-8')).hexdigest()


def _rules(name: str, rules: Any) -> List[str]:
    if rules is None:
        return []
    if isinstance(rules, str):
        rules = rules.split()
    if not isinstance(rules, (list, tuple)):
        raise AclError(f'ACL user {name}: rules must be a list of ACL rules or one space-separated string')
    tokens = []
    for rule in rules:
        if not isinstance(rule, str) or not rule or any(char.isspace() for char in rule):
            raise AclError(f'ACL user {name}: rule {rule!r} is not one ACL rule (no spaces, not empty)')
        if rule.lower() in OWNED_TOKENS or rule.startswith(OWNED_PREFIXES):
            shown = rule if not rule.startswith(OWNED_PREFIXES) else rule[0] + '...'
            raise AclError(f'ACL user {name}: rule {shown!r} is not allowed in rules; use enabled, password or '
                           'password_sha256 (passwords never go into rules)')
        tokens.append(rule)
    return tokens


def acl_user(name: str, password: Optional[str] = None, password_sha256_value: Optional[str] = None,
             rules: Any = None, enabled: bool = True, nopass: bool = False) -> Dict[str, Any]:
    """One validated user: name, enabled, sha256 (or None with nopass), rules."""
    if not isinstance(name, str) or not NAME.match(name):
        raise AclError(f'ACL user {name!r}: a name is 1-64 letters, digits and _ . @ : - (starting with a letter or digit)')
    if password and password_sha256_value:
        raise AclError(f'ACL user {name}: give password or password_sha256, not both')
    digest = None
    if password:
        digest = password_sha256(str(password))
    elif password_sha256_value:
        digest = str(password_sha256_value).lower()
        if not SHA256.match(digest):
            raise AclError(f'ACL user {name}: password_sha256 must be 64 hexadecimal digits (sha256 of the password)')
    if enabled and digest is None and not nopass:
        raise AclError(f'ACL user {name}: an enabled user needs a password or password_sha256')
    if nopass and digest is not None:
        raise AclError(f'ACL user {name}: nopass and a password exclude each other')
    return {'name': name, 'enabled': bool(enabled), 'sha256': digest, 'nopass': bool(nopass and enabled),
            'rules': _rules(name, rules)}


def normalize_users(users: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Validate inventory-style dicts (name, password | password_sha256, rules, enabled, nopass); names unique."""
    result: List[Dict[str, Any]] = []
    seen = set()
    for index, entry in enumerate(users):
        if not isinstance(entry, dict) or 'name' not in entry:
            raise AclError(f'ACL user #{index + 1}: a dict with at least a name')
        unknown = set(entry) - {'name', 'password', 'password_sha256', 'rules', 'enabled', 'nopass'}
        if unknown:
            raise AclError(f"ACL user {entry['name']}: unknown field(s) {', '.join(sorted(unknown))}")
        user = acl_user(entry['name'], password=entry.get('password'), password_sha256_value=entry.get('password_sha256'),
                        rules=entry.get('rules'), enabled=entry.get('enabled', True), nopass=entry.get('nopass', False))
        if user['name'] in seen:
            raise AclError(f"ACL user {user['name']}: listed twice")
        seen.add(user['name'])
        result.append(user)
    return result


def acl_line(user: Dict[str, Any]) -> str:
    """`user <name> on|off <#sha256|nopass> <rules>` as the server's ACL file wants it (resetpass first)."""
    tokens = ['user', user['name'], 'on' if user['enabled'] else 'off', 'resetpass']
    if user['sha256']:
        tokens.append('#' + user['sha256'])
    elif user['nopass']:
        tokens.append('nopass')
    tokens += user['rules']
    return ' '.join(tokens)


def acl_file_lines(users: Iterable[Dict[str, Any]]) -> List[str]:
    """One line per user, the default user always present (off with no rights unless listed)."""
    normalized = normalize_users(users)
    if not any(user['name'] == 'default' for user in normalized):
        normalized.insert(0, acl_user('default', enabled=False, rules=['resetkeys', 'resetchannels', '-@all']))
    return [acl_line(user) for user in normalized]


def _pairs(reply: Any) -> Dict[str, Any]:
    """ACL GETUSER's flat [field, value, ...] reply as a dict."""
    items = list(reply or [])
    return {str(items[index]): items[index + 1] for index in range(0, len(items) - 1, 2)}


def acl_differences(client: Any, users: List[Dict[str, Any]]) -> List[str]:
    """What differs between the server's users and the wanted ones (normalized, default user included): the user
    set, each user's state and its password hashes. Rules are not compared (the server rewrites them); a changed
    file is what reloads them. The list names users and fields, never a hash."""
    wanted = {user['name']: user for user in users}
    current = set(str(name) for name in client.call('ACL', 'USERS'))
    differences = [f'user {name} missing' for name in sorted(set(wanted) - current)]
    differences += [f'user {name} not in the ACL file' for name in sorted(current - set(wanted))]
    for name in sorted(set(wanted) & current):
        user = wanted[name]
        fields = _pairs(client.call('ACL', 'GETUSER', name))
        flags = [str(flag) for flag in fields.get('flags', [])]
        if ('on' in flags) != user['enabled']:
            differences.append(f"user {name} is {'on' if 'on' in flags else 'off'}")
        hashes = sorted(str(value) for value in fields.get('passwords', []))
        if hashes != ([user['sha256']] if user['sha256'] else []) or ('nopass' in flags) != user['nopass']:
            differences.append(f'user {name} password')
    return differences


def sync_acl(client: Any, users: Iterable[Dict[str, Any]], acl_file: Optional[str], reload: bool,
             check_mode: bool, reconnect: Optional[Callable[[], Any]] = None, server_version: Optional[str] = None) -> Dict[str, Any]:
    """ACL LOAD on a running server when its users differ from the wanted ones or `reload` says the file changed.

    The file itself is the caller's (the redis_server role writes it before calling this). A server started
    without that aclfile cannot load it: that is reported in `restart_required`, and nothing is done. So is a server
    that runs another version than `server_version`, the one the file was written for (an upgrade installed it and
    restarts the server later): its rules may name commands the running server does not know, which ACL LOAD refuses
    (Valkey 8 refuses cluster|syncslots); the new server reads the file when it starts.
    A server closes the connection of every user ACL LOAD replaced, the caller's own included, right after its reply:
    `reconnect()` gives a new client (logged in with the user's new password) to check the result with.
    """
    normalized = normalize_users(users)
    if not any(user['name'] == 'default' for user in normalized):
        normalized.insert(0, acl_user('default', enabled=False))
    configured = client.call('CONFIG', 'GET', 'aclfile')
    configured = str(configured[1]) if len(configured) > 1 else ''
    if acl_file and configured != acl_file:
        return {'changed': False, 'differences': [], 'loaded': False, 'restart_required': ['aclfile']}
    if server_version:
        running = running_version(client)
        if running != str(server_version).strip():
            return {'changed': False, 'differences': [], 'loaded': False, 'restart_required': ['version'], 'running_version': running}
    differences = acl_differences(client, normalized)
    if reload and not differences:
        differences = ['ACL file changed']
    if differences and not check_mode:
        client.call('ACL', 'LOAD')
        if reconnect is not None:
            client = reconnect()
        remaining = acl_differences(client, normalized)
        if remaining:
            raise AclError(f"{client.address}: after ACL LOAD the server's users still differ from the wanted ones "
                           f"({'; '.join(remaining)}): is {configured} the file the role wrote?")
    return {'changed': bool(differences), 'differences': differences, 'loaded': bool(differences) and not check_mode,
            'restart_required': []}
