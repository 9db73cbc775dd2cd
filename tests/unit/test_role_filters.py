"""The filters that hold the roles' decisions and file formats (redis_tuning, redis_exporter, redis_install)."""

from __future__ import annotations

import base64

import pytest
import yaml
from hypothesis import given, strategies as st

from ansible.errors import AnsibleFilterError

from ansible_collections.hashslot.redis.plugins.filter.redis_exporter import (
    redis_env_lines, redis_exporter_services, redis_exporter_targets, redis_exporter_unread, redis_scrape_configs, redis_scrape_entries,
)
from ansible_collections.hashslot.redis.plugins.filter.redis_install import (
    redis_build_provider, redis_installed_versions, redis_package_names,
)
from ansible_collections.hashslot.redis.plugins.filter.redis_tuning import (
    redis_sysctl_invalid, redis_sysctl_lines, redis_sysctl_state, redis_sysctl_wanted, redis_thp_exec_lines,
    redis_thp_state, redis_tuning_notes,
)

THP = '/sys/kernel/mm/transparent_hugepage'


def slurped(text):
    return {'content': base64.b64encode(text.encode()).decode()}


def test_sysctl_settings_that_are_no_sysctl_are_named():
    settings = {'vm.swappiness': 1, 'net/ipv4/conf/eth0.100/rp_filter': '1', 'bad key': 1, 'vm.flag': True,
                'vm.list': [1], 'vm.multi': '1\n2', 'vm.blank': '  ', 'vm.float': 0.5, 'vm.words': '4096 87380 6291456'}
    assert redis_sysctl_invalid(settings) == ['bad key=1', 'vm.flag=True', 'vm.list=[1]', 'vm.multi=1\n2', 'vm.blank=  ']
    with pytest.raises(AnsibleFilterError, match='dict of sysctl settings'):
        redis_sysctl_invalid(['vm.swappiness'])


def test_sysctl_wanted_gives_each_key_its_proc_file_and_its_words():
    assert redis_sysctl_wanted({'vm.swappiness': 1, 'net/ipv4/conf/eth0.100/rp_filter': ' 1 ', 'net.ipv4.tcp_rmem': '4096\t87380  6291456'}) == [
        {'key': 'vm.swappiness', 'path': '/proc/sys/vm/swappiness', 'wanted': '1'},
        {'key': 'net/ipv4/conf/eth0.100/rp_filter', 'path': '/proc/sys/net/ipv4/conf/eth0.100/rp_filter', 'wanted': '1'},
        {'key': 'net.ipv4.tcp_rmem', 'path': '/proc/sys/net/ipv4/tcp_rmem', 'wanted': '4096 87380 6291456'},
    ]


def test_sysctl_state_compares_the_kernel_words_and_keeps_what_can_be_done():
    wanted = redis_sysctl_wanted({'vm.swappiness': 1, 'net.ipv4.tcp_rmem': '4096 87380 6291456', 'vm.gone': 1, 'vm.locked': 1})
    probes = {'results': [
        {'item': wanted[0], 'stat': {'exists': True, 'readable': True, 'writeable': True}},
        {'item': wanted[1], 'stat': {'exists': True, 'readable': True, 'writeable': False}},
        {'item': wanted[2], 'stat': {'exists': False}},
        {'item': wanted[3], 'stat': {'exists': True, 'readable': False, 'writeable': False}},
    ]}
    reads = {'results': [slurped('60\n'), slurped('4096\t87380\t6291456\n'), {'skipped': True}, {'skipped': True}]}
    rows = redis_sysctl_state(probes, reads)
    assert [(row['key'], row['current'], row['differs'], row['exists'], row['readable'], row['writable']) for row in rows] == [
        ('vm.swappiness', '60', True, True, True, True),
        ('net.ipv4.tcp_rmem', '4096 87380 6291456', False, True, True, False),
        ('vm.gone', None, True, False, False, False),
        ('vm.locked', None, True, True, False, False),
    ]
    assert rows[0]['path'] == '/proc/sys/vm/swappiness' and rows[0]['wanted'] == '1'


def test_thp_state_reads_the_bracketed_word_and_the_choices():
    probes = {'results': [{'item': {'name': 'enabled', 'value': 'never'}, 'stat': {'exists': True, 'writeable': True}},
                          {'item': {'name': 'defrag', 'value': 'madvise'}, 'stat': {'exists': False}},
                          {'item': {'name': 'defrag', 'value': 'never'}, 'stat': {'exists': False}}]}
    reads = {'results': [slurped('always [madvise] never\n'), {'skipped': True}, {'skipped': True}]}
    rows = redis_thp_state(probes, reads, THP)
    assert rows[0] == {'name': 'enabled', 'path': f'{THP}/enabled', 'wanted': 'never', 'current': 'madvise',
                       'choices': ['always', 'madvise', 'never'], 'differs': True, 'exists': True, 'writable': True}
    # A kernel without huge pages already gives `never`.
    assert [(row['current'], row['choices'], row['differs']) for row in rows[1:]] == [(None, [], True), (None, [], False)]


def test_tuning_notes_say_what_was_not_applied_and_why():
    sysctl = [{'key': 'vm.swappiness', 'path': '/proc/sys/vm/swappiness', 'wanted': '1', 'current': '60', 'exists': True, 'readable': True},
              {'key': 'vm.gone', 'path': '/proc/sys/vm/gone', 'wanted': '1', 'current': None, 'exists': False, 'readable': False},
              {'key': 'vm.hidden', 'path': '/proc/sys/vm/hidden', 'wanted': '1', 'current': None, 'exists': True, 'readable': False}]
    thp = [{'name': 'enabled', 'path': f'{THP}/enabled', 'wanted': 'never', 'current': 'madvise', 'exists': True},
           {'name': 'defrag', 'path': f'{THP}/defrag', 'wanted': 'madvise', 'current': None, 'exists': False}]
    notes = redis_tuning_notes(sysctl, thp, '/etc/sysctl.d/90-redis-tuning.conf', 'redis-tuning-thp.service',
                               boot_settings=[{'name': 'enabled', 'value': 'never'}], service_manager='sysvinit')
    assert notes == [
        'sysctl vm.swappiness=1 not applied (the kernel has 60): /proc/sys/vm/swappiness is read-only; '
        'it is persisted in /etc/sysctl.d/90-redis-tuning.conf for the next boot',
        'sysctl vm.gone=1 not applied (the kernel has no value): this kernel has no /proc/sys/vm/gone; '
        'it is persisted in /etc/sysctl.d/90-redis-tuning.conf for the next boot',
        'sysctl vm.hidden=1 not applied (the kernel has no value): /proc/sys/vm/hidden cannot be read; '
        'it is persisted in /etc/sysctl.d/90-redis-tuning.conf for the next boot',
        f'transparent_hugepage/enabled=never not applied (the kernel has madvise): {THP}/enabled is read-only',
        f'transparent_hugepage/defrag=madvise not applied (the kernel has no value): this kernel has no {THP}/defrag',
        'no boot unit (redis-tuning-thp.service) for transparent huge pages: the service manager is sysvinit, not systemd; '
        'they are set at runtime only and revert at reboot until this role runs again',
    ]
    assert redis_tuning_notes([], [], 'f', 'u', boot_settings=[{'name': 'enabled', 'value': 'never'}], service_manager='systemd') == []
    assert redis_tuning_notes([], [], 'f', 'u', boot_settings=[], service_manager='sysvinit') == []


@given(st.dictionaries(st.from_regex(r'[A-Za-z][A-Za-z0-9_.]{0,12}', fullmatch=True),
                       st.one_of(st.integers(0, 10 ** 9), st.from_regex(r'[0-9]{1,5}( [0-9]{1,5}){0,2}', fullmatch=True))))
def test_sysctl_file_lists_every_setting_once_sorted_by_key(settings):
    text = redis_sysctl_lines(settings)
    lines = text.splitlines()
    assert len(lines) == len(settings) and (text.endswith('\n') or not settings)
    assert [line.split(' = ')[0] for line in lines] == sorted(settings, key=str.lower)
    for line in lines:
        key, value = line.split(' = ')
        assert value == ' '.join(str(settings[key]).split())


def test_thp_boot_unit_runs_one_command_per_setting_in_order():
    settings = [{'name': 'enabled', 'value': 'never'}, {'name': 'defrag', 'value': 'madvise'}]
    assert redis_thp_exec_lines(settings, THP) == (f"ExecStart=/bin/sh -c 'echo never > {THP}/enabled'\n"
                                                   f"ExecStart=/bin/sh -c 'echo madvise > {THP}/defrag'\n")


# ------------------------------------------------------------------------------------------------------ redis_exporter

INSTANCES = [{'port': 7000}, {'port': '7001', 'announce_ip': '2001:db8::5', 'zone': 'z1'}, {'port': 7002, 'exporter_port': 9300}]


def test_exporter_targets_in_multi_target_mode_share_the_host_port():
    targets = redis_exporter_targets(INSTANCES, '10.0.0.1', tls=True, mode='multi_target', port='9121', zone='z0')
    assert targets == [
        {'instance_port': 7000, 'address': '10.0.0.1:7000', 'uri': 'rediss://10.0.0.1:7000', 'zone': 'z0', 'exporter_port': 9121},
        {'instance_port': 7001, 'address': '[2001:db8::5]:7001', 'uri': 'rediss://[2001:db8::5]:7001', 'zone': 'z1', 'exporter_port': 9121},
        {'instance_port': 7002, 'address': '10.0.0.1:7002', 'uri': 'rediss://10.0.0.1:7002', 'zone': 'z0', 'exporter_port': 9121},
    ]
    assert redis_exporter_services(targets, 'multi_target', '9121') == [
        {'unit': 'redis-exporter.service', 'name': 'redis-exporter', 'addr': '', 'port': 9121}]


def test_exporter_targets_per_instance_take_their_own_port_or_the_next_one():
    targets = redis_exporter_targets(INSTANCES, 'cache-1', mode='per_instance', port=9121)
    assert [(target['uri'], target['exporter_port'], target['zone']) for target in targets] == [
        ('redis://cache-1:7000', 9121, ''), ('redis://[2001:db8::5]:7001', 9122, 'z1'), ('redis://cache-1:7002', 9300, '')]
    assert redis_exporter_services(targets, 'per_instance', 9121)[1] == {
        'unit': 'redis-exporter@7001.service', 'name': 'redis-exporter-7001', 'addr': 'redis://[2001:db8::5]:7001', 'port': 9122}
    with pytest.raises(AnsibleFilterError, match='mode must be one of'):
        redis_exporter_targets(INSTANCES, 'cache-1', mode='sidecar')


def test_unread_instances_are_the_scrapes_without_redis_up_1():
    scrapes = {'results': [{'item': {'uri': 'redis://a:1'}, 'content': '# HELP\nredis_up 1\n'},
                           {'item': {'uri': 'redis://a:2'}, 'content': 'redis_up 0\n'},
                           {'item': {'uri': 'redis://a:3'}, 'failed': True, 'msg': 'Connection refused'},
                           {'item': {'uri': 'redis://a:4'}, 'skipped': True}]}
    assert redis_exporter_unread(scrapes) == ['redis://a:2', 'redis://a:3']


def test_env_lines_keep_the_order_and_empty_values():
    assert redis_env_lines({'REDIS_ADDR': '', 'REDIS_USER': 'u', 'PORT': 9121}) == 'REDIS_ADDR=\nREDIS_USER=u\nPORT=9121\n'


def test_scrape_configuration_has_one_job_per_mode_in_use():
    multi = redis_scrape_entries(redis_exporter_targets(INSTANCES[:1], '192.0.2.1', port=9121), 'multi_target', '192.0.2.1', 'cache')
    single = redis_scrape_entries(redis_exporter_targets(INSTANCES[:2], '192.0.2.2', mode='per_instance', port=9121),
                                  'per_instance', '2001:db8::2', 'cache')
    assert multi == [{'mode': 'multi_target', 'uri': 'redis://192.0.2.1:7000', 'address': '192.0.2.1:7000',
                      'exporter': '192.0.2.1:9121', 'labels': {'redis_cluster': 'cache'}}]
    assert single[1]['exporter'] == '[2001:db8::2]:9122' and single[1]['labels'] == {'redis_cluster': 'cache', 'redis_zone': 'z1'}
    text = redis_scrape_configs(multi + single, 'redis', '15s', '10s')
    parsed = yaml.safe_load(text)['scrape_configs']
    assert [job['job_name'] for job in parsed] == ['redis', 'redis-per-instance']
    assert parsed[0]['static_configs'] == [{'targets': ['redis://192.0.2.1:7000'],
                                            'labels': {'__tmp_exporter_address': '192.0.2.1:9121', 'redis_cluster': 'cache'}}]
    assert parsed[1]['static_configs'][1] == {'targets': ['[2001:db8::2]:9122'],
                                              'labels': {'instance': '[2001:db8::5]:7001', 'redis_cluster': 'cache', 'redis_zone': 'z1'}}
    assert [job['job_name'] for job in yaml.safe_load(redis_scrape_configs(single, 'redis', '15s', '10s'))['scrape_configs']] == ['redis']
    assert text.endswith('target_label: instance\n      - source_labels: [__tmp_exporter_address]\n        target_label: __address__\n'
                         '  - job_name: "redis-per-instance"\n    scrape_interval: "15s"\n    scrape_timeout: "10s"\n'
                         '    # One exporter per instance, on its own port.\n    metrics_path: /metrics\n    static_configs:\n'
                         '      - targets: ["[2001:db8::2]:9121"]\n'
                         '        labels: {"instance": "192.0.2.2:7000", "redis_cluster": "cache"}\n'
                         '      - targets: ["[2001:db8::2]:9122"]\n'
                         '        labels: {"instance": "[2001:db8::5]:7001", "redis_cluster": "cache", "redis_zone": "z1"}\n')


# ------------------------------------------------------------------------------------------------------- redis_install

def test_installed_versions_read_only_installed_packages():
    lines = ['installed redis-server 5:7.0.15-1~deb12u1', 'config-files redis-tools 5:7.0.11-1', 'installed libc6 2.36-9',
             'not-installed valkey-server ', 'installed odd']
    assert redis_installed_versions(lines) == {'redis-server': '5:7.0.15-1~deb12u1', 'libc6': '2.36-9', 'odd': ''}


DEBIAN_REGEX = r'^([0-9]+:)?7\.0\.15[+~-]'


@pytest.mark.parametrize('installed, expected', [
    ({}, ['redis-server=*7.0.15[+~-]*', 'redis-tools=*7.0.15[+~-]*']),
    ({'redis-server': '5:7.0.15-1~deb12u1', 'redis-tools': '5:7.0.11-1'}, ['redis-server', 'redis-tools=*7.0.15[+~-]*']),
])
def test_package_names_pin_the_version_only_where_it_is_not_installed(installed, expected):
    names = redis_package_names(['redis-server', 'redis-tools'], '7.0.15', '=*7.0.15[+~-]*', DEBIAN_REGEX, installed)
    assert names == expected
    assert redis_package_names(['redis-server', 'redis-tools'], '', '=*[+~-]*', '^', installed) == ['redis-server', 'redis-tools']


@given(st.lists(st.tuples(st.sampled_from(['g1', 'g2', '']), st.booleans()), min_size=1, max_size=8), st.booleans())
def test_build_provider_is_the_first_present_host_else_the_first_missing_one(hosts, cached):
    hostvars = {f'h{index}': {'__redis_install_build_group': group, '__redis_install_present': present}
                for index, (group, present) in enumerate(hosts)}
    names = list(hostvars)
    provider = redis_build_provider(hostvars, names, 'g1', cached=cached)
    members = [name for name in names if hostvars[name]['__redis_install_build_group'] == 'g1']
    missing = [name for name in members if not hostvars[name]['__redis_install_present']]
    if cached or not missing:
        assert provider == ''
    else:
        present = [name for name in members if hostvars[name]['__redis_install_present']]
        assert provider == (present or missing)[0]


def test_build_provider_ignores_hosts_that_have_no_group_yet():
    assert redis_build_provider({'a': {}, 'b': {'__redis_install_build_group': 'g', '__redis_install_present': False}}, ['a', 'b'], 'g') == 'b'
