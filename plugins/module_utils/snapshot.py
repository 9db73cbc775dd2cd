# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An RDB snapshot of one node: BGSAVE, then wait until a save that started after the request has finished."""

from __future__ import annotations

import posixpath
import time
from typing import Any, Callable, Dict, List

from ansible_collections.hashslot.redis.plugins.module_utils.cluster import ClusterError
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import NodeError, config_value, parse_info, server_identity
from ansible_collections.hashslot.redis.plugins.module_utils.topology import ClusterView, format_ranges

POLL_SECONDS = 0.05


def _persistence(client: Any) -> Dict[str, str]:
    return client.info('persistence')


def _config(client: Any, name: str) -> str:
    return config_value(client.call('CONFIG', 'GET', name), name) or ''


def _saves(persistence: Dict[str, str]) -> int:
    # rdb_saves counts snapshots since start-up; servers without it fall back on the last save's second.
    return int(persistence.get('rdb_saves', persistence.get('rdb_last_save_time', '0')))


def _identity(client: Any) -> Dict[str, Any]:
    """Which server the node is and, in a cluster, its id and the slots it owns: what a backup's manifest records."""
    server_info, cluster_info = client.pipeline([('INFO', 'server'), ('INFO', 'cluster')])
    for reply in (server_info, cluster_info):
        if isinstance(reply, Exception):
            raise NodeError(client.address, f'INFO failed: {reply}')
    server, version = server_identity(parse_info(server_info))
    identity: Dict[str, Any] = dict(server=server, version=version, node_id=None, slots=[])
    if parse_info(cluster_info).get('cluster_enabled') == '1':
        myself = ClusterView.parse(client.address, client.call('CLUSTER', 'NODES')).myself
        identity.update(node_id=myself.id, slots=format_ranges(myself.slots))
    return identity


def take_snapshot(client: Any, wait_timeout: float, check_mode: bool, clock: Callable[[], float] = time.monotonic) -> Dict[str, Any]:
    identity = _identity(client)
    before = _persistence(client)
    path = posixpath.join(_config(client, 'dir'), _config(client, 'dbfilename'))
    result: Dict[str, Any] = dict(changed=True, path=path, node=client.address, **identity)
    if check_mode:
        result.update(last_save_time=int(before.get('rdb_last_save_time', '0')))
        return result
    saves_before = _saves(before)
    started = clock()
    try:
        # SCHEDULE: if an AOF rewrite is running the save starts right after it instead of failing.
        client.call('BGSAVE', 'SCHEDULE')
    except NodeError as exc:
        # A save already running may have started before the request: wait for it, then ask again.
        if 'already in progress' not in exc.reason:
            raise
        _wait_idle(client, started + wait_timeout, clock)
        saves_before = _saves(_persistence(client))
        client.call('BGSAVE', 'SCHEDULE')
    while True:
        now = _persistence(client)
        if now.get('rdb_bgsave_in_progress') == '0' and _saves(now) > saves_before:
            if now.get('rdb_last_bgsave_status') != 'ok':
                raise ClusterError(f'{client.address}: the background save failed (rdb_last_bgsave_status:{now.get("rdb_last_bgsave_status")}); '
                                   'see the server log (disk full, permissions of the data directory?)')
            result.update(last_save_time=int(now.get('rdb_last_save_time', '0')), duration=round(clock() - started, 3))
            # The slots the file holds keys of: those the node owned while it saved. A slot that came or went meanwhile
            # would make the backup's layout say something the file does not hold.
            slots_after = _identity(client)['slots']
            if slots_after != identity['slots']:
                raise ClusterError(f'{client.address}: its slots changed while the snapshot was taken ({", ".join(identity["slots"]) or "none"} '
                                   f'-> {", ".join(slots_after) or "none"}); take the backup again once no slot is moving', changed=True)
            return result
        if clock() > started + wait_timeout:
            raise ClusterError(f'{client.address}: the snapshot did not finish within {wait_timeout:g} s '
                               f'(rdb_bgsave_in_progress:{now.get("rdb_bgsave_in_progress")}); raise wait_timeout for a large dataset',
                               changed=True)
        time.sleep(POLL_SECONDS)


def _wait_idle(client: Any, deadline: float, clock: Callable[[], float]) -> None:
    while _persistence(client).get('rdb_bgsave_in_progress') != '0':
        if clock() > deadline:
            raise ClusterError(f'{client.address}: a background save already running did not finish in time')
        time.sleep(POLL_SECONDS)


def backup_targets(nodes: List[Dict], instances: List[Dict], all_nodes: bool = False) -> Dict[str, List]:
    """The nodes a backup snapshots (the masters that own slots, or with all_nodes every node), from
    redis_cluster_info's nodes. targets: the inventory's instance of each, with the node's `role` and `id` and `dest`,
    the folder its files go to (<inventory host>-<port>); outside: those no instance of the inventory serves, whose
    files cannot be fetched."""
    entries = {entry['address']: entry for entry in instances}
    chosen = [node for node in nodes if all_nodes or (node.get('role') == 'master' and node.get('slot_count'))]
    targets = [dict(entries[node['address']], role=node.get('role'), id=node.get('id'),
                    dest=f"{entries[node['address']]['inventory_host']}-{entries[node['address']]['node']['port']}")
               for node in chosen if node['address'] in entries]
    return dict(targets=targets, outside=[node['address'] for node in chosen if node['address'] not in entries])
