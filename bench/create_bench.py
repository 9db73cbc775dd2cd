"""Cluster creation: hashslot.redis.redis_cluster_create against redis-cli --cluster create.

Usage (from the repository root):

    .venv/bin/python bench/create_bench.py [--rounds N] [--node-timeout MS ...] [--build redis-7.0]

For every node timeout and every round, 12 fresh, empty, cluster-enabled servers are started on
loopback with that cluster-node-timeout. After a 2.1 s pause (so Redis's CLUSTER_WRITABLE_DELAY of
2 s after startup counts for neither tool), 6 of them are formed by the module through
ansible-playbook and the other 6 by redis-cli; which tool goes first alternates per round.

Measured per run:
  module duration    the module's own returned `duration` (first connection until every node agrees
                     and reports cluster_state:ok)
  module playbook    wall time of the whole ansible-playbook run (interpreter and Ansible start-up included)
  redis-cli return   wall time of `redis-cli --cluster create ... --cluster-yes`
  redis-cli serving  time from starting redis-cli until every one of its 6 nodes reports cluster_state:ok
                     (CLUSTER INFO polled every 10 ms after redis-cli returns)

Only measured figures are printed; nothing is asserted about speed. The script does assert that
both tools succeeded and that the module's nodes all report cluster_state:ok when it returns.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))

from playbook import run_single_task  # noqa: E402
from servers import PortAllocator, RedisServer, ServerBuild, ServerFactory, available_builds, cluster_info  # noqa: E402

NODES_PER_TOOL = 6
REPLICAS = 1
WRITABLE_DELAY_PAUSE = 2.1   # Redis refuses cluster writes for 2 s after startup (CLUSTER_WRITABLE_DELAY)
POLL_INTERVAL = 0.01
SERVING_TIMEOUT = 60.0

COLUMNS = ('module_duration', 'module_playbook', 'cli_return', 'cli_serving')


def states(servers: List[RedisServer]) -> Dict[str, str]:
    return {server.address: cluster_info(server).get('cluster_state', '?') for server in servers}


def run_module_create(servers: List[RedisServer]) -> Dict[str, float]:
    wall, result = run_single_task('redis_cluster_create', nodes=[server.node for server in servers], replicas=REPLICAS)
    assert not result.get('failed'), f'redis_cluster_create failed: {result.get("msg")}'
    assert result.get('changed'), f'redis_cluster_create changed nothing: {result}'
    seen = states(servers)
    assert all(state == 'ok' for state in seen.values()), f'module returned before every node was ok: {seen}'
    return {'module_duration': float(result['duration']), 'module_playbook': wall}


def run_cli_create(build: ServerBuild, servers: List[RedisServer]) -> Dict[str, float]:
    command = [build.cli, '--cluster', 'create', *[server.address for server in servers],
               '--cluster-replicas', str(REPLICAS), '--cluster-yes']
    started = time.monotonic()
    completed = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False)
    returned = time.monotonic() - started
    assert completed.returncode == 0, f'redis-cli failed ({completed.returncode}):\n{completed.stdout}{completed.stderr}'
    pending = list(servers)
    while pending:
        pending = [server for server in pending if cluster_info(server).get('cluster_state') != 'ok']
        if not pending:
            break
        if time.monotonic() - started > SERVING_TIMEOUT:
            raise AssertionError(f'redis-cli cluster not serving after {SERVING_TIMEOUT} s: {states(servers)}')
        time.sleep(POLL_INTERVAL)
    serving = time.monotonic() - started
    return {'cli_return': returned, 'cli_serving': serving}


def one_round(build: ServerBuild, ports: PortAllocator, node_timeout: int, module_first: bool) -> Dict[str, float]:
    factory = ServerFactory(build, ports)
    try:
        servers = factory.start(2 * NODES_PER_TOOL, **{'cluster-node-timeout': str(node_timeout)})
        time.sleep(WRITABLE_DELAY_PAUSE)
        module_nodes, cli_nodes = servers[:NODES_PER_TOOL], servers[NODES_PER_TOOL:]
        figures: Dict[str, float] = {}
        if module_first:
            figures.update(run_module_create(module_nodes))
            figures.update(run_cli_create(build, cli_nodes))
        else:
            figures.update(run_cli_create(build, cli_nodes))
            figures.update(run_module_create(module_nodes))
        return figures
    finally:
        factory.close()


def ratio(numerator: float, denominator: float) -> str:
    return f'{numerator / denominator:.2f}x' if denominator > 0 else 'n/a'


def print_table(build: ServerBuild, node_timeout: int, rounds: List[Dict[str, float]]) -> None:
    median = {column: statistics.median(run[column] for run in rounds) for column in COLUMNS}
    print()
    print(f'### {build.name}, cluster-node-timeout {node_timeout} ms, {len(rounds)} rounds (medians, seconds)')
    print()
    print('| module duration | module ansible-playbook wall | redis-cli return | redis-cli serving '
          '| redis-cli return / module duration | redis-cli serving / module duration |')
    print('|---:|---:|---:|---:|---:|---:|')
    print(f'| {median["module_duration"]:.3f} | {median["module_playbook"]:.3f} | {median["cli_return"]:.3f} '
          f'| {median["cli_serving"]:.3f} | {ratio(median["cli_return"], median["module_duration"])} '
          f'| {ratio(median["cli_serving"], median["module_duration"])} |')
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--rounds', type=int, default=3, help='rounds per node timeout (default 3)')
    parser.add_argument('--node-timeout', type=int, nargs='+', default=[500, 1000, 5000], metavar='MS',
                        help='cluster-node-timeout values in milliseconds (default: 500 1000 5000)')
    parser.add_argument('--build', default='redis-7.0', help='server build from `tools/redis-servers list` (default redis-7.0)')
    args = parser.parse_args()

    builds = available_builds()
    if args.build not in builds:
        parser.error(f'{args.build} is not installed; available: {", ".join(sorted(builds))}')
    build = builds[args.build]
    ports = PortAllocator()

    print(f'{build.name}: {build.server}, {build.cli}; {NODES_PER_TOOL} nodes per tool, replicas={REPLICAS}')
    tables = []
    for node_timeout in args.node_timeout:
        rounds = []
        for index in range(args.rounds):
            module_first = index % 2 == 0
            figures = one_round(build, ports, node_timeout, module_first)
            rounds.append(figures)
            print(f'node-timeout {node_timeout} round {index + 1} ({"module" if module_first else "redis-cli"} first): '
                  + ', '.join(f'{column} {figures[column]:.3f}' for column in COLUMNS))
            sys.stdout.flush()
        tables.append((node_timeout, rounds))
    for node_timeout, rounds in tables:
        print_table(build, node_timeout, rounds)
    return 0


if __name__ == '__main__':
    sys.exit(main())
