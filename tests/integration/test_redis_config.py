"""redis_config: runtime settings applied with CONFIG SET, restart-only ones reported, bad input refused."""

from __future__ import annotations

import pytest

from playbook import run_module
from servers import raw_command


def config_get(server, name):
    reply = raw_command(server, 'CONFIG', 'GET', name)
    return dict(zip(reply[0::2], reply[1::2]))[name]


def test_runtime_settings_applied_once(build, servers):
    server, = servers.start(1)
    wanted = {'maxmemory': '64mb', 'maxmemory-policy': 'allkeys-lru', 'appendonly': True, 'save': '900 1 300 10',
              'cluster-node-timeout': 3000}
    planned = run_module('redis_config', check=True, node=server.node, settings=wanted)
    assert planned['changed'] is True
    assert planned['settings_changed'] == ['appendonly', 'maxmemory', 'maxmemory-policy', 'save']
    assert config_get(server, 'maxmemory') == '0'

    applied = run_module('redis_config', diff=True, node=server.node, settings=wanted)
    assert applied['changed'] is True and applied['restart_required'] == []
    assert config_get(server, 'maxmemory') == str(64 * 1024 * 1024)
    assert config_get(server, 'maxmemory-policy') == 'allkeys-lru'
    assert config_get(server, 'appendonly') == 'yes'
    assert config_get(server, 'save') == '900 1 300 10'
    assert 'maxmemory 0' in applied['diff']['before'] and f'maxmemory {64 * 1024 * 1024}' in applied['diff']['after']

    again = run_module('redis_config', node=server.node, settings=wanted)
    assert again['changed'] is False and again['settings_changed'] == []
    assert run_module('redis_config', check=True, node=server.node, settings=wanted)['changed'] is False


def test_restart_only_settings_reported_not_changed(build, servers):
    server, = servers.start(1)
    databases = config_get(server, 'databases')
    result = run_module('redis_config', node=server.node, settings={'databases': int(databases) + 3, 'maxmemory': '32mb'})
    assert result['changed'] is True
    assert result['restart_required'] == ['databases'] and result['settings_changed'] == ['maxmemory']
    assert config_get(server, 'databases') == databases


@pytest.mark.one_build
def test_unknown_setting_fails_before_any_change(build, servers):
    server, = servers.start(1)
    result = run_module('redis_config', node=server.node, settings={'maxmemory': '16mb', 'no-such-setting': 'yes'})
    assert result['failed'] is True
    assert server.address in result['msg'] and 'no-such-setting' in result['msg'] and 'nothing was changed' in result['msg']
    assert config_get(server, 'maxmemory') == '0'


@pytest.mark.one_build
def test_secret_values_never_shown(build, servers):
    server, = servers.start(1)
    secret = 'config-test-s3cret-value'
    result = run_module('redis_config', diff=True, node=server.node, settings={'masterauth': secret})
    assert result['changed'] is True and result['settings_changed'] == ['masterauth']
    assert secret not in repr(result)
    assert config_get(server, 'masterauth') == secret
