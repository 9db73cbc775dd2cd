# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The redis_exporter role's decisions and files, in Python rather than in Jinja: redis_exporter_targets (what each
instance's exporter scrapes and where it listens), redis_exporter_services (the exporter services of a host),
redis_exporter_unread (the instances a verification scrape could not read), redis_env_lines (an environment file),
redis_scrape_entries and redis_scrape_configs (Prometheus's scrape configuration for the exporters).

Each is documented in its own YAML file next to this one.
"""

from __future__ import annotations

import json
import re
from typing import Any, List

from ansible.errors import AnsibleFilterError

MODES = ('multi_target', 'per_instance')
REDIS_UP = re.compile(r'(?m)^redis_up 1$')


def _list(filter_name: str, value: Any, what: str) -> List[Any]:
    if not isinstance(value, list):
        raise AnsibleFilterError(f'{filter_name} expects a list of {what}, got {type(value).__name__}')
    return value


def _mode(filter_name: str, mode: str) -> str:
    if mode not in MODES:
        raise AnsibleFilterError(f"{filter_name}: mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def bracketed(host: str) -> str:
    """An IPv6 address in brackets, as a URI or host:port needs it; anything else as it is."""
    return f'[{host}]' if ':' in host and not host.startswith('[') else host


def redis_exporter_targets(instances, host, tls=False, mode='multi_target', port=9121, zone=''):
    """One entry per instance: its address (announce_ip, else `host`), the URI the exporter scrapes (the password
    file's key, the `instance` label), its zone (a scrape label) and the port its exporter listens on (the host's one
    `port` in multi_target mode; in per_instance mode its exporter_port, else `port` plus its position)."""
    _mode('redis_exporter_targets', mode)
    scheme = 'rediss' if tls else 'redis'
    targets = []
    for index, instance in enumerate(_list('redis_exporter_targets', instances, 'instances')):
        address = bracketed(str(instance.get('announce_ip') or host))
        if mode == 'per_instance':
            exporter_port = int(instance['exporter_port'] if 'exporter_port' in instance else int(port) + index)
        else:
            exporter_port = int(port)
        targets.append({'instance_port': int(instance['port']), 'address': f"{address}:{instance['port']}",
                        'uri': f"{scheme}://{address}:{instance['port']}", 'zone': str(instance.get('zone') or zone or ''),
                        'exporter_port': exporter_port})
    return targets


def redis_exporter_services(targets, mode='multi_target', port=9121):
    """The host's exporter services: one for every instance (multi_target, no address: /metrics carries only the
    exporter's own metrics) or one per instance (per_instance, scraping its URI): the unit, the name of its settings
    file, the address it scrapes and the port it listens on."""
    if _mode('redis_exporter_services', mode) == 'multi_target':
        return [{'unit': 'redis-exporter.service', 'name': 'redis-exporter', 'addr': '', 'port': int(port)}]
    return [{'unit': f"redis-exporter@{target['instance_port']}.service", 'name': f"redis-exporter-{target['instance_port']}",
             'addr': target['uri'], 'port': target['exporter_port']} for target in _list('redis_exporter_services', targets, 'targets')]


def redis_exporter_unread(scrapes):
    """The URIs of the instances whose verification scrape (the registered uri loop over the targets) did not say
    redis_up 1; skipped items (check mode) are left out."""
    results = scrapes.get('results', []) if isinstance(scrapes, dict) else _list('redis_exporter_unread', scrapes, 'uri results')
    return [scrape['item']['uri'] for scrape in results if 'skipped' not in scrape and not REDIS_UP.search(str(scrape.get('content') or ''))]


def redis_env_lines(settings):
    """`NAME=value` per setting, in order, each line newline-terminated (an empty value stays empty)."""
    if not isinstance(settings, dict):
        raise AnsibleFilterError(f'redis_env_lines expects a dict of settings, got {type(settings).__name__}')
    return ''.join(f"{name}={'' if value is None else value}\n" for name, value in settings.items())


def redis_scrape_entries(targets, mode, scrape_host, cluster_label):
    """A host's scrape targets for the Prometheus configuration: its mode, each instance's URI and address, the
    exporter Prometheus reaches (`scrape_host`, the host's address, with the target's exporter port) and the labels
    (redis_cluster, and redis_zone where the instance has a zone)."""
    _mode('redis_scrape_entries', mode)
    host = bracketed(str(scrape_host))
    return [{'mode': mode, 'uri': target['uri'], 'address': target['address'], 'exporter': f"{host}:{target['exporter_port']}",
             'labels': dict({'redis_cluster': str(cluster_label)}, **({'redis_zone': target['zone']} if target['zone'] else {}))}
            for target in _list('redis_scrape_entries', targets, 'targets')]


def _json(value: Any) -> str:
    return json.dumps(value)


def redis_scrape_configs(entries, job_name, interval, timeout):
    """The scrape_configs section (YAML, strings as JSON) for every host's entries: one job per exporter mode in use,
    multi_target first (the metrics paths differ); with both, the per_instance job's name ends in -per-instance."""
    entries = _list('redis_scrape_configs', entries, 'scrape entries')
    modes = [mode for mode in MODES if any(entry['mode'] == mode for entry in entries)]
    lines = ['scrape_configs:']
    for mode in modes:
        name = f'{job_name}-per-instance' if mode == 'per_instance' and len(modes) > 1 else str(job_name)
        lines += [f'  - job_name: {_json(name)}', f'    scrape_interval: {_json(interval)}', f'    scrape_timeout: {_json(timeout)}']
        chosen = [entry for entry in entries if entry['mode'] == mode]
        if mode == 'multi_target':
            lines += ['    # One exporter per host answers for each of its instances on /scrape?target=<the instance\'s URI>.',
                      '    metrics_path: /scrape', '    static_configs:']
            for entry in chosen:
                lines += [f"      - targets: [{_json(entry['uri'])}]",
                          f"        labels: {_json(dict({'__tmp_exporter_address': entry['exporter']}, **entry['labels']))}"]
            lines += ['    relabel_configs:', '      - source_labels: [__address__]', '        target_label: __param_target',
                      '      - source_labels: [__address__]', '        regex: "[a-z]+://(.+)"', '        target_label: instance',
                      '      - source_labels: [__tmp_exporter_address]', '        target_label: __address__']
        else:
            lines += ['    # One exporter per instance, on its own port.', '    metrics_path: /metrics', '    static_configs:']
            for entry in chosen:
                lines += [f"      - targets: [{_json(entry['exporter'])}]",
                          f"        labels: {_json(dict({'instance': entry['address']}, **entry['labels']))}"]
    return '\n'.join(lines) + '\n'


class FilterModule:
    def filters(self):
        return {'redis_exporter_targets': redis_exporter_targets, 'redis_exporter_services': redis_exporter_services,
                'redis_exporter_unread': redis_exporter_unread, 'redis_env_lines': redis_env_lines,
                'redis_scrape_entries': redis_scrape_entries, 'redis_scrape_configs': redis_scrape_configs}
