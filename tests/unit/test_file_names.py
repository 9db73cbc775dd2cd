"""No two files of the repository share a name for different jobs: a reader who finds one by name must not take it
for the other (tools/cluster_report.py once printed `make demo`'s cluster while module_utils/cluster_report.py drew
the HTML report)."""

from __future__ import annotations

import collections
import re
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Names the tools that read them fix, one per role, entry point, scenario, test directory or inventory.
CONVENTIONAL = {'main.yml', 'README.md', 'argument_specs.yml', 'molecule.yml', 'conftest.py', 'hosts.yml',
                # Each role's own step of that name (its `validate` entry point, its preflight checks, its service
                # and configuration tasks).
                'validate.yml', 'preflight.yml', 'service.yml', 'configure.yml'}
# One job under one name in two places: the top-level site.yml imports playbooks/site.yml, and a playbook runs the
# tasks of its own name (shared with upgrade.yml, or the exporter role's).
SAME_JOB = {
    'site.yml': {'site.yml', 'playbooks/site.yml'},
    'rolling_restart.yml': {'playbooks/rolling_restart.yml', 'playbooks/tasks/rolling_restart.yml'},
    'prometheus_config.yml': {'playbooks/prometheus_config.yml', 'roles/redis_exporter/tasks/prometheus_config.yml'},
}


def repository_files():
    listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=REPO,
                            capture_output=True, check=True, timeout=60).stdout.decode()
    return [path for path in listed.split('\0') if path and os.path.lexists(os.path.join(REPO, path))]


def test_no_two_files_share_a_name_for_different_jobs():
    by_name = collections.defaultdict(set)
    for path in repository_files():
        by_name[os.path.basename(path)].add(path)
    shared = {name: sorted(paths) for name, paths in by_name.items()
              if len(paths) > 1 and name not in CONVENTIONAL and paths != SAME_JOB.get(name)}
    assert shared == {}


MARKDOWN_LINK = re.compile(r'\]\(([^)\s]+)\)')


def test_relative_links_of_the_markdown_pages_lead_to_files():
    """Every relative link of the Markdown pages (README.md, docs/, tools/, extensions/ ...) names a file or directory of the repository
    (the module pages moved once and left links behind)."""
    broken = []
    for path in repository_files():
        if not path.endswith('.md') or path.startswith(('tests/', 'changelogs/')):
            continue
        with open(os.path.join(REPO, path), encoding='utf-8') as handle:
            text = handle.read()
        for target in MARKDOWN_LINK.findall(text):
            if target.startswith(('http://', 'https://', 'mailto:', '#')):
                continue
            where = os.path.normpath(os.path.join(REPO, os.path.dirname(path), target.split('#')[0]))
            if not os.path.exists(where):
                broken.append(f'{path}: {target}')
    assert broken == []
