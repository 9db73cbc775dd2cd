"""docs/monitoring/: the alert rules and their unit tests pass promtool, the dashboard and the alerts use only metrics
redis_exporter 1.45.0 exports, and playbooks/prometheus_config.yml writes a scrape configuration Prometheus accepts,
with the targets, addresses and labels the inventory implies. promtool comes from tools/promtool (no server runs)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MONITORING = os.path.join(REPO, 'docs', 'monitoring')
ALERTS = os.path.join(MONITORING, 'alerts.yml')
ALERT_TESTS = os.path.join(MONITORING, 'alerts_test.yml')
DASHBOARD = os.path.join(MONITORING, 'dashboard.json')
EXAMPLE = os.path.join(MONITORING, 'scrape_config.example.yml')
PLAYBOOK = os.path.join(REPO, 'playbooks', 'prometheus_config.yml')
REGENERATE_EXAMPLE = ('ansible-playbook -i inventories/production.example playbooks/prometheus_config.yml '
                      '-e redis_exporter_prometheus_config_file=$PWD/docs/monitoring/scrape_config.example.yml')

# What oliver006/redis_exporter v1.45.0 exports (namespace `redis`), read in its source: exporter/exporter.go
# (metricMapGauges, metricMapCounters, metricDescriptions and the `up` gauge), exporter/info.go (instance_info,
# the replication series) and exporter/metrics.go (every CLUSTER INFO field `cluster_*` under its own name; `ok`
# reads 1 and `fail` 0). Only the names the monitoring files use, and what they carry besides the target's labels.
EXPORTER_METRICS = {
    'redis_up': set(),
    'redis_instance_info': {'role', 'redis_version', 'redis_build_id', 'redis_mode', 'os', 'maxmemory_policy', 'tcp_port',
                            'run_id', 'process_id'},
    'redis_cluster_state': set(),
    'redis_cluster_slots_assigned': set(),
    'redis_cluster_slots_ok': set(),
    'redis_cluster_slots_pfail': set(),
    'redis_cluster_slots_fail': set(),
    'redis_connected_slaves': set(),
    'redis_connected_slave_offset_bytes': {'slave_ip', 'slave_port', 'slave_state'},
    'redis_connected_slave_lag_seconds': {'slave_ip', 'slave_port', 'slave_state'},
    'redis_master_link_up': {'master_host', 'master_port'},
    'redis_memory_used_bytes': set(),
    'redis_memory_max_bytes': set(),
    'redis_evicted_keys_total': set(),
    'redis_rejected_connections_total': set(),
    'redis_commands_processed_total': set(),
}
# Prometheus's own series for every target.
PROMETHEUS_METRICS = {'up'}
# The labels every target of the generated scrape configuration has.
TARGET_LABELS = {'job', 'instance', 'redis_cluster', 'redis_zone'}

PROMQL_WORDS = {
    'and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'bool',
    'sum', 'min', 'max', 'avg', 'count', 'rate', 'increase', 'label_join', 'humanize', 'humanizePercentage',
}


def promtool_path() -> str:
    completed = subprocess.run([os.path.join(REPO, 'tools', 'promtool'), 'path'], capture_output=True, text=True,
                               stdin=subprocess.DEVNULL, timeout=600, check=False)
    if completed.returncode != 0:
        pytest.fail(f'tools/promtool could not provide promtool (make promtool):\n{completed.stderr}')
    return completed.stdout.strip()


@pytest.fixture(scope='module')
def promtool():
    path = promtool_path()

    def run(*args: str, cwd: str = REPO) -> subprocess.CompletedProcess:
        return subprocess.run([path, *args], capture_output=True, text=True, cwd=cwd, stdin=subprocess.DEVNULL,
                              timeout=120, check=False)
    return run


def metric_names(expr: str) -> set:
    """The series names in a PromQL expression: identifiers that are neither keywords, functions, label names
    (matched against a string, or listed in by/on/without), durations nor inside quoted strings."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r'\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)', ' ', expr)
    expr = re.sub(r'\[[^\]]*\]', ' ', expr)
    names = set()
    for match in re.finditer(r'[A-Za-z_:][A-Za-z0-9_:]*', expr):
        word, rest = match.group(0), expr[match.end():].lstrip()
        if word in PROMQL_WORDS or re.match(r'(=~|!~|!=|=)\s*""', rest):
            continue
        if re.match(r'\d', word) or expr[max(match.start() - 1, 0)] in '0123456789.':
            continue
        names.add(word)
    return names


def label_matchers(expr: str) -> set:
    return set(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*"', expr))


def load_alerts() -> list:
    with open(ALERTS) as handle:
        groups = yaml.safe_load(handle)['groups']
    return [rule for group in groups for rule in group['rules'] if 'alert' in rule]


def dashboard_expressions() -> list:
    with open(DASHBOARD) as handle:
        dashboard = json.load(handle)
    expressions = [target['expr'] for panel in dashboard['panels'] for target in panel.get('targets', [])]
    for variable in dashboard['templating']['list']:
        if variable['type'] == 'query':
            expressions.append(re.match(r'label_values\((.*),\s*\w+\)$', variable['query']['query']).group(1))
    return expressions


# ------------------------------------------------------------------------------------------------- alert rules

def test_alert_rules_pass_promtool_check(promtool):
    completed = promtool('check', 'rules', ALERTS)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_alert_rule_unit_tests_pass(promtool):
    completed = promtool('test', 'rules', ALERT_TESTS)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_every_alert_has_for_severity_and_annotations_naming_the_instance():
    alerts = load_alerts()
    assert len({rule['alert'] for rule in alerts}) == len(alerts)
    for rule in alerts:
        assert 'for' in rule, rule['alert']
        assert rule['labels']['severity'] in ('critical', 'warning'), rule['alert']
        for annotation in ('summary', 'description'):
            assert '$labels.instance' in rule['annotations'][annotation], (rule['alert'], annotation)


def test_every_alert_is_tested_firing_and_silent():
    with open(ALERT_TESTS) as handle:
        cases = [case for test in yaml.safe_load(handle)['tests'] for case in test['alert_rule_test']]
    for rule in load_alerts():
        own = [case for case in cases if case['alertname'] == rule['alert']]
        assert any(case['exp_alerts'] for case in own), f"{rule['alert']}: no test case in which it fires"
        # Healthy nodes are in every input besides; a case without any alert shows the `for:` period or a healthy start.
        assert any(not case['exp_alerts'] for case in own), f"{rule['alert']}: no test case in which it is silent"


def test_alerts_use_only_metrics_and_labels_the_exporter_has():
    known = set(EXPORTER_METRICS) | PROMETHEUS_METRICS
    for rule in load_alerts():
        names = metric_names(rule['expr'])
        assert names, rule['alert']
        assert names <= known, f"{rule['alert']}: {sorted(names - known)} not exported by redis_exporter 1.45.0"
        labels = set().union(*(EXPORTER_METRICS.get(name, set()) for name in names)) | TARGET_LABELS
        assert label_matchers(rule['expr']) <= labels, rule['alert']
        templated = set(re.findall(r'\$labels\.(\w+)', rule['annotations']['summary'] + rule['annotations']['description']))
        assert templated <= labels, rule['alert']


@pytest.mark.parametrize('expr, names', [
    ('redis_up == 0', {'redis_up'}),
    ('up{redis_cluster!=""} == 0', {'up'}),
    ('rate(redis_evicted_keys_total[5m]) > 0', {'redis_evicted_keys_total'}),
    ('redis_memory_used_bytes / (redis_memory_max_bytes > 0) > 0.85', {'redis_memory_used_bytes', 'redis_memory_max_bytes'}),
    ('redis_instance_info{role="master"} and on (job, instance) (redis_instance_info{role="slave"} offset 10m)',
     {'redis_instance_info'}),
    ('max by (instance, master) (label_join(redis_master_link_up{a="x"}, "master", ":", "h", "p"))', {'redis_master_link_up'}),
    ('sum by (instance) (rate(redis_commands_processed_total{x=~"$i"}[$__rate_interval]))', {'redis_commands_processed_total'}),
])
def test_metric_names_are_found_in_expressions(expr, names):
    assert metric_names(expr) == names


# --------------------------------------------------------------------------------------------------- dashboard

def test_dashboard_is_a_grafana_dashboard_on_a_prometheus_variable():
    with open(DASHBOARD) as handle:
        dashboard = json.load(handle)
    assert 36 <= dashboard['schemaVersion'] <= 39
    variables = {variable['name']: variable for variable in dashboard['templating']['list']}
    assert variables['datasource']['type'] == 'datasource' and variables['datasource']['query'] == 'prometheus'
    assert {'cluster', 'instance'} <= set(variables)
    ids = [panel['id'] for panel in dashboard['panels']]
    assert len(ids) == len(set(ids))
    for panel in dashboard['panels']:
        assert panel['datasource'] == {'type': 'prometheus', 'uid': '${datasource}'}, panel['title']
        for target in panel['targets']:
            assert target['datasource']['uid'] == '${datasource}', panel['title']
            assert 'redis_cluster="$cluster"' in target['expr'], panel['title']


def test_dashboard_uses_only_metrics_the_exporter_has():
    known = set(EXPORTER_METRICS)
    used = set()
    for expr in dashboard_expressions():
        names = metric_names(expr)
        assert names, expr
        assert names <= known, f'{expr}: {sorted(names - known)} not exported by redis_exporter 1.45.0'
        labels = set().union(*(EXPORTER_METRICS[name] for name in names)) | TARGET_LABELS
        assert label_matchers(expr) <= labels, expr
        used |= names
    # The panels the dashboard promises: slot coverage, ops/s, memory used vs max, replication.
    assert {'redis_cluster_state', 'redis_cluster_slots_ok', 'redis_commands_processed_total', 'redis_memory_used_bytes',
            'redis_memory_max_bytes', 'redis_instance_info', 'redis_connected_slaves', 'redis_master_link_up',
            'redis_connected_slave_lag_seconds'} <= used


def test_dashboard_expressions_parse(promtool, tmp_path):
    rules = [{'record': f'dashboard:expr_{index}', 'expr': expr.replace('$__rate_interval', '1m')}
             for index, expr in enumerate(dashboard_expressions())]
    rule_file = tmp_path / 'dashboard_rules.yml'
    rule_file.write_text(yaml.safe_dump({'groups': [{'name': 'dashboard', 'rules': rules}]}))
    completed = promtool('check', 'rules', str(rule_file))
    assert completed.returncode == 0, completed.stdout + completed.stderr


# ------------------------------------------------------------------------------------------ scrape configuration

def ansible_env() -> dict:
    env = dict(os.environ)
    env.update(ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, '.collections'), ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0',
               ANSIBLE_RETRY_FILES_ENABLED='False', ANSIBLE_LOCALHOST_WARNING='False', ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    return env


def render(inventory: str, destination: str, *options: str) -> subprocess.CompletedProcess:
    command = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', inventory, PLAYBOOK,
               '-e', f'redis_exporter_prometheus_config_file={destination}', *options]
    return subprocess.run(command, cwd=REPO, env=ansible_env(), capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=300, check=False)


MIXED_INVENTORY = {'all': {'children': {'redis_cluster': {
    'vars': {'redis_server_tls_enabled': False, 'redis_server_instances': [{'port': 6379}, {'port': 6380, 'exporter_port': 9200}]},
    'hosts': {
        'cache-1': {'ansible_host': '192.0.2.1'},
        'cache-2': {'ansible_host': '192.0.2.2', 'redis_exporter_mode': 'per_instance', 'redis_zone': 'rack-2',
                    'redis_exporter_scrape_host': '2001:db8::2'},
    }}}}}


@pytest.fixture(scope='module')
def rendered(tmp_path_factory):
    """Each case's ansible-playbook run (side by side: each takes a few seconds) and the configuration it wrote."""
    workdir = tmp_path_factory.mktemp('scrape')
    mixed = workdir / 'mixed.yml'
    mixed.write_text(yaml.safe_dump(MIXED_INVENTORY))
    cases = {
        'local': ('inventories/local',),
        'local-per-instance': ('inventories/local', '-e', 'redis_exporter_mode=per_instance'),
        'production': ('inventories/production.example',),
        'mixed': (str(mixed), '-e', 'redis_exporter_cluster_label=cache'),
    }
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        runs = {name: pool.submit(render, args[0], str(workdir / name / 'scrape.yml'), *args[1:]) for name, args in cases.items()}
        results = {}
        for name, future in runs.items():
            completed = future.result()
            path = workdir / name / 'scrape.yml'
            results[name] = (completed, path.read_text() if path.exists() else None)
    return results


def scrape_configs(rendered, name: str) -> list:
    completed, text = rendered[name]
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return yaml.safe_load(text)['scrape_configs']


def discovered_targets(promtool, tmp_path, configs: list) -> dict:
    """job name -> the labels of each target after relabelling, as Prometheus computes them."""
    config = {'global': {'scrape_interval': '15s'}, 'rule_files': [ALERTS], 'scrape_configs': configs}
    (tmp_path / 'prometheus.yml').write_text(yaml.safe_dump(config))
    completed = promtool('check', 'config', 'prometheus.yml', cwd=str(tmp_path))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    # It reports what static discovery delivered (at once) when the timeout ends.
    jobs = [job['job_name'] for job in configs]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        runs = [pool.submit(promtool, 'check', 'service-discovery', '--timeout=1s', 'prometheus.yml', job, cwd=str(tmp_path))
                for job in jobs]
    targets = {}
    for job, run in zip(jobs, runs):
        completed = run.result()
        assert completed.returncode == 0, completed.stdout + completed.stderr
        targets[job] = by_url(scraped(target['labels']) for target in json.loads(completed.stdout))
    return targets


def by_url(targets) -> list:
    return sorted(targets, key=lambda target: target[0])


def scraped(labels: dict) -> tuple:
    """Where Prometheus sends the request, and the labels the series get."""
    url = f"{labels['__scheme__']}://{labels['__address__']}{labels['__metrics_path__']}"
    if '__param_target' in labels:
        url += f"?target={labels['__param_target']}"
    return url, {key: value for key, value in labels.items() if not key.startswith('__')}


def test_production_scrapes_each_host_exporter_for_its_tls_instance(rendered, promtool, tmp_path):
    configs = scrape_configs(rendered, 'production')
    targets = discovered_targets(promtool, tmp_path, configs)
    assert list(targets) == ['redis_cluster']
    expected = []
    for address, zone in [('10.0.1.11', 'az-1'), ('10.0.1.12', 'az-1'), ('10.0.2.11', 'az-2'), ('10.0.2.12', 'az-2'),
                          ('10.0.3.11', 'az-3'), ('10.0.3.12', 'az-3')]:
        expected.append((f'http://{address}:9121/scrape?target=rediss://{address}:6379',
                         {'job': 'redis_cluster', 'instance': f'{address}:6379', 'redis_cluster': 'redis_cluster', 'redis_zone': zone}))
    assert targets['redis_cluster'] == by_url(expected)
    assert configs[0]['scrape_interval'] == '15s' and configs[0]['scrape_timeout'] == '10s'


def test_local_multi_target_scrapes_one_exporter_for_six_instances(rendered, promtool, tmp_path):
    targets = discovered_targets(promtool, tmp_path, scrape_configs(rendered, 'local'))
    expected = [(f'http://localhost:9121/scrape?target=redis://localhost:{port}',
                 {'job': 'redis_cluster', 'instance': f'localhost:{port}', 'redis_cluster': 'redis_cluster', 'redis_zone': zone})
                for port, zone in zip(range(7000, 7006), 'abcabc')]
    assert targets['redis_cluster'] == by_url(expected)


def test_local_per_instance_scrapes_an_exporter_per_instance(rendered, promtool, tmp_path):
    targets = discovered_targets(promtool, tmp_path, scrape_configs(rendered, 'local-per-instance'))
    expected = [(f'http://localhost:{9121 + index}/metrics',
                 {'job': 'redis_cluster', 'instance': f'localhost:{port}', 'redis_cluster': 'redis_cluster', 'redis_zone': zone})
                for index, (port, zone) in enumerate(zip(range(7000, 7006), 'abcabc'))]
    assert targets['redis_cluster'] == by_url(expected)


def test_mixed_modes_get_a_job_each(rendered, promtool, tmp_path):
    targets = discovered_targets(promtool, tmp_path, scrape_configs(rendered, 'mixed'))
    assert targets['cache'] == [
        ('http://192.0.2.1:9121/scrape?target=redis://192.0.2.1:6379',
         {'job': 'cache', 'instance': '192.0.2.1:6379', 'redis_cluster': 'cache'}),
        ('http://192.0.2.1:9121/scrape?target=redis://192.0.2.1:6380',
         {'job': 'cache', 'instance': '192.0.2.1:6380', 'redis_cluster': 'cache'}),
    ]
    # Prometheus reaches the exporters at redis_exporter_scrape_host (an IPv6 address in brackets); the `instance`
    # label is the node's own address.
    assert targets['cache-per-instance'] == [
        ('http://[2001:db8::2]:9121/metrics',
         {'job': 'cache-per-instance', 'instance': '192.0.2.2:6379', 'redis_cluster': 'cache', 'redis_zone': 'rack-2'}),
        ('http://[2001:db8::2]:9200/metrics',
         {'job': 'cache-per-instance', 'instance': '192.0.2.2:6380', 'redis_cluster': 'cache', 'redis_zone': 'rack-2'}),
    ]


def test_committed_example_is_current(rendered):
    completed, text = rendered['production']
    assert completed.returncode == 0, completed.stdout + completed.stderr
    with open(EXAMPLE) as handle:
        committed = handle.read()
    assert committed == text, f'docs/monitoring/scrape_config.example.yml is stale; regenerate it with:\n  {REGENERATE_EXAMPLE}'
