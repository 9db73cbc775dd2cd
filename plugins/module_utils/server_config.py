# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A server's configuration as data: rendering redis.conf, and applying it to a running server.

The same settings dict feeds the config file (through the `redis_config_text` filter) and the
`redis_config` module, which brings a running server to it with CONFIG SET where it can and says
which settings only a restart applies.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import config_value, parse_info, parse_version, server_identity

# Settings whose value is a secret: rendered in the file, never shown in results or diffs.
SECRET_SETTINGS = frozenset(('requirepass', 'masterauth', 'tls-key-file-pass', 'tls-client-key-file-pass'))

# Settings the collection never changes on a running server: either the server refuses (immutable),
# or changing them under a live cluster node is unsafe (its port, its data directory, its process model).
RESTART_SETTINGS = frozenset((
    'port', 'tls-port', 'cluster-enabled', 'cluster-config-file', 'cluster-port', 'daemonize', 'supervised',
    'pidfile', 'logfile', 'syslog-enabled', 'syslog-ident', 'syslog-facility', 'unixsocket', 'unixsocketperm',
    'databases', 'io-threads', 'io-threads-do-reads', 'dir', 'appenddirname', 'aclfile', 'include', 'loadmodule',
    'rename-command', 'always-show-logo', 'set-proc-title', 'proc-title-template', 'enable-debug-command',
    'enable-module-command', 'enable-protected-configs', 'disable-thp', 'tls-cluster', 'tls-cert-file', 'tls-key-file',
    'tls-ca-cert-file', 'tls-ca-cert-dir',
))

# Directives whose value is several words the server splits itself (rendered unquoted).
MULTI_WORD_SETTINGS = frozenset((
    'save', 'bind', 'client-output-buffer-limit', 'notify-keyspace-events', 'oom-score-adj-values',
    'rename-command', 'loadmodule', 'latency-tracking-info-percentiles',
))

_MEMORY = re.compile(r'^(\d+)(k|kb|m|mb|g|gb)$', re.IGNORECASE)
_UNITS = {'k': 1000, 'kb': 1024, 'm': 1000 ** 2, 'mb': 1024 ** 2, 'g': 1000 ** 3, 'gb': 1024 ** 3}
_BOOLEANS = {'true': 'yes', 'false': 'no', 'on': 'yes', 'off': 'no', 'yes': 'yes', 'no': 'no'}
_SAFE_WORD = re.compile(r'^[A-Za-z0-9_./:@+,=-]+$')


def setting_text(value: Any) -> str:
    """The value as the server reads it: booleans as yes/no, everything else as text."""
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if value is None:
        return ''
    return str(value)


def _quote(text: str) -> str:
    if text and _SAFE_WORD.match(text):
        return text
    escaped = text.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')
    return f'"{escaped}"'


def config_lines(settings: Mapping[str, Any]) -> List[str]:
    """One `name value` line per setting, in the order given; a list value repeats the directive."""
    lines: List[str] = []
    for name, value in settings.items():
        if not isinstance(name, str) or not re.match(r'^[a-z][a-z0-9-]*$', name):
            raise ValueError(f'{name!r} is not a configuration directive name (lowercase words joined by "-")')
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            text = setting_text(item)
            if name in MULTI_WORD_SETTINGS and text.strip():
                lines.append(f'{name} {text.strip()}')
            else:
                lines.append(f'{name} {_quote(text)}')
    return lines


def normalize(value: Any) -> str:
    """Canonical form for comparing a wanted value with CONFIG GET's answer (memory units in bytes, yes/no)."""
    text = setting_text(value).strip()
    words = []
    for word in text.split():
        memory = _MEMORY.match(word)
        if memory:
            word = str(int(memory.group(1)) * _UNITS[memory.group(2).lower()])
        else:
            word = _BOOLEANS.get(word.lower(), word)
        words.append(word)
    return ' '.join(words)


def secret_values(settings: Mapping[str, Any]) -> List[str]:
    """The values of secret settings as the server reads them, for a module to mask wherever they would be shown."""
    values = []
    for name in SECRET_SETTINGS & set(settings):
        items = settings[name] if isinstance(settings[name], (list, tuple)) else [settings[name]]
        values.extend(text for text in (setting_text(item) for item in items) if text)
    return values


def shown(name: str, value: Optional[str]) -> Optional[str]:
    if value is None or name not in SECRET_SETTINGS:
        return value
    return '********'


def plan_runtime_changes(wanted: Mapping[str, Any], current: Mapping[str, Optional[str]]) -> Tuple[List[str], List[str], List[str]]:
    """(to_set, restart_required, unknown) names, comparing wanted settings with the server's CONFIG GET values.

    `current[name]` is None when the server does not know the setting. List-valued settings (a
    directive repeated) are read only at start-up and are not compared.
    """
    to_set: List[str] = []
    restart: List[str] = []
    unknown: List[str] = []
    for name, value in wanted.items():
        if isinstance(value, (list, tuple)):
            continue
        running = current.get(name)
        if running is None:
            if name not in RESTART_SETTINGS:
                unknown.append(name)
            continue
        if normalize(value) == normalize(running):
            continue
        (restart if name in RESTART_SETTINGS else to_set).append(name)
    return to_set, restart, unknown


class ConfigApplyError(Exception):
    pass


def read_settings(client: Any, names: List[str]) -> Dict[str, Optional[str]]:
    """CONFIG GET for each name in one round trip; None where the server does not know it (an empty reply).

    An error reply is not an unknown setting: a login user without the CONFIG command gets NOPERM for every name.
    """
    replies = client.pipeline([('CONFIG', 'GET', name) for name in names])
    current: Dict[str, Optional[str]] = {}
    for name, reply in zip(names, replies):
        if isinstance(reply, Exception):
            raise ConfigApplyError(f'{client.address}: CONFIG GET {name} failed: {reply}; login_user needs the CONFIG command')
        current[name] = config_value(reply, name)
    return current


def running_version(client: Any) -> str:
    """The version a running server reports (valkey_version on Valkey, else redis_version)."""
    return server_identity(parse_info(client.call('INFO', 'server')))[1]


def version_settings(flavor: str, version: str, zone: str = '') -> Dict[str, Any]:
    """Settings a server version offers that the redis_server role turns on: on Valkey 8.1 and later the instance's
    availability zone (`availability-zone`, from the inventory's zone; clients read it in HELLO, Valkey 9 also spreads it
    over the cluster bus); on Valkey 9.0 and later `shutdown-on-sigterm failover` (a primary stopped by systemd hands its
    slots to a caught-up replica before it exits, instead of the cluster waiting a node timeout). Empty for another
    flavor or an unknown version."""
    major_minor = parse_version(str(version or ''))[:2]
    if str(flavor).lower() != 'valkey' or major_minor == (0, 0):
        return {}
    settings: Dict[str, Any] = {}
    if major_minor >= (8, 1) and zone:
        settings['availability-zone'] = str(zone)
    if major_minor >= (9, 0):
        settings['shutdown-on-sigterm'] = 'failover'
    return settings


def apply_settings(client: Any, wanted: Mapping[str, Any], check_mode: bool, server_version: Optional[str] = None) -> Dict[str, Any]:
    """Bring a running server to `wanted` with CONFIG SET; report what changed and what needs a restart.

    `server_version` is the version the settings were written for. A server running another one (an upgrade installed
    it and restarts the server later) may not know some of them, or refuse their value: those wait for the restart
    (`restart_required`) instead of failing the run."""
    names = [name for name, value in wanted.items() if not isinstance(value, (list, tuple))]
    try:
        before = read_settings(client, names)
    except ConfigApplyError as exc:
        raise ConfigApplyError(f'{exc} (nothing was changed)') from exc
    to_set, restart, unknown = plan_runtime_changes(wanted, before)
    pending_upgrade = bool(server_version) and running_version(client) != str(server_version).strip()
    if unknown and pending_upgrade:
        restart, unknown = sorted(set(restart) | set(unknown)), []
    if unknown:
        raise ConfigApplyError(
            f'{client.address}: does not know the setting(s) {", ".join(sorted(unknown))}; '
            'remove them or check the server version (nothing was changed)')
    changed: List[str] = []
    after = dict(before)
    if not check_mode:
        for name in to_set:
            reply = client.pipeline([('CONFIG', 'SET', name, setting_text(wanted[name]))])[0]
            if isinstance(reply, Exception):
                message = str(reply)
                if 'immutable' in message or 'protected' in message or pending_upgrade:
                    restart.append(name)
                    continue
                raise ConfigApplyError(
                    f'{client.address}: CONFIG SET {name} refused: {message}'
                    + (f' (already applied: {", ".join(changed)})' if changed else ' (nothing was changed)'))
            after[name] = read_settings(client, [name])[name]
            if after[name] != before[name]:
                changed.append(name)
    else:
        changed = list(to_set)
        after.update({name: normalize(wanted[name]) for name in to_set})
    diff_names = sorted(set(changed) | set(restart))
    return dict(
        changed=bool(changed),
        settings_changed=sorted(changed),
        restart_required=sorted(restart),
        diff=dict(
            before=''.join(f'{name} {shown(name, before[name])}\n' for name in diff_names),
            after=''.join(f'{name} {shown(name, after[name] if name in changed else normalize(wanted[name]))}\n' for name in diff_names),
        ),
    )


def reload_tls(client: Any, check_mode: bool) -> bool:
    """Make a running server re-read its TLS certificate, key and CA files: CONFIG SET tls-cert-file to the value it
    already has (Redis and Valkey rebuild their TLS context on every CONFIG SET of a tls-* file setting, even an
    unchanged one). New connections get the new certificate; open ones keep theirs. False when it serves no TLS."""
    path = read_settings(client, ['tls-cert-file'])['tls-cert-file']
    if not path:
        return False
    if not check_mode:
        reply = client.pipeline([('CONFIG', 'SET', 'tls-cert-file', path)])[0]
        if isinstance(reply, Exception):
            raise ConfigApplyError(f'{client.address}: reloading the TLS files (CONFIG SET tls-cert-file {path}) failed: {reply}; '
                                   'check that the certificate, the key and the CA in place belong together')
    return True
