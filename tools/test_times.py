"""Where `make test`'s time went: its phases, each molecule scenario, the pytest files and the slowest tests.

Reads what the run left in tests/output: times/phases.tsv (tools/timed), molecule/<scenario>.seconds
(tools/molecule-scenarios) and pytest*.xml (the JUnit reports of the pytest processes). Prints a table; never fails
the run.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from xml.etree import ElementTree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def minutes(seconds: float) -> str:
    return f'{seconds / 60:5.1f} min'


def read_phases(path: str):
    phases = []
    if os.path.exists(path):
        with open(path) as handle:
            for line in handle:
                fields = line.rstrip('\n').split('\t')
                if len(fields) == 3:
                    phases.append((fields[0], int(fields[1]), fields[2]))
    return phases


def read_scenarios(directory: str):
    scenarios = []
    if os.path.isdir(directory):
        for name in sorted(os.listdir(directory)):
            if name.endswith('.seconds'):
                with open(os.path.join(directory, name)) as handle:
                    seconds, dummy, rc = handle.read().partition(' ')
                scenarios.append((name[:-len('.seconds')], int(seconds), rc.strip()))
    return scenarios


def read_tests(path: str):
    """(test id, seconds, outcome) per test case of a JUnit report."""
    tests = []
    if not os.path.exists(path):
        return tests
    for case in ElementTree.parse(path).getroot().iter('testcase'):
        outcome = 'passed'
        for child in case:
            if child.tag in ('failure', 'error', 'skipped'):
                outcome = child.tag
        test_id = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
        tests.append((test_id, float(case.get('time') or 0), outcome))
    return tests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--output', default=os.path.join(ROOT, 'tests', 'output'), help='the test output directory')
    parser.add_argument('--slowest', type=int, default=15, help='how many of the slowest tests to list')
    args = parser.parse_args()

    lines = ['', "== Where make test's time went =="]
    phases = read_phases(os.path.join(args.output, 'times', 'phases.tsv'))
    for name, seconds, rc in phases:
        lines.append(f'  {name:<34} {minutes(seconds)}{"" if rc == "0" else f"  (exit {rc})"}')
    scenarios = read_scenarios(os.path.join(args.output, 'molecule'))
    if scenarios:
        lines.append('  molecule scenarios:')
        for name, seconds, rc in sorted(scenarios, key=lambda item: -item[1]):
            lines.append(f'    {name:<32} {minutes(seconds)}{"" if rc == "0" else f"  (exit {rc})"}')
    tests = []
    reports = sorted(name for name in os.listdir(args.output) if name.startswith('pytest') and name.endswith('.xml')) \
        if os.path.isdir(args.output) else []
    for report in reports:
        tests.extend(read_tests(os.path.join(args.output, report)))
    if tests:
        by_file = collections.Counter()
        counts = collections.Counter()
        for test_id, seconds, dummy in tests:
            by_file[test_id.split('::')[0]] += seconds
            counts[test_id.split('::')[0]] += 1
        lines.append(f'  pytest files ({len(tests)} tests, {minutes(sum(by_file.values())).strip()} in all, from {", ".join(reports)}):')
        for name, seconds in by_file.most_common():
            lines.append(f'    {name:<52} {counts[name]:4d} tests {minutes(seconds)}')
        lines.append(f'  the {args.slowest} slowest tests (setup and teardown included):')
        for test_id, seconds, outcome in sorted(tests, key=lambda item: -item[1])[:args.slowest]:
            lines.append(f'    {seconds:7.1f} s  {test_id}{"" if outcome == "passed" else f"  ({outcome})"}')
    if len(lines) == 2:
        lines.append('  (no timings recorded)')
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
