# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connections to single Redis/Valkey nodes, shared by every module.

The engine talks to each node over one raw redis-py connection so that it can pipeline many
commands (CLUSTER FORGET on every node, MIGRATE batches) without redis-py's per-command
response callbacks getting in the way.
"""

from __future__ import annotations

import re
import socket
import ssl
import traceback
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ansible.module_utils.basic import env_fallback

REDIS_IMPORT_ERROR: Optional[str] = None
try:
    from redis.connection import Connection, SSLConnection
    from redis.exceptions import AuthenticationError, ConnectionError as RedisConnectionError, RedisError, ResponseError, TimeoutError as RedisTimeoutError
    HAS_REDIS = True
except ImportError:
    HAS_REDIS = False
    REDIS_IMPORT_ERROR = traceback.format_exc()


def common_argument_spec() -> Dict[str, Any]:
    """Connection options every module accepts (documented in the hashslot.redis.connection fragment)."""
    return dict(
        login_user=dict(type='str', default=None),
        login_password=dict(type='str', default=None, no_log=True, fallback=(env_fallback, ['REDISCLI_AUTH'])),
        tls=dict(type='bool', default=False),
        ca_certs=dict(type='path', default=None),
        client_cert=dict(type='path', default=None),
        client_key=dict(type='path', default=None, no_log=False),
        validate_certs=dict(type='bool', default=True),
        connect_timeout=dict(type='float', default=5.0),
    )


def node_argument_spec(required: bool = True, with_zone: bool = False) -> Dict[str, Any]:
    """An option naming one node as a dict of host and port."""
    options = dict(
        host=dict(type='str', required=True),
        port=dict(type='int', default=6379),
    )
    if with_zone:
        options['zone'] = dict(type='str', default=None)
    return dict(type='dict', required=required, options=options)


@dataclass(frozen=True)
class ConnectionOptions:
    """How to reach and authenticate to every node of a cluster."""
    login_user: Optional[str] = None
    login_password: Optional[str] = None
    tls: bool = False
    ca_certs: Optional[str] = None
    client_cert: Optional[str] = None
    client_key: Optional[str] = None
    validate_certs: bool = True
    connect_timeout: float = 5.0
    command_timeout: float = 30.0

    @classmethod
    def from_params(cls, params: Dict[str, Any]) -> 'ConnectionOptions':
        return cls(**{name: params.get(name) for name in common_argument_spec() if params.get(name) is not None})

    def __repr__(self) -> str:
        # Never let a password reach a traceback or a debug print.
        return f'ConnectionOptions(login_user={self.login_user!r}, tls={self.tls!r}, password={"set" if self.login_password else "unset"})'


class NodeError(Exception):
    """A node could not be reached or answered with an error; names the node."""

    def __init__(self, address: str, reason: str):
        super().__init__(f'{address}: {reason}')
        self.address = address
        self.reason = reason


def format_address(host: str, port: int) -> str:
    return f'[{host}]:{port}' if ':' in host else f'{host}:{port}'


def split_address(address: str) -> Tuple[str, int]:
    host, sep, port = address.rpartition(':')
    if not sep or not port.isdigit():
        raise ValueError(f'{address!r} is not host:port')
    return host.strip('[]'), int(port)


def resolve_ip(host: str) -> str:
    """The IP address to hand to CLUSTER MEET, which takes no host names."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise NodeError(host, f'cannot resolve host name: {exc}') from exc
    # Prefer IPv4 the way redis-cli does when a name has both.
    infos.sort(key=lambda info: 0 if info[0] == socket.AF_INET else 1)
    return infos[0][4][0]


_VERSION_RE = re.compile(r'(\d+)(?:\.(\d+))?(?:\.(\d+))?')


def parse_version(text: str) -> Tuple[int, int, int]:
    """'7.2.4-rc1' -> (7, 2, 4); anything unparsable -> (0, 0, 0)."""
    match = _VERSION_RE.search(text or '')
    if not match:
        return (0, 0, 0)
    return tuple(int(part or 0) for part in match.groups())  # type: ignore[return-value]


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


def parse_info(text: str) -> Dict[str, str]:
    """INFO / CLUSTER INFO text -> flat dict of strings."""
    fields: Dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith('#') or ':' not in line:
            continue
        key, dummy, value = line.partition(':')
        fields[key.strip()] = value.strip()
    return fields


class NodeClient:
    """One connection to one node; commands return decoded replies or raise NodeError."""

    def __init__(self, host: str, port: int, options: ConnectionOptions):
        if not HAS_REDIS:
            raise RuntimeError('redis-py is required')
        self.host = host
        self.port = port
        self.address = format_address(host, port)
        self.tls = options.tls
        kwargs: Dict[str, Any] = dict(
            host=host, port=port,
            username=options.login_user, password=options.login_password,
            socket_connect_timeout=options.connect_timeout,
            socket_timeout=options.command_timeout,
            decode_responses=False,
            client_name='hashslot.redis',
        )
        if options.tls:
            kwargs.update(
                ssl_ca_certs=options.ca_certs,
                ssl_certfile=options.client_cert,
                ssl_keyfile=options.client_key,
                ssl_cert_reqs='required' if options.validate_certs else 'none',
                ssl_check_hostname=options.validate_certs,
            )
            self._connection = SSLConnection(**kwargs)
        else:
            self._connection = Connection(**kwargs)

    def connect(self) -> None:
        try:
            self._connection.connect()
        except AuthenticationError as exc:
            raise NodeError(self.address, f'authentication failed ({exc}); check login_user and login_password') from exc
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise NodeError(self.address, self._connect_failure(exc)) from exc
        except ResponseError as exc:
            # redis-py before 5 passes a refused AUTH (WRONGPASS) on as a plain error reply.
            if str(exc).upper().startswith(('WRONGPASS', 'NOAUTH', 'INVALID PASSWORD', 'INVALID USERNAME')):
                raise NodeError(self.address, f'authentication failed ({exc}); check login_user and login_password') from exc
            raise NodeError(self.address, f'refused the connection: {exc}') from exc

    def _connect_failure(self, exc: BaseException) -> str:
        # redis-py raises a ConnectionError for everything; the TLS or socket error it replaced tells what to fix.
        if _caused_by(exc, ssl.SSLError):
            return (f'TLS handshake failed: {exc}; check ca_certs (the CA that signed the node certificates), and '
                    'client_cert and client_key (a node with tls-auth-clients requires a client certificate its CA signed)')
        if not self.tls and (_caused_by(exc, ConnectionResetError) or 'closed by server' in str(exc)):
            return f'unreachable: {exc}; the node closed a plaintext connection: if it accepts only TLS, set tls=true'
        return f'unreachable: {exc}'

    def close(self) -> None:
        self._connection.disconnect()

    def set_timeout(self, seconds: float) -> None:
        """Adjust the read timeout (MIGRATE of a large key may take long)."""
        self._connection.socket_timeout = seconds
        sock = getattr(self._connection, '_sock', None)
        if sock is not None:
            sock.settimeout(seconds)

    def call(self, *args: Any) -> Any:
        try:
            self._connection.send_command(*args)
            return _decode(self._connection.read_response())
        except ResponseError as exc:
            raise NodeError(self.address, f'{_command_name(args)} failed: {exc}') from exc
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise NodeError(self.address, f'{_command_name(args)} failed, node unreachable: {exc}') from exc
        except RedisError as exc:
            raise NodeError(self.address, f'{_command_name(args)} failed: {exc}') from exc

    def pipeline(self, commands: Sequence[Sequence[Any]], decode: bool = True) -> List[Any]:
        """Send every command, then read every reply: one round trip for the lot.

        A command that the server rejects yields its ResponseError in the result list instead of
        raising, so callers can tell which of many commands failed; a broken connection raises.
        decode=False keeps replies as bytes (key names are binary-safe and must go back unchanged).
        """
        if not commands:
            return []
        replies: List[Any] = []
        try:
            self._connection.send_packed_command(self._connection.pack_commands([tuple(command) for command in commands]))
            for dummy in commands:
                try:
                    reply = self._connection.read_response()
                    replies.append(_decode(reply) if decode else reply)
                except ResponseError as exc:
                    replies.append(exc)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise NodeError(self.address, f'pipeline of {len(commands)} commands failed, node unreachable: {exc}') from exc
        return replies

    def info(self, section: str) -> Dict[str, str]:
        return parse_info(self.call('INFO', section))

    def cluster_info(self) -> Dict[str, str]:
        return parse_info(self.call('CLUSTER', 'INFO'))


def _caused_by(exc: BaseException, kind: type) -> bool:
    """Whether exc or an exception it was raised from or while handling is a `kind`."""
    seen: Optional[BaseException] = exc
    for dummy in range(10):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _command_name(args: Sequence[Any]) -> str:
    words = [str(arg) for arg in args[:2]]
    if words and words[0].upper() in ('CLUSTER', 'CONFIG', 'CLIENT') and len(words) > 1:
        return f'{words[0].upper()} {words[1].upper()}'
    return words[0].upper() if words else 'command'


class NodePool:
    """Connections opened during one module run, one per node address, closed at the end."""

    def __init__(self, options: ConnectionOptions):
        self.options = options
        self._clients: Dict[str, NodeClient] = {}

    def get(self, host: str, port: int) -> NodeClient:
        address = format_address(host, port)
        client = self._clients.get(address)
        if client is None:
            client = NodeClient(host, port, self.options)
            client.connect()
            self._clients[address] = client
        return client

    def get_address(self, address: str) -> NodeClient:
        host, port = split_address(address)
        return self.get(host, port)

    def drop(self, address: str) -> None:
        client = self._clients.pop(address, None)
        if client is not None:
            client.close()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def __enter__(self) -> 'NodePool':
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
