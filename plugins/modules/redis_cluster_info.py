#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: redis_cluster_info
short_description: Report a Redis or Valkey cluster's topology and every problem in it
version_added: 0.1.0
description:
  - Reads the cluster from any member, then every member it knows, and reports the nodes and a list of problems.
  - This is the collection's C(redis-cli --cluster check), with more checks; it never writes to the cluster.
  - "Problems found: unreachable nodes, nodes flagged C(fail) or C(fail?), cluster bus links down, open (migrating or
    importing) slots, slots without an owner, nodes that disagree on the slot map or on replica roles, nodes whose
    C(cluster_state) is not C(ok), masters without a working replica, replicas in their master's failure domain."
  - With O(report), it also draws the cluster for people who would rather look than read, in a file on the host the
    module runs on; that file is the only thing it writes.
options:
  node:
    description: Any member of the cluster.
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
  zones:
    description:
      - Failure-domain label of each node, keyed by C(host:port) (as the cluster knows it) or node id.
      - Without a zone the node's host is its failure domain.
    type: dict
    default: {}
  fail_on_problems:
    description: Fail the task when any problem is found (the result still carries the report).
    type: bool
    default: false
  ignore_problems:
    description:
      - Kinds of problem that do not fail the task with O(fail_on_problems) (they are still reported), for example
        C(master_without_replica) in a cluster built without replicas.
    type: list
    elements: str
    default: []
    choices: [node_unreachable, node_failed, node_pfail, link_down, open_slot, uncovered_slots, config_disagreement,
              cluster_state, master_without_replica, replica_same_domain, ghost_node, certificate_expiring,
              certificate_expired, orphaned_keys]
  certificate_expiry_days:
    description:
      - Over TLS, report C(certificate_expiring) for each node whose served certificate ends within this many days
        (C(certificate_expired) once it has ended), an alert to schedule with O(fail_on_problems).
      - The end date of each node's certificate is in the result's RV(nodes) (C(certificate_expires)).
      - C(0) reports only certificates that have ended.
    type: int
    default: 30
    version_added: 0.2.0
  report:
    description:
      - Write a picture of the cluster to this file on the host the module runs on (use C(delegate_to) to choose it).
      - "The picture: a band per master across the 16384 slots with its slot ranges drawn to scale and coloured by the
        master's zone, a legend of the zones, under each master its replicas (address, zone, link state), a full-width
        coverage band with the slots no node serves in red (those with no owner, and those of a master flagged
        C(fail)), nodes flagged C(fail) or C(fail?) marked, the C(cluster_state) and the list of problems."
      - The file is self-contained (inline SVG and CSS, no script, nothing loaded from elsewhere) and depends only on
        the cluster's state, so an unchanged cluster leaves it unchanged. It is replaced atomically, mode C(0644), and
        only when its content differs; the directory must exist.
      - The task is C(changed) when the file was written (in check mode, when it would be).
    type: path
    version_added: 0.2.0
  report_format:
    description:
      - C(html) writes an HTML page with the picture and a table of the problems; C(svg) writes the SVG picture alone
        (problems included).
      - Used only with O(report).
    type: str
    choices: [html, svg]
    default: html
    version_added: 0.2.0
extends_documentation_fragment:
  - hashslot.redis.connection
attributes:
  check_mode:
    support: full
    description: Reads the cluster the same in check mode; with O(report) it writes no file and reports whether it would.
  diff_mode:
    support: none
    description: Nothing in the cluster changes; the report file, when written, is not shown as a diff.
author:
  - hashslot.redis contributors (@hashslot)
'''

EXAMPLES = r'''
- name: Check the cluster, failing on any problem
  hashslot.redis.redis_cluster_info:
    node: {host: 10.0.1.10, port: 6379}
    zones:
      "10.0.1.10:6379": a
      "10.0.2.10:6379": b
    fail_on_problems: true
  register: health

- name: Draw the cluster into an HTML page on the controller
  hashslot.redis.redis_cluster_info:
    node: {host: 10.0.1.10, port: 6379}
    zones:
      "10.0.1.10:6379": a
      "10.0.2.10:6379": b
    report: /var/tmp/redis-cluster.html
  delegate_to: localhost
  run_once: true

- name: A scheduled alert (AWX) - fail when a node's TLS certificate ends within 21 days
  hashslot.redis.redis_cluster_info:
    node: {host: 10.0.1.10, port: 6379}
    tls: true
    ca_certs: /etc/redis/tls/ca.crt
    certificate_expiry_days: 21
    fail_on_problems: true

- name: Show the masters
  ansible.builtin.debug:
    msg: "{{ health.nodes | selectattr('role', 'equalto', 'master') | map(attribute='address') | list }}"
'''

RETURN = r'''
cluster_state:
  description: C(cluster_state) reported by O(node).
  returned: always
  type: str
  sample: ok
healthy:
  description: True when RV(problems) is empty.
  returned: always
  type: bool
masters:
  description: Number of masters that own slots.
  returned: always
  type: int
replicas:
  description: Number of replicas.
  returned: always
  type: int
nodes:
  description:
    - Every member, with id, address, role, master, slot ranges, flags, link state, replication offset and zone when known.
    - Over TLS, C(certificate_expires) is when the certificate the node serves ends (UTC, ISO 8601).
    - Each node that answers also has C(server) (V(redis) or V(valkey)), C(version), and C(executable), the path of the
      server binary it runs (INFO server; absent on a server that does not report it).
  returned: always
  type: list
  elements: dict
  sample: [{id: 07c37dfeb235213a872192d90877d0cd55635b91, address: "10.0.1.10:6379", role: master, slots: ["0-5461"], slot_count: 5462,
            flags: [master], link_state: connected, replication_offset: 1862, zone: a}]
problems:
  description:
    - Each problem found, as C(kind), C(node) and C(detail).
    - C(ghost_node) is a node the cluster still lists without an address (C(noaddr)), as a server that came back at
      its address with another node id (an empty data directory) leaves its old id. Nobody pings it, so it is never
      flagged C(fail); a master among them keeps its slots unserved and its replica is not promoted. Its C(node) is
      the node id; it also has C(slot_count) and, for a master that still owns slots, C(replica), a replica that can
      take them over (C(null) otherwise).
    - C(certificate_expiring) and C(certificate_expired) also carry C(expires), the certificate's end (UTC, ISO 8601).
    - C(orphaned_keys) is a master holding keys (C(keys)) in slots (C(slots)) other masters own, outside a migration
      open on it, as a migration whose target was failed over while frozen leaves them; clients never read them.
      C(hashslot.redis.redis_cluster_reshard) C(action=fix) removes them.
  returned: always
  type: list
  elements: dict
  sample: [{kind: master_without_replica, node: "10.0.3.10:6379", detail: "owns 5461 slots and has no working replica"}]
report:
  description:
    - The file O(report) names, whether or not it had to be written.
    - C(changed) is true only when its content changed (in check mode, when it would change).
  returned: when O(report) is set
  type: str
  sample: /var/tmp/redis-cluster.html
duration:
  description: Seconds spent.
  returned: always
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hashslot.redis.plugins.module_utils.cluster import ClusterError
from ansible_collections.hashslot.redis.plugins.module_utils.cluster_health import PROBLEM_KINDS, inspect_cluster
from ansible_collections.hashslot.redis.plugins.module_utils.cluster_report import REPORT_FORMATS, render_cluster_report
from ansible_collections.hashslot.redis.plugins.module_utils.module_support import run_cluster_module, write_file_if_changed
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import common_argument_spec, node_argument_spec


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        node=node_argument_spec(),
        zones=dict(type='dict', default={}),
        fail_on_problems=dict(type='bool', default=False),
        ignore_problems=dict(type='list', elements='str', default=[], choices=list(PROBLEM_KINDS)),
        certificate_expiry_days=dict(type='int', default=30),
        report=dict(type='path'),
        report_format=dict(type='str', default='html', choices=list(REPORT_FORMATS)),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def operation(pool):
        if module.params['certificate_expiry_days'] < 0:
            return dict(changed=False, failure='certificate_expiry_days must be 0 or more (nothing was read)')
        result = inspect_cluster(pool, module.params['node']['host'], module.params['node']['port'], module.params['zones'],
                                 module.params['certificate_expiry_days'])
        path = module.params['report']
        if path:
            content = render_cluster_report(result, module.params['report_format'])
            try:
                result['changed'] = write_file_if_changed(path, content, module.check_mode)
            except OSError as exc:
                raise ClusterError(f'cannot write the cluster report to {path}: {exc.strerror or exc}; '
                                   'the directory must exist and be writable by the user the module runs as') from None
            result['report'] = path
        failing = [problem for problem in result['problems'] if problem['kind'] not in module.params['ignore_problems']]
        if module.params['fail_on_problems'] and failing:
            summary = '; '.join(f"{problem['node']}: {problem['kind']}: {problem['detail']}" for problem in failing[:10])
            result['failure'] = f"{len(failing)} problem(s) in the cluster: {summary}"
        return result

    run_cluster_module(module, operation)


if __name__ == '__main__':
    main()
