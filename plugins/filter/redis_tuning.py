# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The redis_tuning role's decisions and files, in Python rather than in Jinja: redis_sysctl_invalid (the settings
that are no sysctl), redis_sysctl_wanted (each key's /proc/sys path and value), redis_sysctl_state and redis_thp_state
(what the kernel has against what is wanted, from the role's probes), redis_tuning_notes (the one message about what
could not be applied), redis_sysctl_lines (the sysctl.d file) and redis_thp_exec_lines (the boot unit's commands).

Each is documented in its own YAML file next to this one.
"""

from __future__ import annotations

import base64
import re
from typing import Any, Dict, List, Optional

from ansible.errors import AnsibleFilterError

SYSCTL_KEY = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.@/-]*$')


def _words(value: Any) -> str:
    """A value as `sysctl` compares it: its words joined by one space."""
    return ' '.join(str(value).split())


def _dict(filter_name: str, value: Any) -> Dict[Any, Any]:
    if not isinstance(value, dict):
        raise AnsibleFilterError(f'{filter_name} expects a dict of sysctl settings, got {type(value).__name__}')
    return value


def _results(filter_name: str, registered: Any) -> List[Dict[str, Any]]:
    """The per-item results of a registered loop task (the whole registered value, or its `results`)."""
    results = registered.get('results') if isinstance(registered, dict) else registered
    if not isinstance(results, list):
        raise AnsibleFilterError(f'{filter_name} expects the registered results of a loop task, got {type(registered).__name__}')
    return results


def _content(read: Dict[str, Any]) -> Optional[str]:
    """The text a slurp result read, or None when the item was skipped or failed."""
    if 'content' not in read:
        return None
    return base64.b64decode(read['content']).decode('utf-8', errors='replace')


def redis_sysctl_invalid(sysctl):
    """`key=value` of each setting that is no sysctl: a key outside letters, digits and _ - . / @, or a value that is
    no number and no one-line, non-blank string (a boolean included: write 1 or 0)."""
    invalid = []
    for key, value in _dict('redis_sysctl_invalid', sysctl).items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if (not isinstance(key, str) or not SYSCTL_KEY.match(key) or not (number or isinstance(value, str))
                or re.search('[\r\n]', str(value)) or not str(value).strip()):
            invalid.append(f'{key}={value}')
    return invalid


def sysctl_path(key: str) -> str:
    """A key's file: net.ipv4.tcp_syncookies -> /proc/sys/net/ipv4/tcp_syncookies; a key given with slashes is a path
    already (net/ipv4/conf/eth0.100/rp_filter, where the dot belongs to the interface name)."""
    return '/proc/sys/' + (key if '/' in key else key.replace('.', '/'))


def redis_sysctl_wanted(sysctl):
    """One entry per setting, in the dict's order: key, the file under /proc/sys, the value as sysctl compares it."""
    return [{'key': key, 'path': sysctl_path(key), 'wanted': _words(value)} for key, value in _dict('redis_sysctl_wanted', sysctl).items()]


def redis_sysctl_state(probes, reads):
    """One row per probed key: the kernel's value (None when it has none or it cannot be read), whether it differs,
    and whether the key exists and can be read and written. `probes` are the stat results over redis_sysctl_wanted,
    `reads` the slurp results over the probes."""
    rows = []
    for probe, read in zip(_results('redis_sysctl_state', probes), _results('redis_sysctl_state', reads)):
        wanted, stat = probe['item'], probe.get('stat') or {}
        content = _content(read)
        current = _words(content) if content is not None else None
        rows.append({'key': wanted['key'], 'path': wanted['path'], 'wanted': wanted['wanted'], 'current': current,
                     'differs': current != wanted['wanted'], 'exists': bool(stat.get('exists')),
                     'readable': bool(stat.get('readable', False)), 'writable': bool(stat.get('writeable', False))})
    return rows


def redis_thp_state(probes, reads, thp_dir):
    """One row per probed transparent huge page setting. The files read like "always [madvise] never": the bracketed
    word is the setting (`current`), all the words the `choices`. A setting this kernel lacks differs unless the wanted
    value is `never` (no huge pages is what a kernel without them gives)."""
    rows = []
    for probe, read in zip(_results('redis_thp_state', probes), _results('redis_thp_state', reads)):
        item, stat = probe['item'], probe.get('stat') or {}
        text = _content(read) or ''
        bracketed = [word for word in text.split() if word.startswith('[')]
        current = bracketed[0][1:-1] if bracketed else None
        exists = bool(stat.get('exists'))
        rows.append({'name': item['name'], 'path': f"{thp_dir}/{item['name']}", 'wanted': item['value'], 'current': current,
                     'choices': text.replace('[', '').replace(']', '').split(),
                     'differs': current != item['value'] if exists else item['value'] != 'never',
                     'exists': exists, 'writable': bool(stat.get('writeable', False))})
    return rows


def _has(row: Dict[str, Any]) -> str:
    return row['current'] if row.get('current') is not None else 'no value'


def redis_tuning_notes(sysctl_blocked, thp_blocked, sysctl_file, thp_unit, boot_settings=(), service_manager='unknown'):
    """The lines of the role's one message about what it could not apply: each sysctl and transparent huge page
    setting that differs and cannot be written, and, when there are huge page settings for a boot unit but the
    service manager is not systemd (no unit is installed), that they revert at reboot."""
    notes = []
    for row in sysctl_blocked or []:
        if not row['exists']:
            reason = f"this kernel has no {row['path']}"
        else:
            reason = f"{row['path']} cannot be read" if not row['readable'] else f"{row['path']} is read-only"
        notes.append(f"sysctl {row['key']}={row['wanted']} not applied (the kernel has {_has(row)}): {reason}; "
                     f"it is persisted in {sysctl_file} for the next boot")
    for row in thp_blocked or []:
        reason = f"this kernel has no {row['path']}" if not row['exists'] else f"{row['path']} is read-only"
        notes.append(f"transparent_hugepage/{row['name']}={row['wanted']} not applied (the kernel has {_has(row)}): {reason}")
    if boot_settings and service_manager != 'systemd':
        notes.append(f'no boot unit ({thp_unit}) for transparent huge pages: the service manager is {service_manager}, '
                     'not systemd; they are set at runtime only and revert at reboot until this role runs again')
    return notes


def redis_sysctl_lines(sysctl):
    """The sysctl.d file's settings, `key = value` sorted by key (case aside), each line newline-terminated."""
    settings = _dict('redis_sysctl_lines', sysctl)
    return ''.join(f'{key} = {_words(settings[key])}\n' for key in sorted(settings, key=lambda key: str(key).lower()))


def redis_thp_exec_lines(settings, thp_dir):
    """The boot unit's ExecStart= lines, one per setting ({name, value}) in order, each newline-terminated."""
    return ''.join(f"ExecStart=/bin/sh -c 'echo {setting['value']} > {thp_dir}/{setting['name']}'\n" for setting in settings)


class FilterModule:
    def filters(self):
        return {'redis_sysctl_invalid': redis_sysctl_invalid, 'redis_sysctl_wanted': redis_sysctl_wanted,
                'redis_sysctl_state': redis_sysctl_state, 'redis_thp_state': redis_thp_state,
                'redis_tuning_notes': redis_tuning_notes, 'redis_sysctl_lines': redis_sysctl_lines,
                'redis_thp_exec_lines': redis_thp_exec_lines}
