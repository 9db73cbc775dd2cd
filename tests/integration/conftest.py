"""Fixtures: a server factory per build (Redis 7.0, Redis 8.0, Valkey 8.1), parametrised."""

from __future__ import annotations

import pytest

from servers import PortAllocator, ServerFactory, available_builds, wanted_build_names

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
        metafunc.parametrize('build', names, indirect=True, scope='module')


@pytest.fixture(scope='module')
def build(request):
    builds = available_builds()
    if request.param not in builds:
        pytest.fail(f'{request.param} is not installed; run `tools/redis-servers ensure {request.param}` (make test does)')
    return builds[request.param]


@pytest.fixture
def servers(build):
    factory = ServerFactory(build, PORTS)
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
