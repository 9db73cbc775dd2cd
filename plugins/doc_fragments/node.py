# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):

    # The one server a single-node module acts on (redis_config, redis_snapshot).
    DOCUMENTATION = r'''
options:
  node:
    description: The server to act on.
    type: dict
    required: true
    suboptions:
      host:
        description: Host name or IP address.
        type: str
        required: true
      port:
        description: Client port.
        type: int
        default: 6379
'''
