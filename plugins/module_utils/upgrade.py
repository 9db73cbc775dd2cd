# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An upgrade of the cluster's servers: the switches it refuses, and which nodes do not run the wanted server yet,
from redis_cluster_info's nodes."""

from __future__ import annotations

from typing import Dict, List, Mapping, Tuple

from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import parse_version

# Redis 7.4 and later write RDB format 12, which Valkey refuses (it reserves 12-79 as foreign formats).
VALKEY_READS_REDIS_BEFORE = (7, 4, 0)
# Redis 8.0 sends a cluster bus extension that Valkey misreads as the node's address.
REDIS_MIXES_WITH_VALKEY_BEFORE = (8, 0, 0)


def switch_conflicts(nodes: List[Dict], flavor: str, version: str) -> Dict[str, List[str]]:
    """unreadable: the nodes whose data the wanted Valkey cannot read ('<address> runs Redis 7.4.1');
    unmixable: the Valkey nodes a rolling switch to the wanted Redis 8 cannot share a cluster with."""
    unreadable = [f"{node['address']} runs Redis {node.get('version')}" for node in nodes
                  if flavor == 'valkey' and node.get('server') == 'redis' and parse_version(str(node.get('version') or '0')) >= VALKEY_READS_REDIS_BEFORE]
    unmixable = [f"{node['address']} runs Valkey {node.get('version')}" for node in nodes
                 if flavor == 'redis' and parse_version(str(version)) >= REDIS_MIXES_WITH_VALKEY_BEFORE and node.get('server') == 'valkey']
    return dict(unreadable=unreadable, unmixable=unmixable)


def version_mismatches(nodes: List[Dict], instances: List[Dict], wanted: Mapping[str, Tuple[str, str]], default_host: str) -> Dict[str, List[str]]:
    """outdated: the addresses of the inventory's instances that do not run the (server, version) `wanted` for their
    inventory host, or that the cluster does not know; wrong: '<address> runs <server> <version>, not <wanted>' for
    each node of the cluster that does not (a node no instance has is held to `default_host`'s)."""
    by_address = {node['address']: node for node in nodes}
    host_of = {entry['address']: entry['inventory_host'] for entry in instances}

    def differs(node: Dict, host: str) -> bool:
        server, version = wanted[host]
        return node.get('server', '') != server or node.get('version', '') != version

    outdated = [entry['address'] for entry in instances if differs(by_address.get(entry['address'], {}), entry['inventory_host'])]
    wrong = []
    for node in nodes:
        host = host_of.get(node['address'], default_host)
        if differs(node, host):
            server, version = wanted[host]
            wrong.append(f"{node['address']} runs {node.get('server', '?')} {node.get('version', '?')}, not {server} {version}")
    return dict(outdated=outdated, wrong=wrong)
