"""Fixtures: a server factory per build (Redis 7.0, Redis 8.0, Valkey 8.1, Valkey 9.1), parametrised."""

from __future__ import annotations

import os

import pytest

from local_site import deployment as local_site_deployment
from servers import PortAllocator, ServerFactory, available_builds, ensure_build, wanted_build_names

from ansible_collections.hashslot.redis.plugins.module_utils.cluster_create import create_cluster
from ansible_collections.hashslot.redis.plugins.module_utils.placement import NodeSpec
from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import ConnectionOptions, NodePool

PORTS = PortAllocator()


def pytest_generate_tests(metafunc):
    if 'build' in metafunc.fixturenames:
        names = wanted_build_names()
        # A behaviour that does not depend on the server build (input validation, the module's own waiting) is proven
        # once, on the first build of the matrix.
        if metafunc.definition.get_closest_marker('one_build'):
            names = names[:1]
        elif metafunc.definition.get_closest_marker('per_lineage'):
            names = per_lineage(names)
        elif metafunc.definition.get_closest_marker('atomic_migration'):
            names = [name for name in names if lineage(name) == 'valkey-9']
        metafunc.parametrize('build', names, indirect=True, scope='module')


def lineage(name):
    """The code line a build's cluster code follows: redis (7.0 and 8.0), valkey-8, valkey-9 (atomic slot migration)."""
    flavor, dummy, version = name.partition('-')
    if flavor == 'valkey':
        return 'valkey-9' if int(version.split('.')[0]) >= 9 else 'valkey-8'
    return flavor


def per_lineage(names):
    """The first build of each code line in the matrix (redis-7.0, valkey-8.1.1, valkey-9.1.2): the tests whose
    behaviour follows the server's cluster code (slot migration, MIGRATE, CLUSTER SETSLOT, replicas, failover) but
    which are long, under a write load. Redis 8.0 keeps Redis 7.0's slot migration and failover commands and replies, and
    runs the rest of the matrix; Valkey forked and changes that code on its own, and Valkey 9 moves slots itself."""
    chosen = {}
    for name in names:
        chosen.setdefault(lineage(name), name)
    return [name for name in names if name in chosen.values()]


def build_param(item):
    callspec = getattr(item, 'callspec', None)
    return callspec.params.get('build') if callspec is not None else None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Tests whose server build is not made yet run last, in the matrix's order, so that on a fresh machine the tests
    that need none (or Debian's Redis 7.0) run while make test's pytest lane compiles the others in the background.
    The sort is stable: each file's tests keep their order, and tests of one build stay together.

    HASHSLOT_TEST_SHARE splits the run between two pytest processes (make test's pytest lane): `modules` keeps the
    tests parametrised with a build (the modules' tests, on every server), `machine` everything else (the unit tests and
    the tests of the roles, the playbooks and the artifact, which change this machine)."""
    ready = set(available_builds())
    wanted = wanted_build_names()
    share = os.environ.get('HASHSLOT_TEST_SHARE', '')
    if share in ('machine', 'modules'):
        keep = [item for item in items if (build_param(item) is not None) == (share == 'modules')]
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep
    elif share:
        raise pytest.UsageError(f'HASHSLOT_TEST_SHARE={share!r}: machine or modules')

    def rank(item) -> int:
        names = [build_param(item)] if build_param(item) is not None else []
        marker = item.get_closest_marker('needs_build')
        if marker is not None:
            names.extend(marker.args)
        return max((wanted.index(name) + 1 if name in wanted else len(wanted) + 1 for name in names if name not in ready), default=0)

    items.sort(key=rank)


@pytest.fixture(scope='session')
def local_site():
    """site.yml on inventories/local (ports 7000-7005), deployed once for test_site_local.py and test_site_local_ops.py
    and removed at the end of the session (local_site.py)."""
    yield from local_site_deployment()


@pytest.fixture(autouse=True)
def needed_builds(request):
    """A test marked needs_build('valkey-8.1.1') gets that build made (or waits for the run that makes it)."""
    marker = request.node.get_closest_marker('needs_build')
    for name in marker.args if marker is not None else ():
        try:
            ensure_build(name)
        except RuntimeError as exc:
            pytest.fail(str(exc))


@pytest.fixture(scope='module')
def build(request):
    try:
        return ensure_build(request.param)
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def servers(build):
    factory = ServerFactory(build, PORTS)
    yield factory
    factory.close()


@pytest.fixture
def first_build_servers():
    """Servers of the matrix's first build, for a test of behaviour no server build changes (the planning of
    redis_cluster) that is long: without a `build` parameter it runs in the machine share of make test's pytest lane,
    beside the modules' matrix in the other, which is the longer of the two."""
    try:
        factory = ServerFactory(ensure_build(wanted_build_names()[0]), PORTS)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield factory
    factory.close()


@pytest.fixture(scope='module')
def module_servers(build):
    """Servers shared by a test file's tests on one build (an expensive setup, such as a secured cluster)."""
    factory = ServerFactory(build, PORTS)
    yield factory
    factory.close()


def form_cluster(servers: ServerFactory, count: int = 6, replicas: int = 1, zones: str = 'abc', **extra: str):
    """Start `count` servers and form a cluster with the engine (the module itself is tested elsewhere)."""
    nodes = servers.start(count, **extra)
    specs = [NodeSpec('127.0.0.1', node.port, zones[index % len(zones)]) for index, node in enumerate(nodes)]
    with NodePool(ConnectionOptions()) as pool:
        create_cluster(pool, specs, replicas, 60, False)
    return nodes


@pytest.fixture
def cluster(servers):
    return form_cluster(servers)
