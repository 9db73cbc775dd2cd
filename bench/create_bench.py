"""Cluster creation (and growth): hashslot.redis.redis_cluster against redis-cli --cluster create (add-node, rebalance).

Usage (from the repository root):

    .venv/bin/python bench/create_bench.py [--rounds N] [--node-timeout MS ...] [--nodes N ...] [--build redis-7.0]
                                           [--module redis_cluster|redis_cluster_create] [--grow]

For every node timeout, every cluster size N and every round, each tool in turn gets N fresh, empty, cluster-enabled
servers on loopback with that cluster-node-timeout, and forms them as N / 2 masters with one replica each: the module
through ansible-playbook, redis-cli with --cluster create. Its servers are started after the other tool's were
stopped, and left idle 2.1 s first (so Redis's CLUSTER_WRITABLE_DELAY of 2 s after startup counts for neither tool);
which tool goes first alternates per round.

Measured per run:
  module duration    the module's own returned `duration` (first connection until every node agrees
                     and reports cluster_state:ok)
  module playbook    wall time of the whole ansible-playbook run (interpreter and Ansible start-up included)
  redis-cli return   wall time of `redis-cli --cluster create ... --cluster-yes`
  redis-cli serving  time from starting redis-cli until every one of its N nodes reports cluster_state:ok
                     (CLUSTER INFO of all N nodes, over connections opened beforehand, every 10 ms
                     after redis-cli returns)

--module picks the module that forms the cluster: redis_cluster (the default; site.yml's) or redis_cluster_create.

--grow measures growing instead: each tool's N servers start with the first N / 2 formed into a cluster (not timed);
the module is one redis_cluster task with all N nodes (new masters, their replicas, the slots rebalanced onto the
new masters); redis-cli runs `--cluster add-node` for each new master, `--cluster rebalance --cluster-use-empty-masters`,
then `--cluster add-node --cluster-slave` for each new replica, as the guides do (a command refused because the nodes
do not agree yet, the last node still being gossiped, is run again every 0.1 s). The columns keep their names.

The curve of issue 19 (how the cost grows with the cluster):

    .venv/bin/python bench/create_bench.py --rounds 3 --node-timeout 1000 --nodes 6 30 60 90 150

Only measured figures are printed; nothing is asserted about speed. The script does assert that
both tools succeeded and that the module's nodes all report cluster_state:ok when it returns.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Tuple

import redis

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))

from playbook import run_single_task  # noqa: E402
from servers import PortAllocator, RedisServer, ServerBuild, ServerFactory, available_builds, cluster_info  # noqa: E402

REPLICAS = 1
WRITABLE_DELAY_PAUSE = 2.1   # Redis refuses cluster writes for 2 s after startup (CLUSTER_WRITABLE_DELAY)
POLL_INTERVAL = 0.01
SERVING_TIMEOUT = 120.0   # the module's wait_timeout, and how long redis-cli's nodes may take to serve
TOOL_TIMEOUT = 300.0      # bounds each tool's process: the benchmark always ends by itself

COLUMNS = ('module_duration', 'module_playbook', 'cli_return', 'cli_serving')


def states(servers: List[RedisServer]) -> Dict[str, str]:
    return {server.address: cluster_info(server).get('cluster_state', '?') for server in servers}


def run_module_create(servers: List[RedisServer], module: str = 'redis_cluster') -> Dict[str, float]:
    wall, result = run_single_task(module, timeout=TOOL_TIMEOUT, nodes=[server.node for server in servers], replicas=REPLICAS,
                                   wait_timeout=SERVING_TIMEOUT)
    assert not result.get('failed'), f'{module} failed: {result.get("msg")}'
    assert result.get('changed'), f'{module} changed nothing: {result}'
    seen = states(servers)
    assert all(state == 'ok' for state in seen.values()), f'module returned before every node was ok: {seen}'
    return {'module_duration': float(result['duration']), 'module_playbook': wall}


class ServingWatch:
    """One open connection to each server, so that a sweep of CLUSTER INFO over a hundred nodes costs one round trip
    and not a connection each (which would add its own seconds to the redis-cli figures at large N)."""

    def __init__(self, servers: List[RedisServer]):
        self.connections = {server.address: redis.Connection(host='127.0.0.1', port=server.port, decode_responses=True, socket_timeout=10)
                            for server in servers}
        for connection in self.connections.values():
            connection.connect()

    def not_serving(self) -> List[str]:
        for connection in self.connections.values():
            connection.send_command('CLUSTER', 'INFO')
        return [address for address, connection in self.connections.items() if 'cluster_state:ok' not in connection.read_response()]

    def close(self) -> None:
        for connection in self.connections.values():
            connection.disconnect()


def timed_cli(servers: List[RedisServer], commands: List[List[str]], retry_disagreement: bool = False) -> Dict[str, float]:
    """Run redis-cli's commands one after the other, then wait until every node serves: both timed from the start.

    With retry_disagreement, a command refused because the nodes do not agree yet (the last node still being
    gossiped) is run again every 0.1 s, as the guides tell an operator to; the time counts.
    """
    watch = ServingWatch(servers)
    try:
        started = time.monotonic()
        for command in commands:
            while True:
                completed = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False)
                if completed.returncode == 0:
                    break
                if not retry_disagreement or "don't agree" not in completed.stdout or time.monotonic() - started > TOOL_TIMEOUT:
                    raise AssertionError(f'{" ".join(command)} failed ({completed.returncode}):\n{completed.stdout}{completed.stderr}')
                time.sleep(POLL_INTERVAL * 10)
        returned = time.monotonic() - started
        while watch.not_serving():
            if time.monotonic() - started > SERVING_TIMEOUT:
                raise AssertionError(f'redis-cli cluster not serving after {SERVING_TIMEOUT} s: {states(servers)}')
            time.sleep(POLL_INTERVAL)
        serving = time.monotonic() - started
    finally:
        watch.close()
    return {'cli_return': returned, 'cli_serving': serving}


def run_cli_create(build: ServerBuild, servers: List[RedisServer]) -> Dict[str, float]:
    return timed_cli(servers, [[build.cli, '--cluster', 'create', *[server.address for server in servers],
                                '--cluster-replicas', str(REPLICAS), '--cluster-yes']])


def run_cli_grow(build: ServerBuild, servers: List[RedisServer], formed: int) -> Dict[str, float]:
    """redis-cli grows the cluster of servers[:formed] to all of them: masters added, slots rebalanced, replicas added."""
    seed = servers[0].address
    joining = servers[formed:]
    masters = joining[:len(joining) // (REPLICAS + 1)]
    commands = [[build.cli, '--cluster', 'add-node', server.address, seed] for server in masters]
    commands.append([build.cli, '--cluster', 'rebalance', seed, '--cluster-use-empty-masters'])
    commands += [[build.cli, '--cluster', 'add-node', server.address, seed, '--cluster-slave'] for server in joining[len(masters):]]
    return timed_cli(servers, commands, retry_disagreement=True)


def one_round(build: ServerBuild, nodes: int, node_timeout: int, module_first: bool, module: str = 'redis_cluster',
              grow: bool = False) -> Dict[str, float]:
    """Each tool forms (or grows) N servers of its own while no other servers of this round run: a formed cluster of a
    hundred nodes keeps the cores busy with its gossip, which would slow whichever tool went second."""
    figures: Dict[str, float] = {}
    for tool in ('module', 'cli') if module_first else ('cli', 'module'):
        # A new allocator hands out the ports the last servers freed: a curve up to hundreds of nodes would otherwise
        # run out of the test port range.
        factory = ServerFactory(build, PortAllocator())
        try:
            servers = factory.start(nodes, **{'cluster-node-timeout': str(node_timeout)})
            time.sleep(WRITABLE_DELAY_PAUSE)
            if grow:
                formed = nodes // 2
                run_module_create(servers[:formed], 'redis_cluster_create')
                figures.update(run_module_create(servers, 'redis_cluster') if tool == 'module' else run_cli_grow(build, servers, formed))
            else:
                figures.update(run_module_create(servers, module) if tool == 'module' else run_cli_create(build, servers))
        finally:
            factory.close()
    return figures


def ratio(numerator: float, denominator: float) -> str:
    return f'{numerator / denominator:.2f}x' if denominator > 0 else 'n/a'


def print_table(build: ServerBuild, node_timeout: int, by_size: List[Tuple[int, List[Dict[str, float]]]], what: str) -> None:
    rounds = len(by_size[0][1])
    print()
    print(f'### {build.name}, {what}, cluster-node-timeout {node_timeout} ms, {rounds} rounds (medians, seconds)')
    print()
    print('| nodes | module duration | module ansible-playbook wall | redis-cli return | redis-cli serving '
          '| redis-cli serving / module duration | redis-cli serving / module playbook wall |')
    print('|---:|---:|---:|---:|---:|---:|---:|')
    for nodes, runs in by_size:
        median = {column: statistics.median(run[column] for run in runs) for column in COLUMNS}
        print(f'| {nodes} | {median["module_duration"]:.3f} | {median["module_playbook"]:.3f} | {median["cli_return"]:.3f} '
              f'| {median["cli_serving"]:.3f} | {ratio(median["cli_serving"], median["module_duration"])} '
              f'| {ratio(median["cli_serving"], median["module_playbook"])} |')
    sys.stdout.flush()


def main() -> int:
    # Stopped from outside (a time bound), the servers are still stopped: `finally` runs on SystemExit.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--rounds', type=int, default=3, help='rounds per node timeout and cluster size (default 3)')
    parser.add_argument('--node-timeout', type=int, nargs='+', default=[500, 1000, 5000], metavar='MS',
                        help='cluster-node-timeout values in milliseconds (default: 500 1000 5000)')
    parser.add_argument('--nodes', type=int, nargs='+', default=[6], metavar='N',
                        help='cluster sizes, nodes per tool, even and at least 6 (default: 6)')
    parser.add_argument('--build', default='redis-7.0', help='server build from `tools/redis-servers list` (default redis-7.0)')
    parser.add_argument('--module', default='redis_cluster', choices=['redis_cluster', 'redis_cluster_create'],
                        help='the module that forms the cluster (default redis_cluster)')
    parser.add_argument('--grow', action='store_true', help='grow a cluster of N / 2 nodes to N instead of forming N')
    args = parser.parse_args()
    for nodes in args.nodes:
        if nodes < 6 or nodes % 2:
            parser.error(f'--nodes {nodes}: a cluster of N / 2 masters with one replica each needs an even N of 6 or more')

    builds = available_builds()
    if args.build not in builds:
        parser.error(f'{args.build} is not installed; available: {", ".join(sorted(builds))}')
    build = builds[args.build]

    what = 'growing N / 2 to N nodes with redis_cluster' if args.grow else f'forming N nodes with {args.module}'
    print(f'{build.name}: {build.server}, {build.cli}; {what}; {", ".join(map(str, args.nodes))} nodes per tool, replicas={REPLICAS}')
    tables = []
    for node_timeout in args.node_timeout:
        by_size = []
        for nodes in args.nodes:
            rounds = []
            for index in range(args.rounds):
                module_first = index % 2 == 0
                figures = one_round(build, nodes, node_timeout, module_first, args.module, args.grow)
                rounds.append(figures)
                print(f'node-timeout {node_timeout}, {nodes} nodes, round {index + 1} ({"module" if module_first else "redis-cli"} first): '
                      + ', '.join(f'{column} {figures[column]:.3f}' for column in COLUMNS))
                sys.stdout.flush()
            by_size.append((nodes, rounds))
        tables.append((node_timeout, by_size))
    for node_timeout, by_size in tables:
        print_table(build, node_timeout, by_size, what)
    return 0


if __name__ == '__main__':
    sys.exit(main())
