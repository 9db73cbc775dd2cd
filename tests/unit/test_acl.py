"""The ACL users model behind the ACL file the server role writes."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, strategies as st

from ansible_collections.hashslot.redis.plugins.module_utils.acl import (
    ADMIN_RULES, AclError, acl_file_lines, normalize_users,
)


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
