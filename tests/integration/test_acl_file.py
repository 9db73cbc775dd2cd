"""The ACL file that redis_acl_text renders, loaded by real servers (Redis 7.0, Redis 8.0, Valkey 8.1)."""

from __future__ import annotations

import json
import os
import time

import pytest
import redis

from playbook import run_module, run_tasks

from ansible_collections.hashslot.redis.plugins.module_utils.acl import (
    ADMIN_RULES, APPLICATION_RULES, acl_file_lines, replication_rules,
)

ADMIN = ('hashslot-admin', 'admin-Pw-1')
REPLICATION = ('hashslot-replication', 'repl-Pw-2')
APP = ('app', 'app-Pw-3')


def users(build, admin_password: str = ADMIN[1]):
    """The users the redis_server role writes, with the replication rules it gives this build."""
    return [
        {'name': ADMIN[0], 'password': admin_password, 'rules': list(ADMIN_RULES)},
        {'name': REPLICATION[0], 'password': REPLICATION[1], 'rules': replication_rules(build.flavor, build.version)},
        {'name': APP[0], 'password': APP[1], 'rules': list(APPLICATION_RULES)},
    ]


def write_acl(path: str, entries) -> str:
    with open(path, 'w') as handle:
        handle.write('\n'.join(acl_file_lines(entries)) + '\n')
    return path


def as_user(server, user) -> redis.Redis:
    return server.client(username=user[0], password=user[1])


@pytest.fixture
def secured(servers, tmp_path):
    """A master and its replica (no cluster), both reading the rendered ACL file; the replica authenticates as the
    replication user. DEBUG is enabled so that the ACL, not the server's own switch, is what refuses it."""
    acl = write_acl(str(tmp_path / 'users.acl'), users(servers.build))
    master = servers.start(1, cluster=False, aclfile=acl, **{'enable-debug-command': 'yes'})[0]
    replica = servers.start(1, cluster=False, aclfile=acl, masteruser=REPLICATION[0], masterauth=REPLICATION[1],
                            replicaof=f'127.0.0.1 {master.port}')[0]
    return acl, master, replica


def test_default_user_is_off_and_the_admin_can_do_everything(secured):
    acl, master, dummy = secured
    with pytest.raises(redis.AuthenticationError):
        master.client().ping()
    with pytest.raises(redis.AuthenticationError):
        master.client(username=ADMIN[0], password='wrong').ping()
    admin = as_user(master, ADMIN)
    assert admin.config_get('aclfile')['aclfile'] == acl
    admin.set('k', 'v')
    assert admin.acl_whoami() == ADMIN[0]


def test_application_user_reads_and_writes_but_cannot_flush_configure_or_debug(secured):
    dummy, master, dummy = secured
    app = as_user(master, APP)
    app.set('app:1', 'x')
    assert app.get('app:1') == 'x'
    for command in (('FLUSHALL',), ('CONFIG', 'GET', 'maxmemory'), ('DEBUG', 'SLEEP', '0'), ('ACL', 'LIST'), ('SHUTDOWN',)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.execute_command(*command)
    assert app.get('app:1') == 'x'


def test_replica_syncs_as_the_replication_user_which_can_do_nothing_else(secured):
    dummy, master, replica = secured
    as_user(master, ADMIN).set('replicated', '1')
    admin_replica = as_user(replica, ADMIN)
    deadline = time.monotonic() + 20
    while admin_replica.info('replication').get('master_link_status') != 'up' or admin_replica.get('replicated') != '1':
        assert time.monotonic() < deadline, admin_replica.info('replication')
        time.sleep(0.1)
    replication = as_user(master, REPLICATION)
    for command in (('GET', 'replicated'), ('KEYS', '*'), ('CONFIG', 'GET', 'dir')):
        with pytest.raises(redis.exceptions.NoPermissionError):
            replication.execute_command(*command)


def test_a_new_password_takes_effect_with_acl_load_without_a_restart(secured, build):
    acl, master, dummy = secured
    admin = as_user(master, ADMIN)
    run_id = admin.info('server')['run_id']
    before = open(acl).read()
    write_acl(acl, users(build, admin_password='admin-Pw-new'))
    assert open(acl).read() != before
    admin.execute_command('ACL', 'LOAD')
    with pytest.raises(redis.AuthenticationError):
        master.client(username=ADMIN[0], password=ADMIN[1]).ping()
    renewed = master.client(username=ADMIN[0], password='admin-Pw-new')
    assert renewed.info('server')['run_id'] == run_id
    # The server's own view of the users matches the file line for line (same hash, same rules).
    listed = renewed.acl_list()
    for line in open(acl).read().splitlines():
        name = line.split()[1]
        server_line = next(entry for entry in listed if entry.split()[1] == name)
        digest = [token for token in line.split() if token.startswith('#')]
        assert all(token in server_line.split() for token in digest), (line, server_line)
    assert os.path.exists(acl)


def test_redis_acl_loads_what_differs_and_then_nothing(secured, build):
    """redis_acl: check mode predicts, a run loads a changed password and a new user, a second run loads nothing; a
    server without the wanted aclfile is reported for a restart. No password reaches a result."""
    acl, master, dummy = secured
    run_id = as_user(master, ADMIN).info('server')['run_id']
    wanted = users(build) + [{'name': 'reporting', 'password': 'report-Pw-4', 'rules': ['~*', '+@read']}]
    wanted[2] = dict(wanted[2], password='app-Pw-rotated')
    write_acl(acl, wanted)
    connection = {'node': master.node, 'login_user': ADMIN[0], 'login_password': ADMIN[1], 'acl_file': acl, 'users': wanted}
    predicted = run_module('redis_acl', check=True, **connection)
    assert predicted['changed'] is True and predicted['loaded'] is False, predicted
    assert sorted(predicted['differences']) == ['user app password', 'user reporting missing']
    with pytest.raises(redis.AuthenticationError):
        master.client(username='app', password='app-Pw-rotated').ping()
    loaded = run_module('redis_acl', **connection)
    assert loaded['changed'] is True and loaded['loaded'] is True, loaded
    assert master.client(username='app', password='app-Pw-rotated').ping()
    assert master.client(username='reporting', password='report-Pw-4').get('missing') is None
    again = run_module('redis_acl', **connection)
    assert again['changed'] is False and again['differences'] == [], again
    assert as_user(master, ADMIN).info('server')['run_id'] == run_id
    for result in (predicted, loaded, again):
        assert 'app-Pw-rotated' not in json.dumps(result) and ADMIN[1] not in json.dumps(result)
    elsewhere = run_module('redis_acl', **{**connection, 'acl_file': acl + '.other'})
    assert elsewhere['changed'] is False and elsewhere['restart_required'] == ['aclfile'], elsewhere
    # A file written for another version (an upgrade installed it, the restart comes later) is left for that restart.
    wanted[2] = dict(wanted[2], password='app-Pw-upgraded')
    write_acl(acl, wanted)
    pending = run_module('redis_acl', **{**connection, 'users': wanted, 'reload': True, 'server_version': '99.0.0'})
    assert pending['changed'] is False and pending['loaded'] is False and pending['restart_required'] == ['version'], pending
    assert pending['running_version'] == build.version if build.name != 'redis-7.0' else pending['running_version'].startswith('7.0.')
    assert master.client(username='app', password='app-Pw-rotated').ping()
    current = run_module('redis_acl', **{**connection, 'users': wanted, 'reload': True, 'server_version': pending['running_version']})
    assert current['loaded'] is True and master.client(username='app', password='app-Pw-upgraded').ping(), current


@pytest.mark.one_build
def test_redis_acl_rotates_the_admins_own_password_with_the_previous_one(secured, build):
    """The file names the admin's new password, the server still knows the old one: redis_acl logs in with
    previous_login_password, loads the file and says so; the next run logs in with the new one and loads nothing.
    Refused with every password it has, it fails naming the node and the option to set, and changes nothing."""
    acl, master, dummy = secured
    run_id = as_user(master, ADMIN).info('server')['run_id']
    rotated = users(build, admin_password='admin-Pw-rotated')
    write_acl(acl, rotated)
    connection = {'node': master.node, 'login_user': ADMIN[0], 'login_password': 'admin-Pw-rotated', 'acl_file': acl, 'users': rotated}
    run = run_tasks([{'hashslot.redis.redis_acl': connection},
                     {'hashslot.redis.redis_acl': {**connection, 'previous_login_password': 'admin-Pw-wrong'}}])
    for result in run.results:
        assert result.get('failed') and result['changed'] is False, result
        assert master.address in result['msg'] and 'previous_login_password' in result['msg'], result['msg']
        assert 'redis_server_admin_previous_password' in result['msg'], result['msg']
    assert 'with login_password and previous_login_password' in run.results[1]['msg'], run.results[1]['msg']
    assert as_user(master, ADMIN).ping()
    loaded = run_module('redis_acl', **{**connection, 'previous_login_password': ADMIN[1], 'reload': True})
    assert loaded['loaded'] is True and loaded['logged_in_with'] == 'previous', loaded
    assert master.client(username=ADMIN[0], password='admin-Pw-rotated').ping()
    with pytest.raises(redis.AuthenticationError):
        as_user(master, ADMIN).ping()
    again = run_module('redis_acl', **{**connection, 'previous_login_password': ADMIN[1]})
    assert again['changed'] is False and again['logged_in_with'] == 'current', again
    assert master.client(username=ADMIN[0], password='admin-Pw-rotated').info('server')['run_id'] == run_id
    for result in run.results + [loaded, again]:
        assert 'admin-Pw-rotated' not in json.dumps(result) and ADMIN[1] not in json.dumps(result)
    assert 'admin-Pw-rotated' not in run.output and 'admin-Pw-wrong' not in run.output
