"""Run tasks through ansible-playbook, the way operators run the modules, and collect results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, '.collections')


@dataclass
class PlaybookRun:
    returncode: int
    results: List[Dict[str, Any]]
    output: str

    def result(self, index: int = 0) -> Dict[str, Any]:
        return self.results[index]


def ansible_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
        ANSIBLE_HOST_KEY_CHECKING='False',
        ANSIBLE_RETRY_FILES_ENABLED='False',
        ANSIBLE_NOCOLOR='1',
        # molecule exports ANSIBLE_FORCE_COLOR=true to its verifier (as CI=true does to it), which beats NOCOLOR:
        # the recap is parsed, so it must be plain.
        ANSIBLE_FORCE_COLOR='0',
        ANSIBLE_LOCALHOST_WARNING='False',
        ANSIBLE_INVENTORY_UNPARSED_WARNING='False',
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
    )
    env.update(extra or {})
    return env


def run_tasks(tasks: List[Dict[str, Any]], check: bool = False, diff: bool = False, verbosity: int = 0,
              env: Optional[Dict[str, str]] = None, timeout: float = 600) -> PlaybookRun:
    """Each task's result is registered and written to a JSON file; failures are kept, not raised."""
    with tempfile.TemporaryDirectory(prefix='hashslot-play-') as workdir:
        results_file = os.path.join(workdir, 'results.json')
        body: List[Dict[str, Any]] = []
        for index, task in enumerate(tasks):
            task = dict(task)
            task['register'] = f'hashslot_result_{index}'
            task.setdefault('ignore_errors', True)
            body.append(task)
        collect = {f'r{index}': f'{{{{ hashslot_result_{index} | default({{}}) }}}}' for index in range(len(tasks))}
        body.append({
            'name': 'Write every result for the test',
            'ansible.builtin.copy': {'content': '{{ hashslot_results | to_json }}', 'dest': results_file, 'mode': '0600'},
            'vars': {'hashslot_results': collect},
            'check_mode': False,
            'diff': False,
        })
        play = [{'hosts': 'localhost', 'gather_facts': False, 'tasks': body}]
        playbook = os.path.join(workdir, 'play.yml')
        with open(playbook, 'w') as handle:
            yaml.safe_dump(play, handle, sort_keys=False)
        command = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', playbook]
        if check:
            command.append('--check')
        if diff:
            command.append('--diff')
        if verbosity:
            command.append('-' + 'v' * verbosity)
        completed = subprocess.run(command, env=ansible_env(env), capture_output=True, text=True, timeout=timeout, check=False)
        output = completed.stdout + completed.stderr
        if not os.path.exists(results_file):
            raise AssertionError(f'ansible-playbook did not finish its tasks (rc={completed.returncode}):\n{output}')
        with open(results_file) as handle:
            collected = json.load(handle)
        return PlaybookRun(completed.returncode, [collected[f'r{index}'] for index in range(len(tasks))], output)


def run_module(module: str, check: bool = False, diff: bool = False, **params: Any) -> Dict[str, Any]:
    """One module call through ansible-playbook; returns its registered result."""
    return run_tasks([{module if '.' in module else f'hashslot.redis.{module}': params}], check=check, diff=diff).result(0)


def run_single_task(module: str, timeout: float = 1800, **params: Any):
    """(wall seconds, result) of a playbook holding just this task, as an operator runs it.

    The `minimal` callback prints the task's result as JSON, so no extra task is needed to read it.
    """
    name = module if '.' in module else f'hashslot.redis.{module}'
    with tempfile.TemporaryDirectory(prefix='hashslot-play-') as workdir:
        playbook = os.path.join(workdir, 'play.yml')
        with open(playbook, 'w') as handle:
            yaml.safe_dump([{'hosts': 'localhost', 'gather_facts': False, 'tasks': [{name: params}]}], handle, sort_keys=False)
        command = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', playbook]
        started = time.monotonic()
        completed = subprocess.run(command, env=ansible_env({'ANSIBLE_STDOUT_CALLBACK': 'ansible.builtin.minimal'}),
                                   capture_output=True, text=True, timeout=timeout, check=False)
        wall = time.monotonic() - started
    output = completed.stdout
    marker = output.find('=> {')
    if marker < 0:
        raise AssertionError(f'no task result in the output (rc={completed.returncode}):\n{output}{completed.stderr}')
    result, dummy = json.JSONDecoder().raw_decode(output[marker + 3:])
    return wall, result


@dataclass
class PlaybookRecap:
    """ansible-playbook's exit code, its whole output and the PLAY RECAP counters per host."""
    returncode: int
    output: str
    stats: Dict[str, Dict[str, int]]

    def total(self, counter: str) -> int:
        return sum(host.get(counter, 0) for host in self.stats.values())

    def changed_tasks(self) -> List[str]:
        """The 'TASK [...]' headers under which a host reported changed, to explain a non-idempotent run."""
        changed, current = [], ''
        for line in self.output.splitlines():
            if line.startswith('TASK ['):
                current = line.split('[', 1)[1].rsplit(']', 1)[0]
            elif line.startswith('changed:') and current not in changed:
                changed.append(current)
        return changed


def parse_recap(output: str) -> Dict[str, Dict[str, int]]:
    stats: Dict[str, Dict[str, int]] = {}
    in_recap = False
    for line in output.splitlines():
        if line.startswith('PLAY RECAP'):
            in_recap = True
            continue
        if in_recap and ':' in line and '=' in line:
            host, counters = line.split(':', 1)
            stats[host.strip()] = {key: int(value) for key, value in (item.split('=') for item in counters.split())}
    return stats


def start_tasks(tasks: List[Dict[str, Any]], workdir: str, capture: bool = False) -> subprocess.Popen:
    """ansible-playbook of `tasks` on localhost, started and not waited for, in a session of its own (so that a test
    can kill the whole run as a dying controller would). The playbook is written into `workdir`; with `capture` the
    output is read from the process's stdout (stderr joined), else discarded."""
    playbook = os.path.join(workdir, f'tasks-{time.monotonic_ns()}.yml')
    with open(playbook, 'w') as handle:
        yaml.safe_dump([{'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}], handle, sort_keys=False)
    command = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', playbook]
    output = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(command, env=ansible_env(), stdin=subprocess.DEVNULL, stdout=output,
                            stderr=subprocess.STDOUT if capture else subprocess.DEVNULL, text=True, start_new_session=True)


def run_playbook(playbook: str, inventory: str, extra_vars: Optional[Dict[str, Any]] = None, check: bool = False,
                 diff: bool = False, tags: Optional[str] = None, limit: Optional[str] = None,
                 env: Optional[Dict[str, str]] = None, timeout: float = 1800, verbosity: int = 0) -> PlaybookRecap:
    """ansible-playbook PLAYBOOK -i INVENTORY as an operator runs it, from the repository root."""
    command = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', inventory, playbook]
    with tempfile.TemporaryDirectory(prefix='hashslot-play-') as workdir:
        if extra_vars:
            vars_file = os.path.join(workdir, 'extra_vars.json')
            with open(vars_file, 'w') as handle:
                json.dump(extra_vars, handle)
            command += ['-e', '@' + vars_file]
        if check:
            command.append('--check')
        if diff:
            command.append('--diff')
        if tags:
            command += ['--tags', tags]
        if limit:
            command += ['--limit', limit]
        if verbosity:
            command.append('-' + 'v' * verbosity)
        process = subprocess.Popen(command, cwd=REPO, env=ansible_env(env), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Say where it hung before killing it: the process tree below ansible-playbook, then the output so far.
            # ansible's workers start their own sessions: kill every process of the tree, not a process group.
            pids, tree = process_tree(process.pid)
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            stdout, stderr = process.communicate()
            tail = '\n'.join((stdout + stderr).splitlines()[-60:])
            raise AssertionError(f'ansible-playbook {playbook} did not finish in {timeout:.0f} s; its processes were:\n'
                                 f'{tree}\n--- last lines of its output ---\n{tail}') from None
    return PlaybookRecap(process.returncode, stdout + stderr, parse_recap(stdout))


def process_tree(root: int) -> Tuple[List[int], str]:
    """The pids of root and its descendants, and their `ps` rows (state and kernel wait channel), for a hang's report."""
    listing = subprocess.run(['ps', '-eo', 'pid=,ppid=,etime=,stat=,wchan:24=,args='], capture_output=True, text=True, check=False).stdout
    rows, children = {}, {}
    for line in listing.splitlines():
        fields = line.split(None, 2)
        if len(fields) == 3 and fields[0].isdigit() and fields[1].isdigit():
            rows[int(fields[0])] = line
            children.setdefault(int(fields[1]), []).append(int(fields[0]))
    pids, pending = [], [root]
    while pending:
        pid = pending.pop(0)
        pids.append(pid)
        pending.extend(children.get(pid, []))
    return pids, '\n'.join(rows[pid][:300] for pid in pids if pid in rows) or f'(pid {root} gone)'
