"""Debian's Chromium, headless, driven over the DevTools protocol on a pipe: what a page shows, not its bytes.

`--remote-debugging-pipe` makes the browser read commands from its file descriptor 3 and write replies and events to
its descriptor 4, each a JSON object ended by a NUL byte: no port, no websocket, no driver program and no package
beyond the standard library, and only the protocol's stable domains (Target, Page, Runtime, Emulation). The browser
comes from `tools/chromium ensure` (Debian's package); nothing is downloaded.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import pathlib
import select
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM_TOOL = os.path.join(REPO, 'tools', 'chromium')

# Headless as root: no sandbox (it needs a user namespace or setuid helper) and no GPU. The closed network refuses
# every connection the browser makes on its own (updates, sync, safe browsing), so none is made.
FLAGS = (
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check',
    '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', '--disable-extensions',
    '--disable-default-apps', '--mute-audio', '--hide-scrollbars', '--force-device-scale-factor=1', '--remote-debugging-pipe',
)


class BrowserError(RuntimeError):
    pass


def _above_nine(descriptor: int) -> int:
    moved = fcntl.fcntl(descriptor, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(descriptor)
    return moved


def processes_naming(text: str) -> List[int]:
    """The live processes whose command line holds `text` (a zombie's is empty)."""
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit() and entry != str(os.getpid()):
            try:
                with open(f'/proc/{entry}/cmdline', 'rb') as handle:
                    if text.encode() in handle.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def ensure_chromium(timeout: float = 900) -> str:
    """The browser's path: `tools/chromium path`, which installs Debian's package first when it is missing."""
    completed = subprocess.run([CHROMIUM_TOOL, 'path'], capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    if completed.returncode != 0:
        raise BrowserError(f'`tools/chromium path` failed ({completed.returncode}): {completed.stderr[-2000:]}')
    return completed.stdout.strip()


class HeadlessChromium:
    """One browser process with its own empty profile; every call bounded by `timeout` seconds. Use as a context
    manager: leaving it ends the browser and every process it started, whatever happened."""

    def __init__(self, executable: str, timeout: float = 30):
        self.executable = executable
        self.timeout = timeout
        self.process: Optional[subprocess.Popen] = None
        self.profile = ''
        self.log_path = ''
        self.to_browser = -1
        self.from_browser = -1
        self.buffer = b''
        self.next_id = 0
        self.product = ''

    def __enter__(self) -> 'HeadlessChromium':
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def start(self) -> None:
        self.profile = tempfile.mkdtemp(prefix='hashslot-chromium-')
        self.log_path = os.path.join(self.profile, 'browser.log')
        browser_reads, self.to_browser = os.pipe()
        self.from_browser, browser_writes = os.pipe()
        # bash puts the browser's two ends on 3 and 4 and execs it (the pid is the browser's). Moved above 9 first, so
        # that neither is 3 or 4 already and overwritten by the other's move.
        browser_reads, browser_writes = (_above_nine(browser_reads), _above_nine(browser_writes))
        script = f'exec "$@" 3<&{browser_reads} 4>&{browser_writes} {browser_reads}<&- {browser_writes}>&-'
        # Its crash handler keeps its database under $HOME/.config: in the profile too, so that nothing is left in the
        # home directory and every process of this browser names the profile on its command line (see close()).
        home = {'HOME': self.profile, 'XDG_CONFIG_HOME': os.path.join(self.profile, 'config'), 'XDG_CACHE_HOME': os.path.join(self.profile, 'cache')}
        with open(self.log_path, 'wb') as log:
            self.process = subprocess.Popen(
                ['bash', '-c', script, 'chromium', self.executable, *FLAGS, f'--user-data-dir={self.profile}', 'about:blank'],
                pass_fds=(browser_reads, browser_writes), stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                env={**os.environ, **home})
        os.close(browser_reads)
        os.close(browser_writes)
        version = self.command('Browser.getVersion')
        self.product = version.get('product', '')

    def log_tail(self) -> str:
        try:
            with open(self.log_path, errors='replace') as handle:
                return ''.join(handle.readlines()[-20:])
        except OSError:
            return '(no log)'

    def _read_message(self, deadline: float, waiting_for: str) -> Dict[str, Any]:
        while b'\0' not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f'{waiting_for}: no answer from the browser in time; its log:\n{self.log_tail()}')
            readable, dummy, dummy = select.select([self.from_browser], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                raise BrowserError(f'the browser closed its pipe (exit {self.process.poll() if self.process else None}); its log:\n{self.log_tail()}')
            self.buffer += chunk
        message, dummy, self.buffer = self.buffer.partition(b'\0')
        return json.loads(message)

    def command(self, method: str, params: Optional[Dict[str, Any]] = None, session: Optional[str] = None,
                timeout: Optional[float] = None) -> Dict[str, Any]:
        """Send one command and wait for its reply (`timeout` seconds, the browser's by default). Events are not asked
        for (no domain is enabled), and any that come are dropped."""
        self.next_id += 1
        message: Dict[str, Any] = {'id': self.next_id, 'method': method, 'params': params or {}}
        if session:
            message['sessionId'] = session
        data = json.dumps(message).encode() + b'\0'
        while data:
            data = data[os.write(self.to_browser, data):]
        seconds = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + seconds
        while True:
            reply = self._read_message(deadline, f'{method} ({seconds} s)')
            if reply.get('id') == self.next_id:
                if 'error' in reply:
                    raise BrowserError(f'{method}: {reply["error"]}')
                return reply.get('result', {})

    def open(self, path: str, width: int, height: int) -> 'Page':
        """A new tab of width x height CSS pixels (a window's inner size) that has loaded the file `path`."""
        url = pathlib.Path(path).resolve().as_uri()
        target = self.command('Target.createTarget', {'url': 'about:blank'})['targetId']
        session = self.command('Target.attachToTarget', {'targetId': target, 'flatten': True})['sessionId']
        page = Page(self, session)
        page.command('Emulation.setDeviceMetricsOverride', {'width': width, 'height': height, 'deviceScaleFactor': 1, 'mobile': False})
        navigated = page.command('Page.navigate', {'url': url})
        if navigated.get('errorText'):
            raise BrowserError(f'{url}: {navigated["errorText"]}')
        # Loaded when the page at that address says so: asked, not told by an event that might be about:blank's.
        deadline = time.monotonic() + self.timeout
        while page.evaluate("document.readyState === 'complete' && location.href") != url:
            if time.monotonic() > deadline:
                raise BrowserError(f'{url} not loaded within {self.timeout} s')
            time.sleep(0.05)
        # Text is laid out once the fonts are there (system fonts here, but the page does not know that).
        page.evaluate('document.fonts.ready.then(() => true)')
        return page

    def close(self) -> None:
        process = self.process
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(BrowserError, OSError):
                    self.command('Browser.close', timeout=5)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)
            # The renderer, GPU and utility processes are in the browser's process group; its crash handlers start
            # sessions of their own (and end a moment after the browser). None outlives the test.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            self.process = None
            deadline = time.monotonic() + 10
            while self.profile and time.monotonic() < deadline:
                left = processes_naming(self.profile)
                if not left:
                    break
                for pid in left:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.05)
        for descriptor in (self.to_browser, self.from_browser):
            if descriptor >= 0:
                os.close(descriptor)
        self.to_browser = self.from_browser = -1
        if self.profile:
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = ''


class Page:
    """A tab of HeadlessChromium, attached as one DevTools session."""

    def __init__(self, browser: HeadlessChromium, session: str):
        self.browser = browser
        self.session = session

    def command(self, method: str, params: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        return self.browser.command(method, params, self.session)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited), as JSON."""
        result = self.command('Runtime.evaluate', {'expression': expression, 'returnByValue': True, 'awaitPromise': True})
        if 'exceptionDetails' in result:
            details = result['exceptionDetails']
            raise BrowserError(f'{expression[:200]}: {details.get("exception", {}).get("description") or details.get("text")}')
        return result['result'].get('value')

    def screenshot(self, path: str) -> Tuple[int, int]:
        """The whole page (beyond the window too) as a PNG file; returns its (width, height) in pixels."""
        width, height = self.evaluate('[document.documentElement.scrollWidth, document.documentElement.scrollHeight]')
        shot = self.command('Page.captureScreenshot', {'format': 'png', 'captureBeyondViewport': True,
                                                       'clip': {'x': 0, 'y': 0, 'width': width, 'height': height, 'scale': 1}})
        with open(path, 'wb') as handle:
            handle.write(base64.b64decode(shot['data']))
        return width, height
