"""Watches every process's command line for a secret while a playbook runs (the modules must never put one there)."""

from __future__ import annotations

import os
import threading
from typing import Iterable, List


class CommandLineSampler:
    """Reads every process's command line every few milliseconds; `hits` are the ones that held a secret."""

    def __init__(self, *secrets: str):
        self.secrets: List[str] = [secret for secret in secrets if secret]
        self.hits: List[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for line in _command_lines():
                if any(secret in line for secret in self.secrets):
                    self.hits.append(line)
            self.samples += 1
            self._stop.wait(0.005)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(timeout=10)


def _command_lines() -> Iterable[str]:
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as handle:
                yield handle.read().replace(b'\0', b' ').decode('utf-8', 'replace')
        except OSError:
            continue
