"""Real redis-server / valkey-server processes on loopback for the integration tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVERS_TOOL = os.path.join(REPO, 'tools', 'redis-servers')


@dataclass(frozen=True)
class ServerBuild:
    """One server flavour and version: where its binaries are."""
    name: str
    server: str
    cli: str

    @property
    def flavor(self) -> str:
        """redis or valkey, from the name (redis-7.0, valkey-9.1.2)."""
        return self.name.split('-', 1)[0]

    @property
    def version(self) -> str:
        return self.name.split('-', 1)[1]


def available_builds() -> Dict[str, ServerBuild]:
    output = subprocess.run([SERVERS_TOOL, 'list'], check=True, capture_output=True, text=True).stdout
    builds = {}
    for line in output.splitlines():
        name, server, cli = line.split()
        builds[name] = ServerBuild(name, server, cli)
    return builds


def ensure_build(name: str) -> ServerBuild:
    """The build, made now if it is not yet: `tools/redis-servers ensure NAME`, which waits on the cache lock while
    another run (make test's pytest lane builds in the background while the tests that need no build run) makes it."""
    builds = available_builds()
    if name not in builds:
        completed = subprocess.run([SERVERS_TOOL, 'ensure', name], capture_output=True, text=True, timeout=3600, check=False)
        builds = available_builds()
        if completed.returncode != 0 or name not in builds:
            raise RuntimeError(f'`tools/redis-servers ensure {name}` failed ({completed.returncode}): {completed.stderr[-2000:]}')
    return builds[name]


def source_tarball(name: str) -> Tuple[str, str]:
    """(path, 'sha256:<digest>') of the upstream source tarball tools/redis-servers keeps (verified when fetched)."""
    completed = subprocess.run([SERVERS_TOOL, 'tarball', name], capture_output=True, text=True, timeout=900, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f'no cached source tarball for {name}; run `tools/redis-servers ensure {name}`: {completed.stderr}')
    path = completed.stdout.strip()
    with open(path + '.sha256') as handle:
        return path, 'sha256:' + handle.read().split()[0]


def wanted_build_names() -> List[str]:
    """HASHSLOT_SERVERS restricts the matrix (comma-separated); by default every supported build."""
    names = os.environ.get('HASHSLOT_SERVERS', 'redis-7.0,redis-8.0.2,valkey-8.1.1,valkey-9.1.2')
    return [name.strip() for name in names.split(',') if name.strip()]


def _port_free(port: int) -> bool:
    for candidate in (port, port + 10000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(('127.0.0.1', candidate))
            except OSError:
                return False
    return True


class PortAllocator:
    """Hands out client ports whose bus port (+10000) is free too.

    Under pytest-xdist (`make check` runs three workers) worker N of M takes only the ports start + N, start + N + M,
    ...: the workers' ports never meet, so none can take a port another probed free a moment before. Separate pytest
    processes (make test's pytest lane runs two) say which share is theirs the same way: HASHSLOT_PORT_SLICE=N/M."""

    def __init__(self, start: int = 21000, end: int = 29000):
        worker = os.environ.get('PYTEST_XDIST_WORKER', '')
        share, dummy, shares = os.environ.get('HASHSLOT_PORT_SLICE', '').partition('/')
        sliced = share.isdigit() and shares.isdigit() and int(share) < int(shares)
        if sliced or worker.startswith('gw'):
            # The process's share (0 of 1 unless sliced), divided again among its xdist workers when it has some.
            share, shares = (int(share), int(shares)) if sliced else (0, 1)
            index, count = (int(worker[2:]), int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))) if worker.startswith('gw') else (0, 1)
            self.step = shares * count
            self.next_port = start + share + shares * index
        else:
            self.step = 1
            self.next_port = start + (os.getpid() % 40) * 100
        self.end = end

    def take(self) -> int:
        while self.next_port < self.end:
            port = self.next_port
            self.next_port += self.step
            if _port_free(port):
                return port
        raise RuntimeError('no free loopback ports left for test servers')


@dataclass
class RedisServer:
    build: ServerBuild
    port: int
    directory: str
    process: Optional[subprocess.Popen] = None
    extra: Dict[str, str] = field(default_factory=dict)
    # ca, cert and key (PEM paths): the server then speaks only TLS (port 0, tls-port = port, cluster bus and
    # replication over TLS, client certificates required), and the test's clients present that cert and key.
    tls: Optional[Dict[str, str]] = None
    # (user, password) the test's own clients authenticate with, for servers whose default user is off.
    auth: Optional[Tuple[str, str]] = None

    @property
    def address(self) -> str:
        return f'127.0.0.1:{self.port}'

    @property
    def node(self) -> Dict:
        return {'host': '127.0.0.1', 'port': self.port}

    def connection_kwargs(self) -> Dict:
        """How the test reaches this server: TLS with the server's own certificate as client certificate, auth if set."""
        kwargs: Dict = {}
        if self.tls:
            kwargs.update(ssl=True, ssl_ca_certs=self.tls['ca'], ssl_certfile=self.tls['cert'], ssl_keyfile=self.tls['key'])
        if self.auth:
            kwargs.update(username=self.auth[0], password=self.auth[1])
        return kwargs

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis(host='127.0.0.1', port=self.port, **{'decode_responses': True, 'socket_timeout': 10, **self.connection_kwargs(), **kwargs})

    def _tls_args(self) -> List[str]:
        if not self.tls:
            return ['--port', str(self.port)]
        return [
            '--port', '0', '--tls-port', str(self.port), '--tls-cluster', 'yes', '--tls-replication', 'yes',
            '--tls-auth-clients', 'yes', '--tls-cert-file', self.tls['cert'], '--tls-key-file', self.tls['key'],
            '--tls-ca-cert-file', self.tls['ca'],
        ]

    def start(self, cluster: bool = True, wait_ready: bool = True) -> None:
        """Start the server; wait until it answers PING, or with wait_ready=False only until its port accepts."""
        args = [
            self.build.server, *self._tls_args(), '--bind', '127.0.0.1', '--dir', self.directory,
            '--daemonize', 'no', '--save', '', '--appendonly', 'no', '--logfile', os.path.join(self.directory, 'server.log'),
            '--cluster-enabled', 'yes' if cluster else 'no', '--cluster-config-file', 'nodes.conf',
            '--cluster-node-timeout', '3000', '--repl-diskless-sync-delay', '0',
        ]
        for name, value in self.extra.items():
            args += [f'--{name}', value]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while not wait_ready:
            if port_serving(self.port):
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f'{self.build.name} on {self.port} did not start: {self.log_tail()}')
            time.sleep(0.02)
        while True:
            try:
                # No retries: redis-py retries an AuthenticationError (a ConnectionError) with backoff for seconds.
                if self.client(retry=Retry(NoBackoff(), 0)).ping():
                    return
            except redis.AuthenticationError:
                return  # up, and refusing clients without credentials (an ACL file with the default user off)
            except redis.ConnectionError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f'{self.build.name} on {self.port} did not start: {self.log_tail()}')
            time.sleep(0.02)

    def log_tail(self) -> str:
        try:
            with open(os.path.join(self.directory, 'server.log')) as handle:
                return ''.join(handle.readlines()[-20:])
        except OSError:
            return '(no log)'

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


class ServerFactory:
    """Starts servers of one build; stops and removes every one at teardown."""

    def __init__(self, build: ServerBuild, ports: PortAllocator):
        self.build = build
        self.ports = ports
        self.servers: List[RedisServer] = []
        self.root = tempfile.mkdtemp(prefix=f'hashslot-{build.name}-')

    def start(self, count: int, cluster: bool = True, tls: Optional[Dict[str, str]] = None, **extra: str) -> List[RedisServer]:
        started = []
        for dummy in range(count):
            port = self.ports.take()
            directory = os.path.join(self.root, str(port))
            os.makedirs(directory)
            server = RedisServer(self.build, port, directory, extra=dict(extra), tls=tls)
            server.start(cluster=cluster)
            self.servers.append(server)
            started.append(server)
        return started

    def close(self) -> None:
        for server in self.servers:
            if server.process and server.process.poll() is None:
                try:
                    server.resume()
                except (ProcessLookupError, TypeError):
                    pass
            server.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def cluster_nodes_snapshot(servers: List[RedisServer]) -> Dict[str, str]:
    """CLUSTER NODES of every server, with the volatile ping/pong columns blanked."""
    snapshot = {}
    for server in servers:
        lines = []
        for line in raw_command(server, 'CLUSTER', 'NODES').splitlines():
            fields = line.split()
            if len(fields) >= 8:
                fields[4] = fields[5] = '-'
                lines.append(' '.join(fields))
        snapshot[server.address] = '\n'.join(sorted(lines))
    return snapshot


def raw_command(server: RedisServer, *args):
    """A command's reply as the server sends it, without redis-py's response callbacks."""
    kwargs = server.connection_kwargs()
    connection_class = redis.SSLConnection if kwargs.pop('ssl', False) else redis.Connection
    connection = connection_class(host='127.0.0.1', port=server.port, decode_responses=True, **kwargs)
    try:
        connection.send_command(*args)
        return connection.read_response()
    finally:
        connection.disconnect()


def cluster_info(server: RedisServer) -> Dict[str, str]:
    return dict(line.split(':', 1) for line in raw_command(server, 'CLUSTER', 'INFO').splitlines() if ':' in line)


def port_serving(port: int, host: str = '127.0.0.1') -> bool:
    """Whether something accepts connections on the port (instances deployed by the roles, not by this factory)."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def port_command(port: int, *args, host: str = '127.0.0.1'):
    """A command's raw reply from whatever server listens on the port."""
    connection = redis.Connection(host=host, port=port, decode_responses=True, socket_timeout=10)
    try:
        connection.send_command(*args)
        return connection.read_response()
    finally:
        connection.disconnect()
