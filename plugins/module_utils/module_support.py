# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every module does around its engine call: library check, connections, errors, diff."""

from __future__ import annotations

from typing import Any, Callable, Dict

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.hashslot.redis.plugins.module_utils.cluster import ClusterError
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import (
    HAS_REDIS, REDIS_IMPORT_ERROR, ConnectionOptions, NodeError, NodePool,
)


def run_cluster_module(module: Any, operation: Callable[[NodePool], Dict[str, Any]]) -> None:
    """Call `operation` with a connection pool and turn its result or refusal into exit/fail_json."""
    if not HAS_REDIS:
        module.fail_json(msg=missing_required_lib('redis'), exception=REDIS_IMPORT_ERROR)
    options = ConnectionOptions.from_params(module.params)
    try:
        with NodePool(options) as pool:
            result = operation(pool)
    except (ClusterError, NodeError, ValueError) as exc:
        module.fail_json(msg=str(exc), changed=getattr(exc, 'changed', False))
    for warning in result.pop('warnings', []):
        module.warn(warning)
    diff = result.pop('diff', None)
    if module._diff and diff is not None:
        result['diff'] = diff
    failure = result.pop('failure', None)
    if failure:
        module.fail_json(msg=failure, **result)
    module.exit_json(**result)
