"""How a node's refusals become messages, whatever redis-py version raised them."""

from __future__ import annotations

import pytest
from redis.exceptions import AuthenticationError, ResponseError

from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import ConnectionOptions, NodeClient, NodeError


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
    client._connection = Refusing(ResponseError('LOADING Redis is loading the dataset in memory'))
    with pytest.raises(NodeError, match='refused the connection: LOADING'):
        client.connect()
