# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r'''
options:
  login_user:
    description:
      - ACL user to authenticate as on every node.
      - Omit to authenticate as the C(default) user (or not at all when no password is set).
    type: str
  login_password:
    description:
      - Password of O(login_user) (or of the C(default) user).
      - Falls back to the E(REDISCLI_AUTH) environment variable, as C(redis-cli) does.
      - Never logged, never passed on a command line.
    type: str
  tls:
    description:
      - Connect to every node over TLS.
    type: bool
    default: false
  ca_certs:
    description:
      - CA bundle that signed the nodes' certificates, when O(tls=true).
    type: path
  client_cert:
    description:
      - Client certificate for mutual TLS, when O(tls=true).
    type: path
  client_key:
    description:
      - Private key of O(client_cert).
    type: path
  validate_certs:
    description:
      - Verify the nodes' certificates and host names. Turn off only for tests.
    type: bool
    default: true
  connect_timeout:
    description:
      - Seconds to wait for a TCP (and TLS) connection to one node.
    type: float
    default: 5.0
  transient_timeout:
    description:
      - Seconds to wait out a node's answers that mean "not now" rather than "no", retrying the refused commands
        with a short backoff. C(LOADING) (a node loading its data set after a restart, or a replica after a full
        resynchronisation), C(BUSY) (a script or function running past C(busy-reply-threshold)), C(MASTERDOWN) (a
        replica whose master link is down) and C(TRYAGAIN) (keys split by a slot migration).
      - After that the module fails, naming the node and its state.
    type: float
    default: 60.0
requirements:
  - redis (the Python library, redis-py) 4.3 or later, on the host that runs the module
notes:
  - The modules talk to every node with redis-py; they never run C(redis-cli), so no secret reaches a process's command line.
'''
