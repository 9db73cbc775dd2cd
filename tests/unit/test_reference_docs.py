"""The reference in docs/reference/ is what `make docs` (antsibull-docs) writes from the collection as it is now."""

from __future__ import annotations

import filecmp
import os
import subprocess

from test_module_docs import MODULES, REPO
from test_roles import ROLES

REFERENCE = os.path.join(REPO, 'docs', 'reference')


def pages(directory: str) -> set:
    return {os.path.relpath(os.path.join(root, name), directory) for root, dummy, names in os.walk(directory) for name in names}


def test_committed_reference_is_what_make_docs_writes(tmp_path):
    written = tmp_path / 'reference'
    # A make that runs this test passes its jobserver in MAKEFLAGS: the make started here is a separate one.
    env = {name: value for name, value in os.environ.items() if name not in ('MAKEFLAGS', 'MFLAGS', 'MAKELEVEL')}
    completed = subprocess.run(['make', '--no-print-directory', '-s', '-o', '.venv/.installed', 'docs', f'REFERENCE_DIR={written}'],
                               cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    new, committed = pages(str(written)), pages(REFERENCE)
    stale = sorted(page for page in new & committed if not filecmp.cmp(written / page, os.path.join(REFERENCE, page), shallow=False))
    problems = [f'{title}: {", ".join(names)}' for title, names in (
        ('stale', stale), ('missing', sorted(new - committed)), ('left over', sorted(committed - new))) if names]
    assert not problems, 'docs/reference/ differs from what make docs writes (run make docs and commit): ' + '; '.join(problems)


def test_every_module_and_role_has_a_page():
    committed = pages(REFERENCE)
    expected = {f'{name}_module.rst' for name in MODULES} | {f'{name}_role.rst' for name in ROLES} | {'index.rst'}
    assert expected - committed == set()
