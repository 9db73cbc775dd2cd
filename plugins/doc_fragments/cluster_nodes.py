# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):

    # The nodes a whole cluster is made of, and its replicas per master (redis_cluster_create, redis_restore).
    DOCUMENTATION = r'''
options:
  nodes:
    description:
      - The nodes of the cluster. Masters are C(len(nodes) // (replicas + 1)), at least 3, spread over failure domains.
    type: list
    elements: dict
    required: true
    suboptions:
      host:
        description: Host name or IP address of the node, as the other nodes reach it.
        type: str
        required: true
      port:
        description: Client port of the node.
        type: int
        default: 6379
      zone:
        description: Failure-domain label (availability zone, rack). Without it the host is the failure domain.
        type: str
  replicas:
    description: Replicas per master.
    type: int
    default: 1
'''
