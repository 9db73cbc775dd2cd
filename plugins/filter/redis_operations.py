# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The operations playbooks' decisions and messages, in Python rather than in Jinja: redis_given_vars (which of a
playbook's variables were given), redis_cluster_summary (the lines that describe a cluster), redis_rolling_plan (the
order of a rolling restart), redis_failover_choice (the replica to promote), redis_upgrade_conflicts and
redis_upgrade_status (an upgrade's refusals and the nodes not on the wanted version yet), redis_backup_plan and
redis_backup_files (what a backup snapshots and fetches), redis_restore_steps and redis_restore_plan_text (what a
restore does on each host, and its plan in words).

The decisions about the cluster are module_utils' (rolling_restart, cluster_failover, upgrade, snapshot,
cluster_report); these filters check their input and word the results. Each is documented in its own YAML file next
to this one.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.hashslot.redis.plugins.module_utils.backup import BackupError, restore_plan_lines, restore_steps
from ansible_collections.hashslot.redis.plugins.module_utils.cluster_failover import FAILOVER_MODES, choose_replica
from ansible_collections.hashslot.redis.plugins.module_utils.cluster_report import summary_lines
from ansible_collections.hashslot.redis.plugins.module_utils.rolling_restart import plan_rolling_restart
from ansible_collections.hashslot.redis.plugins.module_utils.snapshot import backup_targets
from ansible_collections.hashslot.redis.plugins.module_utils.upgrade import switch_conflicts, version_mismatches

# AWX sends a text or textarea survey answer as one string: its items are separated by commas or whitespace.
_LIST_ITEM = re.compile(r'[^,\s]+')


def _require(filter_name, value, expected, what):
    if not isinstance(value, expected):
        raise AnsibleFilterError(f'{filter_name} expects {what}, got {type(value).__name__}')


def _nodes(filter_name, nodes):
    _require(filter_name, nodes, list, "the list of the cluster's nodes (redis_cluster_info's nodes)")
    return nodes


def redis_given_vars(values, lists=()):
    """{name: value} of the variables given: null and blank strings count as not given, and a string given for a
    variable named in `lists` becomes the list of its items."""
    _require('redis_given_vars', values, Mapping, 'a mapping of variable names to values')
    given = {}
    for name, value in values.items():
        if value is None or isinstance(value, str) and not value.strip():
            continue
        given[name] = _LIST_ITEM.findall(value) if name in lists and isinstance(value, str) else value
    return given


def redis_cluster_summary(result):
    _require('redis_cluster_summary', result, Mapping, "redis_cluster_info's result")
    return summary_lines(dict(result))


def redis_rolling_plan(nodes, instances, only=(), failback=False):
    """The rolling restart's steps, why it is refused (sentences; none when it is safe) and its plan in one line."""
    plan = plan_rolling_restart(_nodes('redis_rolling_plan', nodes), instances, only or ())
    addresses = ', '.join(entry['address'] for entry in instances)
    refusals = []
    if plan['unknown']:
        refusals.append(f"redis_rolling_nodes names {', '.join(plan['unknown'])}, which no host of the inventory runs "
                        f"(use host:port as the cluster knows it: {addresses}).")
    if plan['not_members']:
        refusals.append(f"{', '.join(plan['not_members'])} in the inventory is not a member of the cluster: join it with "
                        'playbooks/scale_out.yml (or site.yml) first.')
    if plan['unprotected']:
        refusals.append(f"master(s) {', '.join(plan['unprotected'])} have no replica whose link is up, so restarting them would "
                        'take their slots offline; add replicas or restart them by hand in a maintenance window.')

    def described(step):
        extra = (', failed over first' + (', then failed back' if failback else '')) if step['role'] == 'master' else ''
        return f"{step['address']} ({step['role']}{extra})"
    summary = f"{len(plan['steps'])} instance(s) to restart one at a time: {'; '.join(described(step) for step in plan['steps'])}"
    return dict(steps=plan['steps'], refusals=refusals, summary=summary.rstrip())


def redis_failover_choice(nodes, node='', master='', mode='default'):
    """node: the replica to promote, named (`node`) or chosen among the replicas of `master`; reason: why there is
    none ('' when there is one), worded to follow the address that was given."""
    _nodes('redis_failover_choice', nodes)
    if mode not in FAILOVER_MODES:
        raise AnsibleFilterError(f"redis_failover_choice: mode must be one of {', '.join(FAILOVER_MODES)}, got {mode!r}")
    named = next((entry for entry in nodes if entry.get('address') == (node or master)), None)
    if named is None:
        return dict(node={}, reason='is not a member of the cluster')
    if node:
        return dict(node=named, reason='')
    if named.get('role') != 'master' or not named.get('slot_count'):
        return dict(node={}, reason=f"is not a master that owns slots (it is a {named.get('role')} with {named.get('slot_count')} slots)")
    best = choose_replica(nodes, named, mode)
    if best is None:
        hint = ' (none has its link to the master up; if the master is down use -e redis_failover_mode=force)' if mode == 'default' else ''
        return dict(node={}, reason=f'has no replica that can take over{hint}')
    return dict(node=best, reason='')


def redis_upgrade_conflicts(nodes, flavor='redis', version=''):
    return switch_conflicts(_nodes('redis_upgrade_conflicts', nodes), str(flavor or 'redis'), str(version or ''))


def _host_setting(hostvars, host, name, default):
    try:
        value = hostvars[host][name]
    except KeyError:
        return default
    return default if value is None else str(value)


def redis_upgrade_status(nodes, instances, hostvars, default_host):
    """outdated: the inventory's instances not on their host's redis_install_flavor and redis_install_installed_version
    yet; wrong: a sentence for each node of the cluster that is not."""
    hosts = {entry['inventory_host'] for entry in instances} | {default_host}
    wanted = {host: (_host_setting(hostvars, host, 'redis_install_flavor', 'redis'), _host_setting(hostvars, host, 'redis_install_installed_version', ''))
              for host in hosts}
    return version_mismatches(_nodes('redis_upgrade_status', nodes), instances, wanted, default_host)


def redis_backup_plan(nodes, instances, all_nodes=False):
    return backup_targets(_nodes('redis_backup_plan', nodes), instances, bool(all_nodes))


def redis_backup_files(snapshots):
    """The files to fetch for each redis_snapshot result (its item a target of redis_backup_plan): the RDB file where
    the server wrote it and the cluster configuration beside it (nodes-<port>.conf, the role's cluster-config-file)."""
    _require('redis_backup_files', snapshots, list, 'the list of redis_snapshot results')
    files = []
    for snapshot in snapshots:
        if not snapshot.get('path'):
            continue
        target = snapshot['item']
        files.append(dict(src=snapshot['path'], dest=target['dest']))
        files.append(dict(src=posixpath.join(posixpath.dirname(snapshot['path']), f"nodes-{target['node']['port']}.conf"), dest=target['dest']))
    return files


def _plan(filter_name, plan):
    _require(filter_name, plan, Mapping, "redis_restore's result with state=planned")
    missing = [name for name in ('placements', 'empty', 'masters', 'replicas') if name not in plan]
    if missing:
        raise AnsibleFilterError(f'{filter_name} expects redis_restore\'s result with state=planned; it lacks {", ".join(missing)}')
    return dict(plan)


def redis_restore_steps(plan, instances, staging):
    _require('redis_restore_steps', instances, list, "the inventory's instances (redis_instance_map)")
    try:
        return restore_steps(_plan('redis_restore_steps', plan), instances, str(staging).rstrip('/'))
    except BackupError as exc:
        raise AnsibleFilterError(f'redis_restore_steps: {exc}') from exc


def redis_restore_plan_text(plan):
    return '\n'.join(restore_plan_lines(_plan('redis_restore_plan_text', plan)))


class FilterModule:
    def filters(self):
        return {'redis_given_vars': redis_given_vars, 'redis_cluster_summary': redis_cluster_summary,
                'redis_rolling_plan': redis_rolling_plan, 'redis_failover_choice': redis_failover_choice,
                'redis_upgrade_conflicts': redis_upgrade_conflicts, 'redis_upgrade_status': redis_upgrade_status,
                'redis_backup_plan': redis_backup_plan, 'redis_backup_files': redis_backup_files,
                'redis_restore_steps': redis_restore_steps, 'redis_restore_plan_text': redis_restore_plan_text}
