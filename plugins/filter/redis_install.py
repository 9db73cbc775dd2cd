# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The redis_install role's decisions, in Python rather than in Jinja: redis_installed_versions (the package
manager's list, read), redis_package_names (what to hand the package module) and redis_build_provider (which host of
a build_once group provides the binaries).

Each is documented in its own YAML file next to this one.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List

from ansible.errors import AnsibleFilterError


def redis_installed_versions(lines):
    """Package name -> version from the role's package query (`installed <name> <version>` lines; the rest, such as
    dpkg's `config-files` or `not-installed` states, left out)."""
    if not isinstance(lines, list):
        raise AnsibleFilterError(f'redis_installed_versions expects the lines of the package query, got {type(lines).__name__}')
    found: Dict[str, str] = {}
    for line in lines:
        if str(line).startswith('installed '):
            fields = str(line).split()
            found[fields[1]] = fields[2] if len(fields) > 2 else ''
    return found


def redis_package_names(packages, version='', version_spec='', version_regex='', installed=None):
    """The names to install: each package with `version_spec` appended when a `version` is asked for, unless the
    installed version already matches `version_regex`. Given the pattern, ansible's apt module hands it to apt-get as it
    is whenever a newer matching version is available (a security update), and apt-get refuses a pattern."""
    if not isinstance(packages, list):
        raise AnsibleFilterError(f'redis_package_names expects a list of package names, got {type(packages).__name__}')
    installed = installed or {}
    return [f'{package}{version_spec}' if version and not re.match(version_regex, str(installed.get(package) or '')) else package
            for package in packages]


def redis_build_provider(hostvars, hosts, group, cached=False):
    """The host that provides `group`'s binaries under build_once: none ('') when no host of the group misses the
    version or the controller cache already holds the archive; else the first host of the group (in play order) that
    has the version installed (it packs its prefix), else the first that misses it (it builds)."""
    if not isinstance(hosts, list):
        raise AnsibleFilterError(f'redis_build_provider expects the list of play hosts, got {type(hosts).__name__}')
    present: List[str] = []
    missing: List[str] = []
    for host in hosts:
        facts: Any = hostvars[host]
        if facts.get('__redis_install_build_group', '') == group:
            (present if facts.get('__redis_install_present') else missing).append(host)
    if not missing or cached:
        return ''
    return (present + missing)[0]


class FilterModule:
    def filters(self):
        return {'redis_installed_versions': redis_installed_versions, 'redis_package_names': redis_package_names,
                'redis_build_provider': redis_build_provider}
