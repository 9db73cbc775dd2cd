# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connections to single Redis/Valkey nodes, shared by every module.

The engine talks to each node over one raw redis-py connection so that it can pipeline many
commands (CLUSTER FORGET on every node, MIGRATE batches) without redis-py's per-command
response callbacks getting in the way.
"""

from __future__ import annotations

import datetime
import re
import socket
import ssl
import time
import traceback
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ansible.module_utils.basic import env_fallback

from ansible_collections.hashslot.redis.plugins.module_utils.certificate import CertificateFormatError, certificate_not_after

REDIS_IMPORT_ERROR: Optional[str] = None
try:
    from redis.connection import Connection, SSLConnection
    from redis.exceptions import AuthenticationError, ConnectionError as RedisConnectionError, RedisError, ResponseError, TimeoutError as RedisTimeoutError
    from redis.exceptions import BusyLoadingError
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
        transient_timeout=dict(type='float', default=60.0),
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
    transient_timeout: float = 60.0

    @classmethod
    def from_params(cls, params: Dict[str, Any]) -> 'ConnectionOptions':
        return cls(**{name: params.get(name) for name in common_argument_spec() if params.get(name) is not None})

    def __repr__(self) -> str:
        # Never let a password reach a traceback or a debug print.
        return f'ConnectionOptions(login_user={self.login_user!r}, tls={self.tls!r}, password={"set" if self.login_password else "unset"})'


class NodeError(Exception):
    """A node could not be reached or answered with an error; names the node."""

    def __init__(self, address: str, reason: str, state: Optional[str] = None, timed_out: bool = False):
        super().__init__(f'{address}: {reason}')
        self.address = address
        self.reason = reason
        # The transient state (a key of TRANSIENT_ERRORS) the node still answered with when transient_timeout ran out:
        # the node is alive, only not ready.
        self.state = state
        # The node did not answer within the read timeout (paused, partitioned, or a command slower than the timeout),
        # as opposed to a connection refused or reset: sending the same again would wait as long again.
        self.timed_out = timed_out


class LoginRefused(NodeError):
    """The node refused login_user with login_password (WRONGPASS, NOAUTH): a caller that knows another password
    (a rotation's previous one) may try it."""

    def __init__(self, address: str, detail: str):
        super().__init__(address, f'authentication failed ({detail}); check login_user and login_password')


def _timed_out(exc: BaseException) -> bool:
    return isinstance(exc, RedisTimeoutError) or _caused_by(exc, socket.timeout)


# Error replies that say "not now" rather than "no": the command was not executed and may be sent again. LOADING: the
# node loads its data set (after a restart, or a replica after a full resynchronisation); BUSY: a script or function
# runs past busy-reply-threshold; MASTERDOWN: a replica whose master link is down and which serves no stale data;
# TRYAGAIN: a multi-key command met keys a migration has split. BUSYKEY (MIGRATE's "target key exists") is no such
# answer: only the first word counts.
TRANSIENT_ERRORS = {
    'LOADING': 'loading its data set',
    'BUSY': 'busy running a script',
    'MASTERDOWN': 'a replica whose master link is down',
    'TRYAGAIN': 'in the middle of a slot migration',
}
_RETRY_FIRST_SLEEP = 0.02
_RETRY_MAX_SLEEP = 0.5


def transient_state(error: Any) -> Optional[str]:
    """The transient state an error reply reports (a key of TRANSIENT_ERRORS), or None for anything else.

    redis-py turns some of these replies into exceptions of their own and strips their first word (LOADING becomes a
    BusyLoadingError, which is a ConnectionError and closes the connection); the others arrive as plain replies.
    """
    if not HAS_REDIS or not isinstance(error, RedisError):
        return None
    if isinstance(error, BusyLoadingError):
        return 'LOADING'
    for state, name in (('TRYAGAIN', 'TryAgainError'), ('MASTERDOWN', 'MasterDownError')):
        if type(error).__name__ == name:
            return state
    if not isinstance(error, ResponseError):
        return None
    words = str(error).split(None, 1)
    return words[0] if words and words[0] in TRANSIENT_ERRORS else None


class TransientWait:
    """Paces retries of commands refused for a transient state, and ends them after `timeout` seconds."""

    def __init__(self, address: str, timeout: float):
        self.address = address
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.delay = _RETRY_FIRST_SLEEP

    def pause_or_raise(self, what: str, error: BaseException) -> None:
        if time.monotonic() + self.delay > self.deadline:
            state = transient_state(error) or ''
            raise NodeError(self.address, f'{what} still refused after {self.timeout:g}s, the node is {TRANSIENT_ERRORS.get(state, state)} ({state}): '
                                          f'{error}; wait for it, or raise transient_timeout', state=state or None)
        time.sleep(self.delay)
        self.delay = min(self.delay * 2, _RETRY_MAX_SLEEP)


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


def server_identity(server_info: Dict[str, str]) -> Tuple[str, str]:
    """(valkey or redis, the version text) from INFO server: Valkey also reports redis_version (7.2.4, for
    compatibility), so its own valkey_version comes first."""
    name = 'valkey' if 'valkey_version' in server_info or server_info.get('server_name') == 'valkey' else 'redis'
    return name, (server_info.get('valkey_version') or server_info.get('redis_version', '')).strip()


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


def config_value(reply: Any, name: str) -> Optional[str]:
    """The value of `name` in a CONFIG GET reply (a flat list with RESP2, a map with RESP3); None when not there."""
    pairs = dict(zip(reply[0::2], reply[1::2])) if isinstance(reply, list) else dict(reply or {})
    return pairs.get(name)


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
        self.transient_timeout = options.transient_timeout
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
        connection_class = SSLConnection if options.tls else Connection
        try:
            # RESP2: the replies the engine reads (CONFIG GET and ACL GETUSER as flat lists, among others). redis-py 8
            # asks the server for RESP3 unless told; redis-py before 5.0 speaks only RESP2 and has no such argument.
            self._connection = connection_class(protocol=2, **kwargs)
        except TypeError:
            self._connection = connection_class(**kwargs)

    def connect(self) -> None:
        waiting: Optional[TransientWait] = None
        while True:
            try:
                self._connection.connect()
                return
            except AuthenticationError as exc:
                raise LoginRefused(self.address, str(exc)) from exc
            except RedisError as exc:
                if transient_state(exc) is None:
                    raise self._connect_error(exc) from exc
                waiting = waiting or TransientWait(self.address, self.transient_timeout)
                waiting.pause_or_raise('the connection', exc)
            except OSError as exc:
                raise NodeError(self.address, self._connect_failure(exc)) from exc

    def _connect_error(self, exc: BaseException) -> NodeError:
        if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
            return NodeError(self.address, self._connect_failure(exc))
        # redis-py before 5 passes a refused AUTH (WRONGPASS) on as a plain error reply.
        if str(exc).upper().startswith(('WRONGPASS', 'NOAUTH', 'INVALID PASSWORD', 'INVALID USERNAME')):
            return LoginRefused(self.address, str(exc))
        return NodeError(self.address, f'refused the connection: {exc}')

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

    def served_certificate_expiry(self) -> Optional[datetime.datetime]:
        """When the certificate the node presented on this connection expires; None over plaintext, before the first
        command, or when it cannot be read."""
        sock = getattr(self._connection, '_sock', None)
        if not self.tls or sock is None or not hasattr(sock, 'getpeercert'):
            return None
        try:
            der = sock.getpeercert(binary_form=True)
            return certificate_not_after(der) if der else None
        except (CertificateFormatError, ValueError, OSError):
            return None

    def call(self, *args: Any) -> Any:
        """One command's decoded reply; a transient refusal (LOADING, BUSY, ...) is retried until transient_timeout."""
        waiting: Optional[TransientWait] = None
        while True:
            try:
                self._connection.send_command(*args)
                return _decode(self._connection.read_response())
            except RedisError as exc:
                if transient_state(exc) is None:
                    raise self._command_error(args, exc) from exc
                waiting = waiting or TransientWait(self.address, self.transient_timeout)
                waiting.pause_or_raise(_command_name(args), exc)
            except OSError as exc:
                raise self._command_error(args, exc) from exc

    def _command_error(self, args: Sequence[Any], exc: BaseException) -> NodeError:
        if isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError)):
            return NodeError(self.address, f'{_command_name(args)} failed, node unreachable: {exc}', timed_out=_timed_out(exc))
        return NodeError(self.address, f'{_command_name(args)} failed: {exc}')

    def pipeline(self, commands: Sequence[Sequence[Any]], decode: bool = True) -> List[Any]:
        """Send every command, then read every reply: one round trip for the lot.

        A command that the server rejects yields its ResponseError in the result list instead of
        raising, so callers can tell which of many commands failed; a broken connection raises.
        Commands refused for a transient state (LOADING, BUSY, ...) were not executed: they alone are
        sent again, in their order, until they are answered or transient_timeout passes.
        decode=False keeps replies as bytes (key names are binary-safe and must go back unchanged).
        """
        return self.retry_transient(commands, self._send_pipeline(commands, decode), decode)

    def retry_transient(self, commands: Sequence[Sequence[Any]], replies: List[Any], decode: bool = True) -> List[Any]:
        """`replies` to `commands` with those refused for a transient state sent again, as pipeline() does."""
        replies = list(replies)
        waiting: Optional[TransientWait] = None
        while True:
            pending = [index for index, reply in enumerate(replies) if transient_state(reply) is not None]
            if not pending:
                return replies
            waiting = waiting or TransientWait(self.address, self.transient_timeout)
            waiting.pause_or_raise(_command_name(commands[pending[0]]), replies[pending[0]])
            for index, reply in zip(pending, self._send_pipeline([commands[index] for index in pending], decode)):
                replies[index] = reply

    def _send_pipeline(self, commands: Sequence[Sequence[Any]], decode: bool) -> List[Any]:
        if not commands:
            return []
        self.send(commands)
        return self.receive(len(commands), decode)

    def send(self, commands: Sequence[Sequence[Any]]) -> None:
        """Send commands without reading their replies (receive reads them); a broken connection raises NodeError."""
        try:
            self._connection.send_packed_command(self._connection.pack_commands([tuple(command) for command in commands]))
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise NodeError(self.address, f'pipeline of {len(commands)} commands failed, node unreachable: {exc}', timed_out=_timed_out(exc)) from exc

    def receive(self, count: int, decode: bool = True) -> List[Any]:
        """The replies of the `count` commands sent last, as pipeline returns them (no transient retry)."""
        commands = range(count)
        replies: List[Any] = []
        try:
            for dummy in commands:
                try:
                    reply = self._connection.read_response()
                    replies.append(_decode(reply) if decode else reply)
                except ResponseError as exc:
                    replies.append(exc)
        except BusyLoadingError as exc:
            # redis-py closed the connection on this reply: the later replies are lost, so those commands count as
            # refused too and are sent again with it (a loading node runs only commands that are safe to repeat).
            replies.extend(exc for dummy in commands[len(replies):])
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise NodeError(self.address, f'pipeline of {count} commands failed, node unreachable: {exc}', timed_out=_timed_out(exc)) from exc
        return replies

    def info(self, section: str) -> Dict[str, str]:
        return parse_info(self.call('INFO', section))

    def cluster_info(self) -> Dict[str, str]:
        return parse_info(self.call('CLUSTER', 'INFO'))


def fanned_pipeline(clients: Sequence[NodeClient], commands: Sequence[Sequence[Any]], decode: bool = True) -> List[Any]:
    """pipeline() with the commands shared out over several connections to one node, in order, all sent before any
    reply is read; the replies come back in the commands' order.

    For commands that a node holds back one at a time per connection: Valkey 8 and later answer CLUSTER SETSLOT on a
    primary only once its replicas acknowledged it, so one connection's pipeline waits for a replica round trip per
    command, while commands waiting on separate connections are released by the same acknowledgement. Only for
    commands whose order relative to each other does not matter. A transient refusal is sent again on the first
    connection (pipeline's waiting)."""
    if len(clients) <= 1 or len(commands) <= 1:
        return clients[0].pipeline(commands, decode)
    share = -(-len(commands) // len(clients))
    parts = [(client, commands[start:start + share]) for client, start in zip(clients, range(0, len(commands), share))]
    for client, part in parts:
        client.send(part)
    replies: List[Any] = []
    for client, part in parts:
        replies += client.receive(len(part), decode)
    pending = [index for index, reply in enumerate(replies) if transient_state(reply) is not None]
    if pending:
        for index, reply in zip(pending, clients[0].pipeline([commands[index] for index in pending], decode)):
            replies[index] = reply
    return replies


def pipelines_at_once(batches: Sequence[Tuple[NodeClient, Sequence[Sequence[Any]]]], decode: bool = True) -> List[Any]:
    """Each (client, commands) batch run as client.pipeline() runs it, but every batch is sent before any reply is read:
    one round trip for all the nodes instead of one a node, which at tens of nodes is most of the time spent waiting.

    The result holds, in the batches' order, each batch's replies, or the NodeError its client raised: the other
    batches' replies are still read, so that no connection is left with replies unread. A transient refusal (LOADING,
    BUSY, ...) is sent again by that client alone, as pipeline() does."""
    outcomes: List[Any] = [[] for dummy in batches]
    sent = []
    for index, (client, commands) in enumerate(batches):
        if not commands:
            continue
        try:
            client.send(commands)
            sent.append(index)
        except NodeError as exc:
            outcomes[index] = exc
    for index in sent:
        client, commands = batches[index]
        try:
            outcomes[index] = client.receive(len(commands), decode)
        except NodeError as exc:
            outcomes[index] = exc
    for index in sent:
        client, commands = batches[index]
        if isinstance(outcomes[index], list):
            try:
                outcomes[index] = client.retry_transient(commands, outcomes[index], decode)
            except NodeError as exc:
                outcomes[index] = exc
    return outcomes


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
