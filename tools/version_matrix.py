"""The version matrix: the collection under each ansible-core and redis-py line it supports (`make matrix`).

    python tools/version_matrix.py [-j JOBS] [ROW...]      the rows of tests/matrix/versions.txt (default: all)

Each row is a virtualenv with the row's ansible-core and redis-py (and the pytest and hypothesis of
requirements-dev.txt), cached in ${HASHSLOT_CACHE_DIR:-/var/cache/hashslot-redis}/matrix/<row>-<digest>, where the
digest covers the interpreter, the pins and this recipe: a changed pin or a new interpreter makes a new one, and the
row's older ones are removed. A row on `python3.11` uses this machine's interpreter; a row on `debian:trixie` uses
Debian 13's python3 in the hashslot/debian:trixie image (tools/container-images), in one container that shares this
machine's network and sees the checkout and the cache at their own paths (pip there reaches the package index with
this machine's CA bundle). In each row:

  unit   the unit tests that depend on ansible-core or redis-py (UNIT_TESTS)
  smoke  tests/matrix/smoke.yml: every module once, on ten fresh servers of Debian 12's Redis 7.0 on loopback
         (tools/redis-servers ensure redis-7.0), started on this machine for the row

JOBS rows (default 2) run side by side: a row mostly waits on its servers, their gossip and ansible-playbook. Prints a
table of the results and their times; logs in tests/output/matrix/<row>/{venv,unit,smoke}.log. Exit status 0 when
every row passed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple
from xml.etree import ElementTree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))

from playbook import parse_recap  # noqa: E402  (the integration tests' reader of PLAY RECAP)
from servers import RedisServer, ServerBuild, _port_free, ensure_build  # noqa: E402  (the integration tests' servers)

VERSIONS = os.path.join(ROOT, 'tests', 'matrix', 'versions.txt')
SMOKE = os.path.join(ROOT, 'tests', 'matrix', 'smoke.yml')
OUTPUT = os.path.join(ROOT, 'tests', 'output', 'matrix')
CACHE = os.path.join(os.path.abspath(os.environ.get('HASHSLOT_CACHE_DIR', '/var/cache/hashslot-redis')), 'matrix')
# The unit tests that reach ansible-core (its filters' errors, ansible-doc, ansible-playbook --syntax-check of every
# playbook and role, AnsibleModule's argument specs) or redis-py (its exceptions, key slots and connections); the
# others test the engine's pure Python, which neither library touches.
UNIT_TESTS = ['test_redis_client.py', 'test_rdb.py', 'test_role_filters.py', 'test_cluster_inventory.py',
              'test_operations.py', 'test_module_docs.py', 'test_awx.py', 'test_roles.py']
# The test tools each row installs beside the two libraries, at requirements-dev.txt's pins.
TEST_TOOLS = ('pytest', 'hypothesis')
# The collections that the roles (community.crypto) and extensions/awx (awx.awx) name.
DEPENDENCY_COLLECTIONS = ('community.crypto', 'awx.awx')
# Bump when the way a row's virtualenv is made changes (it is part of the digest).
RECIPE = 1
IMAGE_PREFIX = 'hashslot/debian:'
# Below the integration tests' ports (21000-29000, bus ports +10000), so that the matrix can run beside them.
PORT_RANGE = range(20000, 21000)
SERVERS_PER_ROW = 10
HOST_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt'
CONTAINER_CA_BUNDLE = '/etc/hashslot-host-ca.crt'
STEPS = ('venv', 'unit', 'smoke')


@dataclass
class Row:
    name: str
    python: str
    ansible_core: str
    redis: str
    # step -> (passed, what it says)
    results: Dict[str, Tuple[bool, str]] = field(default_factory=dict)
    seconds: Dict[str, float] = field(default_factory=dict)
    interpreter: str = ''

    @property
    def image(self) -> Optional[str]:
        return IMAGE_PREFIX + self.python.split(':', 1)[1] if self.python.startswith('debian:') else None

    @property
    def output(self) -> str:
        return os.path.join(OUTPUT, self.name)

    def passed(self) -> bool:
        return all(step in self.results and self.results[step][0] for step in STEPS)


def read_rows(path: str) -> List[Row]:
    rows = []
    with open(path) as handle:
        for line in handle:
            fields = line.split('#', 1)[0].split()
            if fields:
                if len(fields) != 4:
                    raise SystemExit(f'{path}: expected "name python ansible-core redis", got: {line.strip()}')
                rows.append(Row(*fields))
    return rows


def tool_pins() -> List[str]:
    pins = {}
    with open(os.path.join(ROOT, 'requirements-dev.txt')) as handle:
        for line in handle:
            name, dummy, version = line.split('#', 1)[0].strip().partition('==')
            if name in TEST_TOOLS:
                pins[name] = f'{name}=={version}'
    missing = [name for name in TEST_TOOLS if name not in pins]
    if missing:
        raise SystemExit(f'requirements-dev.txt pins no {", ".join(missing)}')
    return [pins[name] for name in TEST_TOOLS]


def log_run(command: List[str], log: str, env: Optional[Dict[str, str]] = None, timeout: float = 1200) -> int:
    """Run command with its output appended to log; its exit status (124 when it took longer than timeout)."""
    with open(log, 'a') as handle:
        handle.write(f'$ {" ".join(command)}\n')
        handle.flush()
        try:
            return subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                  cwd=ROOT, timeout=timeout, check=False).returncode
        except subprocess.TimeoutExpired:
            handle.write(f'\n(stopped after {timeout:.0f} s)\n')
            return 124


class Place:
    """Where a row's commands run: this machine, or the matrix's container of an image (started by the first row
    that needs it, shared by the rows on that image)."""

    def __init__(self, image: Optional[str] = None):
        self.image = image
        self.container: Optional[str] = None
        self.lock = threading.Lock()

    def start(self) -> None:
        with self.lock:
            if self.image and not self.container:
                self._start_container()

    def _start_container(self) -> None:
        completed = subprocess.run([os.path.join(ROOT, 'tools', 'container-images'), 'ensure', self.image[len(IMAGE_PREFIX):]],
                                   capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
        if completed.returncode != 0:
            raise RuntimeError(f'tools/container-images could not make {self.image}: {completed.stderr.strip()}')
        # One container per checkout and image: one left by an interrupted run goes first.
        name = 'hs-matrix-' + hashlib.sha256(f'{ROOT} {self.image}'.encode()).hexdigest()[:10]
        subprocess.run(['docker', 'rm', '-f', name], capture_output=True, check=False)
        command = ['docker', 'run', '-d', '--rm', '--name', name, '--network', 'host', '-v', f'{ROOT}:{ROOT}', '-v', f'{CACHE}:{CACHE}']
        if os.path.exists(HOST_CA_BUNDLE):
            command += ['-v', f'{HOST_CA_BUNDLE}:{CONTAINER_CA_BUNDLE}:ro']
        completed = subprocess.run(command + [self.image, 'sleep', 'infinity'], capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise RuntimeError(f'docker run {self.image} failed: {completed.stderr.strip()}')
        self.container = name

    def stop(self) -> None:
        if self.container:
            subprocess.run(['docker', 'rm', '-f', self.container], capture_output=True, check=False)
            self.container = None

    def command(self, argv: List[str], env: Dict[str, str]) -> List[str]:
        """argv as run in this place, env added to the place's own environment."""
        if not self.image:
            return argv
        prefix = ['docker', 'exec', '-w', ROOT]
        for name, value in env.items():
            prefix += ['-e', f'{name}={value}']
        return prefix + [self.container] + argv

    def run(self, argv: List[str], log: str, env: Optional[Dict[str, str]] = None, timeout: float = 1200) -> int:
        env = dict(env or {})
        return log_run(self.command(argv, env), log, None if self.image else {**os.environ, **env}, timeout)

    def read(self, argv: List[str]) -> str:
        completed = subprocess.run(self.command(argv, {}), capture_output=True, text=True, stdin=subprocess.DEVNULL, check=True)
        return completed.stdout.strip()


WHEEL_LOCK = threading.Lock()


def pip_wheel(log: str) -> str:
    """pip's wheel, of the version this virtualenv has: run from the wheel, pip installs itself into a virtualenv whose
    interpreter has no ensurepip (Debian's python3 without python3-venv)."""
    version = importlib.metadata.version('pip')
    directory = os.path.join(CACHE, 'wheels')
    with WHEEL_LOCK:
        wheels = [name for name in os.listdir(directory) if name.startswith(f'pip-{version}-')] if os.path.isdir(directory) else []
        if not wheels:
            log_run([sys.executable, '-m', 'pip', 'download', '--quiet', '--disable-pip-version-check', '--no-deps',
                     '--only-binary=:all:', '--dest', directory, f'pip=={version}'], log)
            wheels = [name for name in os.listdir(directory) if name.startswith(f'pip-{version}-')] if os.path.isdir(directory) else []
    if not wheels:
        raise RuntimeError(f'pip {version} could not be downloaded; see {log}')
    return os.path.join(directory, wheels[0])


def ensure_venv(row: Row, place: Place, log: str) -> Tuple[str, bool]:
    """The row's virtualenv, made unless the cache has it: its directory, and whether it was made now."""
    python = 'python3' if place.image else row.python
    identity = place.read([python, '-c', 'import sys; print(sys.version.replace(chr(10), " "))'])
    row.interpreter = identity.split()[0]
    image_id = ''
    if place.image:
        image_id = subprocess.run(['docker', 'image', 'inspect', '-f', '{{ .Id }}', place.image], capture_output=True, text=True, check=True).stdout.strip()
    requirements = [f'ansible-core=={row.ansible_core}', f'redis=={row.redis}', *tool_pins()]
    digest = hashlib.sha256(json.dumps([RECIPE, row.python, identity, image_id, requirements]).encode()).hexdigest()[:16]
    venv = os.path.join(CACHE, f'{row.name}-{digest}')
    if os.path.exists(os.path.join(venv, '.installed')):
        return venv, False
    for name in os.listdir(CACHE):
        if name.startswith(f'{row.name}-') and name != os.path.basename(venv):
            shutil.rmtree(os.path.join(CACHE, name), ignore_errors=True)
    shutil.rmtree(venv, ignore_errors=True)
    env = {'PIP_DISABLE_PIP_VERSION_CHECK': '1', 'PYTHONDONTWRITEBYTECODE': '1'}
    python_in_venv = os.path.join(venv, 'bin', 'python')
    if place.image:
        # This machine's pip configuration does not reach the container: its CA bundle does, and pip keeps its
        # downloads in the cache directory.
        env['PIP_CACHE_DIR'] = os.path.join(CACHE, 'pip-cache')
        if os.path.exists(HOST_CA_BUNDLE):
            env['PIP_CERT'] = CONTAINER_CA_BUNDLE
        wheel = pip_wheel(log)
        steps = [[python, '-m', 'venv', '--without-pip', venv], [python_in_venv, os.path.join(wheel, 'pip'), 'install', '--quiet', wheel]]
    else:
        steps = [[python, '-m', 'venv', venv]]
    steps += [[python_in_venv, '-m', 'pip', 'install', '--quiet', *requirements], [python_in_venv, '-m', 'pip', 'freeze']]
    for step in steps:
        if place.run(step, log, env) != 0:
            raise RuntimeError(f'making the virtualenv failed; see {os.path.relpath(log, ROOT)}')
    # ansible-core looks for collections on sys.path too: the row's ansible-playbook --syntax-check finds the
    # collections the roles and playbooks name there.
    site_packages = place.read([python_in_venv, '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'])
    with open(os.path.join(site_packages, 'hashslot-matrix-collections.pth'), 'w') as handle:
        handle.write(os.path.join(CACHE, 'collections') + '\n')
    with open(os.path.join(venv, '.installed'), 'w') as handle:
        handle.write('\n'.join(requirements) + '\n')
    return venv, True


def dependency_collections() -> None:
    """CACHE/collections/ansible_collections with the collections this one names (DEPENDENCY_COLLECTIONS), copied from
    the ansible package of this virtualenv (requirements-dev.txt) when they differ. The rows' ansible-playbook
    --syntax-check resolves the roles' and playbooks' module names there; no row runs them."""
    for collection in DEPENDENCY_COLLECTIONS:
        parts = collection.split('.')
        source = next((os.path.join(path, 'ansible_collections', *parts) for path in sys.path
                       if os.path.isfile(os.path.join(path, 'ansible_collections', *parts, 'MANIFEST.json'))), None)
        if source is None:
            raise SystemExit(f'version_matrix: no {collection} beside this ansible-core (requirements-dev.txt installs it)')
        copy = os.path.join(CACHE, 'collections', 'ansible_collections', *parts)
        if not same_content(os.path.join(source, 'MANIFEST.json'), os.path.join(copy, 'MANIFEST.json')):
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(source, copy)


def same_content(first: str, second: str) -> bool:
    try:
        with open(first, 'rb') as one, open(second, 'rb') as other:
            return one.read() == other.read()
    except OSError:
        return False


PORT_LOCK = threading.Lock()
TAKEN_PORTS: List[int] = []


def take_ports(count: int) -> List[int]:
    with PORT_LOCK:
        ports = [port for port in PORT_RANGE if port not in TAKEN_PORTS and _port_free(port)][:count]
        if len(ports) < count:
            raise RuntimeError(f'fewer than {count} free loopback ports in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}')
        TAKEN_PORTS.extend(ports)
        return ports


def release_ports(ports: List[int]) -> None:
    with PORT_LOCK:
        for port in ports:
            TAKEN_PORTS.remove(port)


def ansible_environment(venv: str) -> Dict[str, str]:
    return {
        'ANSIBLE_COLLECTIONS_PATH': os.path.join(ROOT, '.collections'),
        'ANSIBLE_PYTHON_INTERPRETER': os.path.join(venv, 'bin', 'python'),
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_FORCE_COLOR': '0',
        'ANSIBLE_LOCALHOST_WARNING': 'False',
        'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'False',
        'ANSIBLE_RETRY_FILES_ENABLED': 'False',
        'PYTHONDONTWRITEBYTECODE': '1',
    }


def run_unit(row: Row, place: Place, venv: str, log: str) -> Tuple[bool, str]:
    junit = os.path.join(row.output, 'unit.xml')
    tests = [os.path.join('tests', 'unit', name) for name in UNIT_TESTS]
    rc = place.run([os.path.join(venv, 'bin', 'python'), '-m', 'pytest', '-q', '--junitxml', junit, *tests], log, ansible_environment(venv))
    return rc == 0, junit_summary(junit)


def junit_summary(junit: str) -> str:
    """'N passed', with the failed and skipped counts when there are some, from pytest's JUnit report."""
    try:
        suite = ElementTree.parse(junit).getroot()
        suite = suite if suite.tag == 'testsuite' else suite.find('testsuite')
        tests, skipped = int(suite.get('tests')), int(suite.get('skipped'))
        failed = int(suite.get('failures')) + int(suite.get('errors'))
    except (OSError, AttributeError, TypeError, ValueError, ElementTree.ParseError):
        return 'no report'
    return f'{tests - failed - skipped} passed' + (f', {failed} failed' if failed else '') + (f', {skipped} skipped' if skipped else '')


def run_smoke(row: Row, place: Place, venv: str, log: str, build: ServerBuild) -> Tuple[bool, str]:
    work = os.path.join(row.output, 'smoke')
    os.makedirs(work)
    acl_file = os.path.join(work, 'users.acl')
    with open(acl_file, 'w') as handle:
        handle.write('user default on nopass ~* &* +@all\n')
    ports = take_ports(SERVERS_PER_ROW)
    servers = []
    try:
        for index, port in enumerate(ports):
            directory = os.path.join(work, str(port))
            os.makedirs(directory)
            # nodes-<port>.conf: the name the redis_server role gives it, which redis_backup_files looks for.
            extra = {'cluster-config-file': f'nodes-{port}.conf'}
            if index == 0:
                extra['aclfile'] = acl_file
            servers.append(RedisServer(build, port, directory, extra=extra))
            servers[-1].start()
        # Three zones, a replica's never its master's: the cluster reads healthy, as on three machines.
        zones = {server.address: 'abc'[index % 3] for index, server in enumerate(servers)}
        variables = {
            'matrix_nodes': [dict(server.node, zone=zones[server.address]) for server in servers],
            'matrix_instances': [{'address': server.address, 'node': server.node, 'inventory_host': 'localhost'} for server in servers],
            'matrix_zones': zones,
            'matrix_acl_file': acl_file,
            'matrix_work': work,
        }
        variables_file = os.path.join(work, 'variables.json')
        with open(variables_file, 'w') as handle:
            json.dump(variables, handle)
        rc = place.run([os.path.join(venv, 'bin', 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', SMOKE, '-e', f'@{variables_file}'],
                       log, ansible_environment(venv), timeout=600)
    finally:
        for server in servers:
            server.stop()
        release_ports(ports)
    with open(log) as handle:
        recap = parse_recap(handle.read()).get('localhost', {})
    if rc == 0:
        return True, f"{recap.get('ok', 0)} ok, {recap.get('changed', 0)} changed"
    return False, f"rc={rc}, {recap.get('failed', 'no')} failed task"


def run_row(row: Row, place: Place, build: ServerBuild) -> Row:
    shutil.rmtree(row.output, ignore_errors=True)
    os.makedirs(row.output)
    started = time.monotonic()
    try:
        place.start()
        venv, made = ensure_venv(row, place, os.path.join(row.output, 'venv.log'))
        row.results['venv'] = (True, 'made' if made else 'cached')
    except (RuntimeError, subprocess.CalledProcessError) as error:
        row.results['venv'] = (False, str(error))
        return row
    finally:
        row.seconds['venv'] = time.monotonic() - started
    for step, runner in (('unit', run_unit), ('smoke', lambda *args: run_smoke(*args, build))):
        started = time.monotonic()
        try:
            row.results[step] = runner(row, place, venv, os.path.join(row.output, f'{step}.log'))
        except RuntimeError as error:
            row.results[step] = (False, str(error))
        row.seconds[step] = time.monotonic() - started
    return row


def print_table(rows: List[Row], seconds: float) -> None:
    print(f'\n== The version matrix: {len(rows)} rows in {seconds:.0f} s (logs: {os.path.relpath(OUTPUT, ROOT)}/<row>/) ==')
    header = ('row', 'python', 'ansible-core', 'redis-py', *STEPS)
    lines = [header]
    for row in rows:
        cells = [row.name, row.interpreter or row.python, row.ansible_core, row.redis]
        for step in STEPS:
            if step not in row.results:
                cells.append('-')
                continue
            passed, text = row.results[step]
            cells.append(f'{"" if passed else "FAILED "}{text}, {row.seconds[step]:.0f} s')
        lines.append(tuple(cells))
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    for line in lines:
        print('  ' + '  '.join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-j', '--jobs', type=int, default=2, help='rows run side by side (default 2)')
    parser.add_argument('rows', nargs='*', help='row names of tests/matrix/versions.txt (default: all)')
    args = parser.parse_args(argv)
    rows = read_rows(VERSIONS)
    unknown = sorted(set(args.rows) - {row.name for row in rows})
    if unknown:
        parser.error(f'no row {", ".join(unknown)} in {os.path.relpath(VERSIONS, ROOT)}')
    rows = [row for row in rows if not args.rows or row.name in args.rows]
    os.makedirs(CACHE, exist_ok=True)
    dependency_collections()
    build = ensure_build('redis-7.0')
    places = {image: Place(image) for image in {row.image for row in rows}}
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            running = [pool.submit(run_row, row, places[row.image], build) for row in rows]
            for finished in as_completed(running):
                row = finished.result()
                print(f'version_matrix: {row.name} (ansible-core {row.ansible_core}, redis-py {row.redis}, {row.python}) '
                      f'{"passed" if row.passed() else "FAILED"} in {sum(row.seconds.values()):.0f} s', flush=True)
    finally:
        for place in places.values():
            place.stop()
    print_table(rows, time.monotonic() - started)
    failed = [row for row in rows if not row.passed()]
    for row in failed:
        for step in STEPS:
            log = os.path.join(row.output, f'{step}.log')
            if not row.results.get(step, (True, ''))[0] and os.path.exists(log):
                print(f'\n---- {row.name}: the last lines of {os.path.relpath(log, ROOT)}')
                with open(log) as handle:
                    print(''.join(handle.readlines()[-60:]), end='')
    print(f'version_matrix: {len(rows) - len(failed)} passed, {len(failed)} failed')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
