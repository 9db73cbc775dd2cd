"""Passwords reach the nodes and nothing else: not results, not -vvv output, not any command line."""

from __future__ import annotations

import json
import os
import threading

from playbook import run_tasks
from servers import raw_command

PASSWORD = 'hashslot-Secret-4f9a1c'


class CommandLineSampler:
    """Reads every process's command line every few milliseconds while a playbook runs."""

    def __init__(self):
        self.hits = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for pid in os.listdir('/proc'):
                if not pid.isdigit():
                    continue
                try:
                    with open(f'/proc/{pid}/cmdline', 'rb') as handle:
                        line = handle.read().replace(b'\0', b' ').decode('utf-8', 'replace')
                except OSError:
                    continue
                if PASSWORD in line:
                    self.hits.append(line)
            self.samples += 1
            self._stop.wait(0.005)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(timeout=10)


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
    with CommandLineSampler() as sampler:
        run = run_tasks(tasks, verbosity=3, diff=True, env={'REDISCLI_AUTH': PASSWORD})
    created, info, wrong = run.results
    assert not created.get('failed'), created
    assert created['changed'] is True
    assert not info.get("failed"), (info.get("msg"), info.get("problems"))
    assert wrong.get('failed') and 'authentication failed' in wrong['msg']
    assert sampler.samples > 10 and sampler.hits == []
    assert PASSWORD not in run.output
    assert PASSWORD not in json.dumps(run.results)
