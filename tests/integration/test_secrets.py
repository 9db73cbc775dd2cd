"""Passwords reach the nodes and nothing else: not results, not -vvv output, not any command line."""

from __future__ import annotations

import pytest

import json

from cmdline_sampler import CommandLineSampler
from playbook import run_tasks
from servers import raw_command

PASSWORD = 'hashslot-Secret-4f9a1c'


@pytest.mark.one_build
def test_password_only_reaches_the_nodes(servers):
    nodes = servers.start(6)
    for node in nodes:
        # Set after start so the test servers' own command lines stay clean too.
        raw_command(node, 'CONFIG', 'SET', 'masterauth', PASSWORD)
        raw_command(node, 'CONFIG', 'SET', 'requirepass', PASSWORD)
    spec = [dict(node.node, zone='abc'[index % 3]) for index, node in enumerate(nodes)]
    zones = {node.address: 'abc'[index % 3] for index, node in enumerate(nodes)}
    tasks = [
        {'hashslot.redis.redis_cluster_create': {'nodes': spec}},
        {'hashslot.redis.redis_cluster_info': {'node': nodes[0].node, 'zones': zones, 'login_password': PASSWORD, 'fail_on_problems': True}},
        {'hashslot.redis.redis_cluster_create': {'nodes': spec, 'login_password': 'wrong-password'}},
    ]
    with CommandLineSampler(PASSWORD) as sampler:
        run = run_tasks(tasks, verbosity=3, diff=True, env={'REDISCLI_AUTH': PASSWORD})
    created, info, wrong = run.results
    assert not created.get('failed'), created
    assert created['changed'] is True
    assert not info.get("failed"), (info.get("msg"), info.get("problems"))
    assert wrong.get('failed') and 'authentication failed' in wrong['msg']
    assert sampler.samples > 10 and sampler.hits == []
    assert PASSWORD not in run.output
    assert PASSWORD not in json.dumps(run.results)
