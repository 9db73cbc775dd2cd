"""How a node's refusals become messages, whatever redis-py version raised them."""

from __future__ import annotations

import pytest
from redis.exceptions import AuthenticationError, BusyLoadingError, MasterDownError, ResponseError, TryAgainError

from ansible_collections.hashslot.redis.plugins.module_utils.cluster import discover
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import ConnectionOptions, NodeClient, NodeError, transient_state


class Refusing:
    def __init__(self, error):
        self.error = error

    def connect(self):
        raise self.error


@pytest.mark.parametrize('error', [
    AuthenticationError('invalid username-password pair or user is disabled.'),  # redis-py 5 and later
    ResponseError('WRONGPASS invalid username-password pair or user is disabled.'),  # redis-py 4.3 (Debian 12)
    ResponseError('NOAUTH Authentication required.'),
])
def test_a_refused_login_says_authentication_failed_and_names_the_node(error):
    client = NodeClient('10.0.0.5', 6379, ConnectionOptions(login_user='hashslot-admin', login_password='secret-pw'))
    client._connection = Refusing(error)
    with pytest.raises(NodeError) as raised:
        client.connect()
    assert str(raised.value).startswith('10.0.0.5:6379') and 'authentication failed' in str(raised.value)
    assert 'secret-pw' not in str(raised.value)


def test_another_refusal_is_reported_as_it_is():
    client = NodeClient('10.0.0.5', 6379, ConnectionOptions())
    client._connection = Refusing(ResponseError('ERR max number of clients reached'))
    with pytest.raises(NodeError, match='refused the connection: ERR max number of clients reached'):
        client.connect()


@pytest.mark.parametrize('error, state', [
    (BusyLoadingError('Redis is loading the dataset in memory'), 'LOADING'),  # redis-py strips the first word
    (ResponseError('BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.'), 'BUSY'),
    (TryAgainError('Multiple keys request during rehashing of slot'), 'TRYAGAIN'),
    (MasterDownError('Link with MASTER is down and replica-serve-stale-data is set to no.'), 'MASTERDOWN'),
    (ResponseError('BUSYKEY Target key name already exists.'), None),
    (ResponseError('ERR Target instance replied with error: LOADING Redis is loading'), None),
    (ResponseError('NOPERM this user has no permissions to run the cluster command'), None),
    ('LOADING', None),
])
def test_transient_states_are_told_from_refusals(error, state):
    assert transient_state(error) == state


class Answering:
    """A connection that answers each command with the next of `replies` (an exception is raised)."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.sent = []

    def connect(self):
        pass

    def send_command(self, *args):
        self.sent.append(args)

    def read_response(self):
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def test_a_loading_node_is_asked_again_until_it_answers():
    client = NodeClient('10.0.0.5', 6379, ConnectionOptions())
    client._connection = Answering([BusyLoadingError('Redis is loading'), BusyLoadingError('Redis is loading'), 42])
    assert client.call('DBSIZE') == 42
    assert client._connection.sent == [('DBSIZE',)] * 3


def test_a_node_still_loading_at_the_bound_fails_naming_it_and_its_state():
    client = NodeClient('10.0.0.5', 6379, ConnectionOptions(transient_timeout=0.1))
    client._connection = Answering([BusyLoadingError('Redis is loading')] * 100)
    with pytest.raises(NodeError) as raised:
        client.call('DBSIZE')
    assert str(raised.value).startswith('10.0.0.5:6379: DBSIZE still refused after 0.1s, the node is loading its data set (LOADING)')


def test_a_real_refusal_is_not_retried():
    client = NodeClient('10.0.0.5', 6379, ConnectionOptions())
    client._connection = Answering([ResponseError('ERR unknown command'), 1])
    with pytest.raises(NodeError, match='unknown command'):
        client.call('NOSUCH')
    assert len(client._connection.sent) == 1


class MemberPool:
    """NodePool stand-in: each address answers with its own NodeClient over a scripted connection."""

    def __init__(self, connections):
        self.connections = connections

    def get(self, host, port):
        client = NodeClient(host, port, ConnectionOptions(transient_timeout=0.1))
        client._connection = self.connections[f'{host}:{port}']
        return client


class Scripted(Answering):
    """Answering, for pipelines too: each packed batch is answered reply by reply."""

    def pack_commands(self, commands):
        self.sent.extend(commands)
        return commands

    def send_packed_command(self, packed):
        pass


SEED_NODES = (
    'a' * 40 + ' 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-16383\n'
    + 'b' * 40 + ' 10.0.0.2:6379@16379 slave,fail ' + 'a' * 40 + ' 0 0 1 connected\n'
)


def test_a_member_flagged_fail_but_loading_stops_discovery_naming_it():
    """A restarted replica that loads a large data set may be flagged fail by the others while it answers LOADING: it is
    alive, so an operation must wait for it (and fail at the bound naming it and its state), not go on without it."""
    seed = Scripted(['redis_version:7.0.15', 'cluster_enabled:1', SEED_NODES, 'cluster_state:ok', 0])
    loading = Scripted(['redis_version:7.0.15', 'cluster_enabled:1', SEED_NODES, 'cluster_state:ok']
                       + [BusyLoadingError('Redis is loading')] * 200)
    pool = MemberPool({'10.0.0.1:6379': seed, '10.0.0.2:6379': loading})
    with pytest.raises(NodeError) as raised:
        discover(pool, '10.0.0.1', 6379)
    assert raised.value.address == '10.0.0.2:6379' and raised.value.state == 'LOADING'
    assert 'loading its data set (LOADING)' in str(raised.value)


def test_a_member_that_does_not_answer_is_reported_not_raised():
    seed = Scripted(['redis_version:7.0.15', 'cluster_enabled:1', SEED_NODES, 'cluster_state:ok', 0])
    pool = MemberPool({'10.0.0.1:6379': seed, '10.0.0.2:6379': Scripted([ConnectionError('Connection refused')])})
    dummy_seed, states, unreachable = discover(pool, '10.0.0.1', 6379)
    assert list(states) == ['10.0.0.1:6379'] and 'unreachable' in unreachable['10.0.0.2:6379']


def test_a_node_that_accepts_but_never_answers_is_told_from_one_that_refuses():
    """A paused or partitioned node times out (NodeError.timed_out: waiting again would wait as long again); a closed
    port refuses at once. A socket that accepts and never writes stands for the first, a port closed after use for the
    second."""
    import socket

    silent = socket.socket()
    silent.bind(('127.0.0.1', 0))
    silent.listen(1)
    closed = socket.socket()
    closed.bind(('127.0.0.1', 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    try:
        client = NodeClient('127.0.0.1', silent.getsockname()[1], ConnectionOptions(connect_timeout=0.3, command_timeout=0.3))
        with pytest.raises(NodeError) as raised:
            client.call('PING')
        assert raised.value.timed_out and 'node unreachable' in str(raised.value)
        with pytest.raises(NodeError) as raised:
            client.pipeline([('PING',), ('PING',)])
        assert raised.value.timed_out
        client.close()
        refused = NodeClient('127.0.0.1', closed_port, ConnectionOptions(connect_timeout=0.3, command_timeout=0.3))
        with pytest.raises(NodeError) as raised:
            refused.call('PING')
        assert not raised.value.timed_out
    finally:
        silent.close()


class Recording:
    """A connection stand-in: records what each pipeline sends, answers each command with its slot, or an error."""

    def __init__(self, refuse=()):
        self.sent = []
        self.queue = []
        self.refuse = set(refuse)

    def pack_commands(self, commands):
        return list(commands)

    def send_packed_command(self, commands):
        self.sent.append(commands)
        self.queue.extend(commands)

    def read_response(self):
        command = self.queue.pop(0)
        if command[2] in self.refuse:
            self.refuse.discard(command[2])
            raise TryAgainError('TRYAGAIN Multiple keys request during rehashing of slot')
        return command[2]


def test_a_fanned_pipeline_shares_commands_over_the_connections_and_keeps_their_order():
    from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import fanned_pipeline
    clients = []
    for index in range(4):
        client = NodeClient('10.0.0.5', 6379, ConnectionOptions(transient_timeout=5.0))
        client._connection = Recording(refuse={6} if index == 2 else ())
        clients.append(client)
    commands = [('CLUSTER', 'SETSLOT', slot, 'NODE', 'n1') for slot in range(10)]
    assert fanned_pipeline(clients, commands) == list(range(10))
    # Each connection got its share, in order; the command refused for a transient state went again on the first one.
    assert [client._connection.sent[0] for client in clients] == [commands[0:3], commands[3:6], commands[6:9], commands[9:]]
    assert clients[0]._connection.sent[1:] == [[commands[6]]]
    assert [len(client._connection.sent) for client in clients[1:]] == [1, 1, 1]


class Unreachable(Recording):
    def send_packed_command(self, commands):
        raise ConnectionError('Connection refused')


def test_pipelines_at_once_send_every_batch_before_reading_and_keep_a_failed_node_apart():
    from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import pipelines_at_once
    clients = []
    for index, connection in enumerate((Recording(), Unreachable(), Recording(refuse={21}))):
        client = NodeClient(f'10.0.0.{index + 1}', 6379, ConnectionOptions(transient_timeout=5.0))
        client._connection = connection
        clients.append(client)
    batches = [(client, [('CLUSTER', 'MEET', index * 10 + offset) for offset in range(2)]) for index, client in enumerate(clients)]
    outcomes = pipelines_at_once(batches + [(clients[0], [])])
    assert outcomes[0] == [0, 1] and outcomes[2] == [20, 21] and outcomes[3] == []
    assert isinstance(outcomes[1], NodeError) and outcomes[1].address == '10.0.0.2:6379'
    # The command refused for a transient state went again, alone, to its own node.
    assert clients[2]._connection.sent == [batches[2][1], [batches[2][1][1]]]


@pytest.mark.parametrize('tls', [False, True], ids=['plaintext', 'tls'])
def test_the_connection_speaks_resp2_whatever_redis_py_prefers(tls):
    """The engine reads RESP2 replies (CONFIG GET and ACL GETUSER as flat lists); redis-py 8 asks for RESP3 unless told,
    redis-py before 5.0 knows only RESP2 (and no protocol attribute)."""
    client = NodeClient('10.0.0.5', 6379, ConnectionOptions(tls=tls, validate_certs=False))
    assert getattr(client._connection, 'protocol', 2) == 2
