"""Fixtures: a server factory per build (Redis 7.0, Redis 8.0, Valkey 8.1), parametrised."""

from __future__ import annotations

import pytest

from servers import PortAllocator, ServerFactory, available_builds, wanted_build_names

PORTS = PortAllocator()


def pytest_generate_tests(metafunc):
    if 'build' in metafunc.fixturenames:
        metafunc.parametrize('build', wanted_build_names(), indirect=True, scope='module')


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
