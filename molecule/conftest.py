"""Fixtures shared by the testinfra tests of every molecule scenario."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from containers import MoleculeCluster  # noqa: E402


@pytest.fixture(scope='session')
def cluster() -> MoleculeCluster:
    inventory_file = os.environ.get('MOLECULE_INVENTORY_FILE', '')
    if not inventory_file:
        pytest.fail('MOLECULE_INVENTORY_FILE is not set: run these tests through `molecule verify` or `molecule test`')
    return MoleculeCluster(inventory_file)
