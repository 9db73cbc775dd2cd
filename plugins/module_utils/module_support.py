# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every module does around its engine call: library check, connections, errors, diff."""

from __future__ import annotations

import os
import tempfile
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


def write_file_if_changed(path: str, content: str, check_mode: bool = False) -> bool:
    """Write `content` (UTF-8, mode 0644) to `path` unless the file already holds exactly it; True when it did or would.

    The new file is written beside the old one and renamed over it, so a reader never sees half a file and a
    failed write leaves the old one. In check mode nothing is written; the answer is what a real run would do.
    """
    data = content.encode('utf-8')
    try:
        with open(path, 'rb') as handle:
            if handle.read() == data:
                return False
    except FileNotFoundError:
        pass
    if check_mode:
        return True
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix='.tmp', dir=directory)
    try:
        with os.fdopen(descriptor, 'wb') as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    return True
