"""A real browser for the tests: Debian's headless Chromium, driven over the DevTools protocol
on a pipe (`--remote-debugging-pipe`: the browser reads commands on fd 3 and writes replies and
events on fd 4, each a JSON text ended by a NUL byte). No library, no network port.

`load(path)` opens a local file with the network switched off and scripts disabled, and returns
what a test asserts on: the console errors and exceptions, the requests other than `file:`,
the boxes of the elements matching a selector, and a PNG screenshot of the whole page.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
TIMEOUT_SECONDS = 60


def chromium() -> str | None:
    """The browser's executable, or None when none is installed."""
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


@dataclass
class PageLoad:
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # URLs other than file:
    boxes: list[tuple[float, float]] = field(default_factory=list)  # (width, height)
    screenshot: bytes = b""
    title: str = ""


class DevTools:
    """One browser process and its protocol pipe."""

    def __init__(self, executable: str, profile: str) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # copies numbered 10 and up, so that the shell's redirections onto 3 and 4 clobber none
        reads, writes = (
            fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w)
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        arguments = [
            executable,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            "about:blank",
        ]
        self.process = subprocess.Popen(
            [
                "bash",
                "-c",
                f'exec "$@" 3<&{reads} 4>&{writes} {reads}<&- {writes}>&-',
                "bash",
                *arguments,
            ],
            pass_fds=(reads, writes),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(reads)
        os.close(writes)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send a command and wait for its reply (events that come first are kept)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
            self.events.append(reply)

    def wait_for_event(self, method: str) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read()
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("the browser closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(message))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, OSError):
            self.send("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def load(path: Path, selector: str) -> PageLoad:
    """Open `path` offline with scripts disabled; see the module docstring."""
    executable = chromium()
    assert executable is not None, "no Chromium installed"
    with tempfile.TemporaryDirectory(prefix="kpictl-chromium-") as profile:
        tools = DevTools(executable, profile)
        try:
            return _load(tools, path, selector)
        finally:
            tools.close()


def _load(tools: DevTools, path: Path, selector: str) -> PageLoad:
    target = tools.send("Target.createTarget", url="about:blank")["targetId"]
    session = tools.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Runtime", "Log", "Page", "Network", "DOM"):
        tools.send(f"{domain}.enable", session)
    tools.send(
        "Network.emulateNetworkConditions",
        session,
        offline=True,
        latency=0,
        downloadThroughput=0,
        uploadThroughput=0,
    )
    tools.send("Emulation.setScriptExecutionDisabled", session, value=True)
    tools.events.clear()
    tools.send("Page.navigate", session, url=path.resolve().as_uri())
    tools.wait_for_event("Page.loadEventFired")
    result = PageLoad()
    document = tools.send("DOM.getDocument", session, depth=-1)["root"]
    nodes = tools.send(
        "DOM.querySelectorAll", session, nodeId=document["nodeId"], selector=selector
    )
    for node in nodes["nodeIds"]:
        model = tools.send("DOM.getBoxModel", session, nodeId=node)["model"]
        result.boxes.append((float(model["width"]), float(model["height"])))
    title = tools.send("DOM.querySelector", session, nodeId=document["nodeId"], selector="title")
    result.title = tools.send("DOM.getOuterHTML", session, nodeId=title["nodeId"])["outerHTML"]
    shot = tools.send("Page.captureScreenshot", session, format="png", captureBeyondViewport=True)
    result.screenshot = base64.b64decode(shot["data"])
    _collect(tools.events, result)
    return result


def _collect(events: list[dict[str, Any]], result: PageLoad) -> None:
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            result.console_errors.append(json.dumps(params.get("args")))
        elif method == "Runtime.exceptionThrown":
            result.console_errors.append(json.dumps(params.get("exceptionDetails")))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            result.console_errors.append(params["entry"].get("text", ""))
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not url.startswith("file:"):
                result.requests.append(url)


if __name__ == "__main__":  # python -m tests.browser PAGE.html SHOT.png (docs/report.png)
    import sys

    loaded = load(Path(sys.argv[1]), "svg")
    Path(sys.argv[2]).write_bytes(loaded.screenshot)
    print(f"{len(loaded.boxes)} charts, console errors: {loaded.console_errors or 'none'}")
