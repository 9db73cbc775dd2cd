# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: redis_problem_kinds
short_description: The kinds of problem hashslot.redis.redis_cluster_info reports
version_added: 0.2.0
description:
  - >-
    The kinds of problem M(hashslot.redis.redis_cluster_info) reports (and accepts in its O(hashslot.redis.redis_cluster_info#module:ignore_problems)),
    for a playbook's argument checks (C(choices)) and defaults, so that no playbook keeps a copy of the list.
  - Without a term, every kind; with the term V(node_down), the kinds a member that is down or cut off causes.
options:
  _terms:
    description: Empty for every kind, or V(node_down).
    type: list
    elements: str
    required: false
author:
  - hashslot.redis contributors (@hashslot)
"""

EXAMPLES = r"""
- name: Check a list of problem kinds given to the playbook
  ansible.builtin.validate_argument_spec:
    argument_spec:
      ignore_problems: {type: list, elements: str, choices: "{{ query('hashslot.redis.redis_problem_kinds') }}"}
    provided_arguments:
      ignore_problems: "{{ ignore_problems }}"

- name: Tolerate what a dead master leaves behind
  ansible.builtin.set_fact:
    ignore_problems: "{{ query('hashslot.redis.redis_problem_kinds', 'node_down') }}"
"""

RETURN = r"""
_raw:
  description: The problem kinds, in the order the module documents them.
  type: list
  elements: str
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.hashslot.redis.plugins.module_utils.cluster_health import NODE_DOWN_KINDS, PROBLEM_KINDS

KIND_GROUPS = {'node_down': NODE_DOWN_KINDS}


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        if not terms:
            return list(PROBLEM_KINDS)
        kinds = []
        for term in terms:
            if term not in KIND_GROUPS:
                raise AnsibleLookupError(f'redis_problem_kinds: unknown group {term!r}; use one of {", ".join(KIND_GROUPS)}, or none for every kind')
            kinds.extend(kind for kind in KIND_GROUPS[term] if kind not in kinds)
        return kinds
