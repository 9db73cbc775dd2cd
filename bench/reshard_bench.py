"""Resharding: hashslot.redis.redis_cluster_reshard against redis-cli --cluster rebalance.

Usage (from the repository root):

    .venv/bin/python bench/reshard_bench.py [--keys N] [--value-size B] [--rounds R] [--build redis-7.0[,valkey-8.1.1,...]]

Per build and round, identical clusters (one per tool) are built on loopback, each of 6 servers formed as 3 masters + 3 replicas
(tests/integration/conftest.py form_cluster, i.e. the engine) plus 1 empty master added with
hashslot.redis.redis_cluster_node (CLUSTER MEET); every server runs with cluster-node-timeout 5000 so that a long
MIGRATE does not trigger a failover. Each cluster is loaded with the same N keys of B bytes: every key's slot is
computed client-side and SETs are pipelined straight to the master owning it, about 10000 per round trip.
Before timing, every cluster must pass `redis-cli --cluster check` and its replicas must have caught up.

Then, each on its own cluster, the empty master is given its share (4096 of 16384 slots):
  module             hashslot.redis.redis_cluster_reshard action=rebalance (defaults: method auto, use_empty_masters,
                     pipeline 1000, parallel 4, slot_batch 128) through a whole ansible-playbook run: wall time of the
                     run, plus the module's own returned duration, moved_slots and moved_keys. On Valkey 9 auto
                     means atomic slot migration.
  module keys        (Valkey 9 only) the same with method=keys, the SETSLOT/MIGRATE path every server has
  cli                redis-cli (valkey-cli for Valkey) --cluster rebalance <node> --cluster-use-empty-masters (its
                     default pipeline, 10): the legacy key-by-key migration
  cli p1000          the same with --cluster-pipeline 1000
  cli atomic         (Valkey 9 only) valkey-cli --cluster rebalance ... --cluster-use-atomic-slot-migration
Which tool goes first rotates per round. With several builds (--build a,b) each build's rounds run in turn, and one
table per build is printed at the end.

After each run the script asserts that the masters (nodes whose ROLE is master) still hold N keys in total and
that `redis-cli --cluster check` exits 0 (retried for up to 30 s, for the cluster bus to spread the last epochs;
that wait is not timed), and records the new master's DBSIZE (keys moved) and slot count. All servers are stopped
at the end of every round.

Only measured figures are printed; nothing is asserted about speed.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, '.collections')
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from redis.crc import key_slot  # noqa: E402

from conftest import form_cluster  # noqa: E402
from playbook import run_module, run_single_task  # noqa: E402
from servers import PortAllocator, RedisServer, ServerBuild, ServerFactory, available_builds, raw_command  # noqa: E402

NODE_TIMEOUT = '5000'
LOAD_BATCH = 10000
CHECK_RETRY = 30.0
SETTLE_TIMEOUT = 120.0
TOOL_TIMEOUT = 1800      # seconds; bounds every ansible-playbook / redis-cli run
SLOTS = 16384

BASE_TOOLS = ('module', 'cli', 'cli p1000')
ATOMIC_TOOLS = ('module', 'module keys', 'cli atomic', 'cli', 'cli p1000')


def tools_for(build: ServerBuild) -> Tuple[str, ...]:
    """The tools compared on a build: the atomic ones too where the server has atomic slot migration (Valkey 9)."""
    flavor, dummy, version = build.name.partition('-')
    return ATOMIC_TOOLS if flavor == 'valkey' and int(version.split('.')[0]) >= 9 else BASE_TOOLS


class _WithConfig:
    """Lets form_cluster start servers with extra configuration (it calls start(count))."""

    def __init__(self, factory: ServerFactory, extra: Dict[str, str]):
        self.factory = factory
        self.extra = extra

    def start(self, count: int, cluster: bool = True) -> List[RedisServer]:
        return self.factory.start(count, cluster=cluster, **self.extra)


# ----------------------------------------------------------------------------------------------- data set

def encode(*parts: bytes) -> bytes:
    out = [b'*%d\r\n' % len(parts)]
    for part in parts:
        out.append(b'$%d\r\n%s\r\n' % (len(part), part))
    return b''.join(out)


def build_dataset(keys: int, value_size: int) -> List[Tuple[int, bytes]]:
    """Per slot: (number of keys, the RESP-encoded SETs of all its keys), computed once and sent to every cluster."""
    value = (b'0123456789abcdef' * (value_size // 16 + 1))[:value_size]
    per_slot: List[List[bytes]] = [[] for dummy in range(SLOTS)]
    for number in range(keys):
        key = b'key:%d' % number
        per_slot[key_slot(key)].append(encode(b'SET', key, value))
    return [(len(commands), b''.join(commands)) for commands in per_slot]


def slot_owners(server: RedisServer) -> Dict[int, int]:
    """slot -> port of the master owning it."""
    owners = {}
    for entry in raw_command(server, 'CLUSTER', 'SLOTS'):
        start, end, master = int(entry[0]), int(entry[1]), entry[2]
        for slot in range(start, end + 1):
            owners[slot] = int(master[1])
    return owners


def send_batch(sock: socket.socket, payload: bytes, count: int) -> None:
    sock.sendall(payload)
    received = bytearray()
    while received.count(b'\r\n') < count:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise AssertionError('server closed the connection while loading')
        received += chunk
    replies = bytes(received).split(b'\r\n')[:count]
    bad = [reply for reply in replies if reply != b'+OK']
    assert not bad, f'{len(bad)} SETs refused while loading, e.g. {bad[0]!r}'


def load(servers: List[RedisServer], dataset: List[Tuple[int, bytes]]) -> None:
    owners = slot_owners(servers[0])
    assert len(owners) == SLOTS, f'only {len(owners)} slots covered before loading'
    by_master: Dict[int, List[int]] = {}
    for slot, port in owners.items():
        by_master.setdefault(port, []).append(slot)
    for port, slots in by_master.items():
        with socket.create_connection(('127.0.0.1', port), timeout=120) as sock:
            pending: List[bytes] = []
            pending_count = 0
            for slot in slots:
                count, payload = dataset[slot]
                if not count:
                    continue
                pending.append(payload)
                pending_count += count
                if pending_count >= LOAD_BATCH:
                    send_batch(sock, b''.join(pending), pending_count)
                    pending, pending_count = [], 0
            if pending:
                send_batch(sock, b''.join(pending), pending_count)


# ----------------------------------------------------------------------------------------------- cluster state

def masters_of(servers: List[RedisServer]) -> List[RedisServer]:
    return [server for server in servers if raw_command(server, 'ROLE')[0] == 'master']


def total_keys(servers: List[RedisServer]) -> int:
    return sum(raw_command(server, 'DBSIZE') for server in masters_of(servers))


def slot_count(server: RedisServer) -> int:
    myself = next(line for line in raw_command(server, 'CLUSTER', 'NODES').splitlines() if 'myself' in line.split()[2])
    count = 0
    for field in myself.split()[8:]:
        if field.startswith('['):
            continue                       # an open slot ([slot->-id] / [slot-<-id]), not owned
        start, dash, end = field.partition('-')
        count += int(end) - int(start) + 1 if dash else 1
    return count


def cluster_check(build: ServerBuild, server: RedisServer) -> subprocess.CompletedProcess:
    return subprocess.run([build.cli, '--cluster', 'check', server.address], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120, check=False)


def wait_for_check(build: ServerBuild, server: RedisServer, timeout: float = CHECK_RETRY) -> None:
    deadline = time.monotonic() + timeout
    while True:
        check = cluster_check(build, server)
        if check.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f'redis-cli --cluster check still fails after {timeout:.0f} s '
                                 f'(exit {check.returncode}):\n{check.stdout[-3000:]}{check.stderr[-1000:]}')
        time.sleep(0.5)


def replicas_caught_up(servers: List[RedisServer]) -> bool:
    for master in masters_of(servers):
        info = dict(line.split(':', 1) for line in raw_command(master, 'INFO', 'replication').splitlines() if ':' in line)
        offset = info['master_repl_offset']
        for name, value in info.items():
            if name.startswith('slave') and name[5:].isdigit():
                fields = dict(item.split('=', 1) for item in value.split(','))
                if fields.get('state') != 'online' or fields.get('offset') != offset:
                    return False
    return True


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout:.0f} s waiting for {what}')
        time.sleep(0.1)


def build_cluster(factory: ServerFactory) -> Tuple[List[RedisServer], RedisServer]:
    extra = {'cluster-node-timeout': NODE_TIMEOUT}
    servers = form_cluster(_WithConfig(factory, extra), count=6)
    new_master = factory.start(1, **extra)[0]
    added = run_module('redis_cluster_node', cluster=servers[0].node, node=new_master.node, role='master')
    assert not added.get('failed'), f'redis_cluster_node failed: {added.get("msg")}'
    return servers + [new_master], new_master


# ----------------------------------------------------------------------------------------------- the tools

def reshard_module(method: str) -> Callable[[ServerBuild, List[RedisServer]], Dict]:
    def run(build: ServerBuild, servers: List[RedisServer]) -> Dict:
        # A playbook of this one task, as an operator runs it; its wall time is what the goal counts.
        wall, result = run_single_task('redis_cluster_reshard', timeout=TOOL_TIMEOUT, node=servers[0].node, action='rebalance',
                                       method=method)
        if result.get('failed'):
            raise AssertionError(f'redis_cluster_reshard failed after {wall:.1f} s: {result.get("msg")}\n'
                                 f'{ {k: v for k, v in result.items() if k not in ("diff", "actions", "invocation")} }')
        return {'wall': wall, 'duration': float(result['duration']), 'moved_slots': result.get('moved_slots'),
                'moved_keys': result.get('moved_keys'), 'method': result.get('method')}
    return run


def cli_rebalance(pipeline: Optional[int], atomic: bool = False) -> Callable[[ServerBuild, List[RedisServer]], Dict]:
    def run(build: ServerBuild, servers: List[RedisServer]) -> Dict:
        command = [build.cli, '--cluster', 'rebalance', servers[0].address, '--cluster-use-empty-masters']
        if pipeline is not None:
            command += ['--cluster-pipeline', str(pipeline)]
        if atomic:
            command.append('--cluster-use-atomic-slot-migration')
        started = time.monotonic()
        completed = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False)
        wall = time.monotonic() - started
        assert completed.returncode == 0, (f'{" ".join(command)} failed ({completed.returncode}) after {wall:.1f} s:\n'
                                           f'{completed.stdout[-3000:]}{completed.stderr[-2000:]}')
        return {'wall': wall}
    return run


RUNNERS = {'module': reshard_module('auto'), 'module keys': reshard_module('keys'), 'cli': cli_rebalance(None),
           'cli p1000': cli_rebalance(1000), 'cli atomic': cli_rebalance(None, atomic=True)}


def measure(tool: str, build: ServerBuild, servers: List[RedisServer], new_master: RedisServer, keys: int) -> Dict:
    load_before = os.getloadavg()[0]
    figures = RUNNERS[tool](build, servers)
    figures['load_before'] = load_before
    wait_for_check(build, servers[0])
    total = total_keys(servers)
    assert total == keys, f'{tool}: masters hold {total} keys after the run, expected {keys}'
    figures['new_master_keys'] = raw_command(new_master, 'DBSIZE')
    figures['new_master_slots'] = slot_count(new_master)
    return figures


def one_round(build: ServerBuild, ports: PortAllocator, dataset: List[Tuple[int, bytes]], keys: int,
              order: List[str]) -> Tuple[Dict[str, Dict], Dict[str, str]]:
    tools = tools_for(build)
    factory = ServerFactory(build, ports)
    figures: Dict[str, Dict] = {}
    errors: Dict[str, str] = {}
    try:
        clusters = {}
        for tool in tools:
            started = time.monotonic()
            servers, new_master = build_cluster(factory)
            load(servers, dataset)
            total = total_keys(servers)
            assert total == keys, f'loaded {total} keys, expected {keys}'
            clusters[tool] = (servers, new_master)
            print(f'  cluster for {tool}: {", ".join(s.address for s in servers)}; loaded {total} keys '
                  f'({time.monotonic() - started:.1f} s)')
            sys.stdout.flush()
        for tool in tools:
            servers, dummy = clusters[tool]
            wait_for_check(build, servers[0], SETTLE_TIMEOUT)
            wait_until(lambda: replicas_caught_up(servers), SETTLE_TIMEOUT, 'replicas to catch up')
        for tool in order:
            servers, new_master = clusters[tool]
            try:
                figures[tool] = measure(tool, build, servers, new_master, keys)
            except (AssertionError, subprocess.TimeoutExpired) as exc:
                errors[tool] = str(exc)
                print(f'  {tool}: FAILED: {exc}')
            else:
                row = figures[tool]
                print(f'  {tool}: wall {row["wall"]:.2f} s'
                      + (f', module duration {row["duration"]:.2f} s ({row["method"]}), moved_slots {row["moved_slots"]}, '
                         f'moved_keys {row["moved_keys"]}' if 'duration' in row else '')
                      + f'; new master {row["new_master_slots"]} slots, {row["new_master_keys"]} keys'
                      + f' (1-min load average before: {row["load_before"]:.2f})')
            sys.stdout.flush()
    finally:
        factory.close()
    return figures, errors


# ----------------------------------------------------------------------------------------------- report

def ratio(numerator: float, denominator: float) -> str:
    return f'{numerator / denominator:.2f}x' if denominator > 0 else 'n/a'


def print_table(build: ServerBuild, keys: int, value_size: int, rounds: List[Dict[str, Dict]]) -> None:
    def median(tool: str, column: str) -> Optional[float]:
        values = [run[tool][column] for run in rounds if tool in run and run[tool].get(column) is not None]
        return statistics.median(values) if values else None

    module_wall = median('module', 'wall')
    cli = os.path.basename(build.cli)
    print()
    print(f'### {build.name}, {keys} keys of {value_size} bytes, 3 masters + 3 replicas + 1 empty master, '
          f'{len(rounds)} round(s){" (medians)" if len(rounds) > 1 else ""}')
    print()
    print('| tool | wall s | module duration s | keys moved (new master DBSIZE) | slots moved | wall / module wall |')
    print('|---|---:|---:|---:|---:|---:|')
    methods = {run['module'].get('method') for run in rounds if 'module' in run}
    labels = {'module': f'redis_cluster_reshard (whole ansible-playbook run, method {"/".join(sorted(filter(None, methods))) or "auto"})',
              'module keys': 'redis_cluster_reshard method=keys (whole ansible-playbook run)',
              'cli': f'{cli} --cluster rebalance (default pipeline 10)',
              'cli p1000': f'{cli} --cluster rebalance --cluster-pipeline 1000',
              'cli atomic': f'{cli} --cluster rebalance --cluster-use-atomic-slot-migration'}
    for tool in tools_for(build):
        wall = median(tool, 'wall')
        if wall is None:
            print(f'| {labels[tool]} | FAILED | | | | |')
            continue
        duration = median(tool, 'duration')
        moved = median(tool, 'new_master_keys')
        slots = median(tool, 'new_master_slots')
        keys_cell, slots_cell = f'{moved:.0f}', f'{slots:.0f}'
        if tool.startswith('module'):      # the module's own figures next to the new master's
            keys_cell += f' (module: {median(tool, "moved_keys"):.0f})'
            slots_cell += f' (module: {median(tool, "moved_slots"):.0f})'
        cells = [labels[tool], f'{wall:.2f}', f'{duration:.2f}' if duration is not None else '-', keys_cell, slots_cell,
                 ratio(wall, module_wall) if tool != 'module' and module_wall else '-']
        print('| ' + ' | '.join(cells) + ' |')
    sys.stdout.flush()


def uptime() -> str:
    return subprocess.run(['uptime'], capture_output=True, text=True, check=False).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--keys', type=int, default=1000000, help='keys loaded in each cluster (default 1000000)')
    parser.add_argument('--value-size', type=int, default=100, help='bytes per value (default 100)')
    parser.add_argument('--rounds', type=int, default=1, help='rounds (default 1)')
    parser.add_argument('--build', default='redis-7.0',
                        help='server builds from `tools/redis-servers list`, comma-separated (default redis-7.0)')
    args = parser.parse_args()

    available = available_builds()
    names = [name.strip() for name in args.build.split(',') if name.strip()]
    missing = [name for name in names if name not in available]
    if missing:
        parser.error(f'{", ".join(missing)} not installed; available: {", ".join(sorted(available))}')
    ports = PortAllocator()
    print(f'{args.keys} keys x {args.value_size} bytes, cluster-node-timeout {NODE_TIMEOUT} ms; builds: {", ".join(names)}')
    print(f'uptime before: {uptime()}')
    started = time.monotonic()
    dataset = build_dataset(args.keys, args.value_size)
    print(f'data set encoded in {time.monotonic() - started:.1f} s')
    sys.stdout.flush()

    results: List[Tuple[ServerBuild, List[Dict[str, Dict]]]] = []
    failures: List[str] = []
    for name in names:
        build = available[name]
        tools = tools_for(build)
        print(f'{build.name}: {build.server}, {build.cli}')
        rounds: List[Dict[str, Dict]] = []
        for index in range(args.rounds):
            order = list(tools[index % len(tools):] + tools[:index % len(tools)])
            print(f'{build.name} round {index + 1}: order {", ".join(order)}')
            sys.stdout.flush()
            figures, errors = one_round(build, ports, dataset, args.keys, order)
            rounds.append(figures)
            failures += [f'{build.name} round {index + 1} {tool}: {error}' for tool, error in errors.items()]
        results.append((build, rounds))
    print(f'uptime after: {uptime()}')
    for build, rounds in results:
        print_table(build, args.keys, args.value_size, rounds)
    if failures:
        print('\nFailures:')
        for failure in failures:
            print(failure)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
