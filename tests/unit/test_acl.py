"""The ACL users model behind the ACL file the server role writes."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, strategies as st

from ansible_collections.hashslot.redis.plugins.module_utils.acl import (
    ADMIN_RULES, AclError, acl_file_lines, admin_login, normalize_users,
)
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import ConnectionOptions, LoginRefused, NodeError


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_file_has_hashed_passwords_and_the_default_user_off_first():
    lines = acl_file_lines([
        {'name': 'hashslot-admin', 'password': 's3cret', 'rules': list(ADMIN_RULES)},
        {'name': 'app', 'password_sha256': sha('app-pass').upper(), 'rules': '~app:* +@read +@write -@dangerous'},
        {'name': 'retired', 'enabled': False},
    ])
    assert lines == [
        'user default off resetpass resetkeys resetchannels -@all',
        f'user hashslot-admin on resetpass #{sha("s3cret")} ~* &* +@all',
        f'user app on resetpass #{sha("app-pass")} ~app:* +@read +@write -@dangerous',
        'user retired off resetpass',
    ]
    assert not any('s3cret' in line or 'app-pass' in line for line in lines)


def test_an_inventory_that_names_the_default_user_decides_it():
    lines = acl_file_lines([{'name': 'default', 'nopass': True, 'rules': ['~*', '&*', '+@all']}])
    assert lines == ['user default on resetpass nopass ~* &* +@all']


@pytest.mark.parametrize('users, message', [
    ([{'name': 'app'}], 'ACL user app: an enabled user needs a password'),
    ([{'name': 'app', 'password': 'pw-ASDF', 'password_sha256': sha('pw-ASDF')}], 'ACL user app: give password or password_sha256, not both'),
    ([{'name': 'app', 'password_sha256': 'abc'}], 'ACL user app: password_sha256 must be 64 hexadecimal digits'),
    ([{'name': 'app', 'password': 'pw-ASDF', 'rules': ['>other']}], "ACL user app: rule '>...' is not allowed"),
    ([{'name': 'app', 'password': 'pw-ASDF', 'rules': '#' + sha('pw-QWER')}], "ACL user app: rule '#...' is not allowed"),
    ([{'name': 'app', 'password': 'pw-ASDF', 'rules': ['on']}], "ACL user app: rule 'on' is not allowed"),
    ([{'name': 'app', 'password': 'pw-ASDF', 'rules': ['~a b']}], 'is not one ACL rule'),
    ([{'name': 'app', 'password': 'pw-ASDF'}, {'name': 'app', 'password': 'pw-QWER'}], 'ACL user app: listed twice'),
    ([{'name': 'bad name', 'password': 'pw-ASDF'}], "ACL user 'bad name': a name is 1-64"),
    ([{'name': 'app', 'password': 'pw-ASDF', 'pasword': 'typo'}], 'ACL user app: unknown field(s) pasword'),
    ([{'name': 'app', 'password': 'pw-ASDF', 'nopass': True}], 'nopass and a password exclude each other'),
    (['app'], 'ACL user #1: a dict with at least a name'),
])
def test_bad_users_are_refused_naming_the_user_never_the_password(users, message):
    with pytest.raises(AclError) as caught:
        acl_file_lines(users)
    assert message in str(caught.value)
    for user in users:
        if isinstance(user, dict) and user.get('password'):
            assert user['password'] not in str(caught.value)


@given(st.text(min_size=1, max_size=40))
def test_any_password_renders_as_its_hash_only(password):
    line = acl_file_lines([{'name': 'app', 'password': password, 'rules': ['+@read']}])[1]
    digest = hashlib.sha256(password.encode('utf-8')).hexdigest()
    assert line == f'user app on resetpass #{digest} +@read'
    # The same input renders the same text: a changed file means a changed password or rule.
    assert acl_file_lines([{'name': 'app', 'password': password, 'rules': ['+@read']}])[1] == line


def test_normalized_users_keep_their_order():
    users = normalize_users([{'name': name, 'enabled': False} for name in ('c', 'a', 'b')])
    assert [user['name'] for user in users] == ['c', 'a', 'b']


def refusing_all_but(accepted):
    """A connect() that logs in only with the `accepted` password, recording every password tried."""
    tried = []

    def connect(options):
        tried.append(options.login_password)
        if options.login_password != accepted:
            raise LoginRefused('10.0.0.5:6379', 'WRONGPASS invalid username-password pair')
        return f'client of {options.login_password}'
    return connect, tried


@pytest.mark.parametrize('accepted, previous, expected, tried', [
    ('new', 'old', ('client of new', 'current'), ['new']),
    ('old', 'old', ('client of old', 'previous'), ['new', 'old']),
    ('new', None, ('client of new', 'current'), ['new']),
])
def test_admin_login_tries_the_previous_password_only_when_the_current_one_is_refused(accepted, previous, expected, tried):
    connect, attempts = refusing_all_but(accepted)
    assert admin_login(connect, ConnectionOptions(login_user='hashslot-admin', login_password='new'), previous) == expected
    assert attempts == tried


@pytest.mark.parametrize('previous, tried', [(None, 'with login_password,'), ('older', 'with login_password and previous_login_password,')])
def test_admin_login_refused_with_every_password_says_what_to_set(previous, tried):
    connect, dummy = refusing_all_but('other')
    with pytest.raises(NodeError) as raised:
        admin_login(connect, ConnectionOptions(login_user='hashslot-admin', login_password='new'), previous)
    message = str(raised.value)
    assert message.startswith('10.0.0.5:6379: refused the admin user hashslot-admin ' + tried), message
    assert 'set previous_login_password' in message and 'redis_server_admin_previous_password' in message
    assert 'new' not in message and 'older' not in message


def test_admin_login_passes_other_failures_on_without_trying_the_previous_password():
    def unreachable(options):
        raise NodeError('10.0.0.5:6379', 'unreachable: connection refused')
    with pytest.raises(NodeError, match='unreachable'):
        admin_login(unreachable, ConnectionOptions(login_user='hashslot-admin', login_password='new'), 'old')


def test_the_role_users_get_the_rules_the_collection_defines_and_inventory_rules_win():
    from ansible_collections.hashslot.redis.plugins.filter.redis_text import redis_acl_users
    from ansible_collections.hashslot.redis.plugins.module_utils.acl import APPLICATION_RULES
    inventory = [{'name': 'app', 'password': 'a'}, {'name': 'reader', 'password': 'r', 'rules': ['~*', '+@read']}]
    admin, replication = {'name': 'hashslot-admin', 'password': 'x'}, {'name': 'hashslot-replication', 'password': 'y'}
    exporter = {'name': 'hashslot-exporter', 'password': 'e', 'rules': ['+ping']}
    users = redis_acl_users(inventory, admin=admin, replication=replication, exporter=exporter, flavor='valkey', version='9.1.2')
    assert [user['name'] for user in users] == ['hashslot-admin', 'hashslot-replication', 'hashslot-exporter', 'app', 'reader']
    assert users[0]['rules'] == list(ADMIN_RULES) and '+cluster|syncslots' in users[1]['rules']
    assert users[2]['rules'] == ['+ping'] and users[3]['rules'] == list(APPLICATION_RULES) and users[4]['rules'] == ['~*', '+@read']
    assert 'rules' not in admin and 'rules' not in inventory[0]
    without_exporter = redis_acl_users(inventory, admin, replication, dict(exporter, password=''), 'redis', '7.0.15')
    assert [user['name'] for user in without_exporter] == ['hashslot-admin', 'hashslot-replication', 'app', 'reader']
    assert without_exporter[1]['rules'] == ['+psync', '+replconf', '+ping']
    assert acl_file_lines(users)[0].startswith('user default off')
