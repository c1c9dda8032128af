"""A small Chrome DevTools Protocol client for the report tests: headless Chromium, offline.

Starts Debian's ``chromium`` with a fresh profile and a remote-debugging port, talks to one page
over a websocket (tornado's client, which ipykernel already brings), and collects console
errors, uncaught exceptions and every network request the page makes.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM_FLAGS", "Browser", "find_chromium"]

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-port=0",
    "--window-size=1200,1600",
)


def find_chromium() -> str | None:
    """Path of a Chromium binary (``$SATLINK_CHROMIUM``, chromium, chromium-browser), or None."""
    for name in (os.environ.get("SATLINK_CHROMIUM"), "chromium", "chromium-browser"):
        if name and (path := shutil.which(name)):
            return path
    return None


class Browser:
    """``with Browser(binary) as b: b.open(url); b.evaluate("1 + 1")``."""

    def __init__(self, binary: str, timeout_s: float = 60.0) -> None:
        self.binary = binary
        self.timeout_s = timeout_s
        self.console_errors: list[str] = []
        self.exceptions: list[str] = []
        self.requests: list[str] = []
        self._id = 0
        self._events: list[dict[str, Any]] = []

    # -- process ---------------------------------------------------------------------------------
    def __enter__(self) -> Browser:
        self._profile = tempfile.mkdtemp(prefix="satlink-chromium-")
        self._proc = subprocess.Popen(
            [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout_s
        while not port_file.is_file() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self._proc.poll() is not None:
                self.__exit__(None, None, None)
                raise RuntimeError("chromium did not open its debugging port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.load(r)
        page = next(t for t in targets if t.get("type") == "page")
        self._loop = asyncio.new_event_loop()
        self._ws = self._loop.run_until_complete(self._connect(page["webSocketDebuggerUrl"]))
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable")
        return self

    def __exit__(self, *exc: object) -> None:
        if getattr(self, "_ws", None) is not None:
            self._ws.close()
        if getattr(self, "_loop", None) is not None:
            self._loop.close()
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    async def _connect(self, url: str):
        from tornado.websocket import websocket_connect

        return await websocket_connect(url, max_message_size=256 << 20)

    # -- protocol --------------------------------------------------------------------------------
    def _note(self, event: dict[str, Any]) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.console_errors.append(
                " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            )
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.exceptions.append(
                details.get("exception", {}).get("description") or details.get("text", "")
            )
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.console_errors.append(params["entry"].get("text", ""))
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        self._events.append(event)

    async def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._id += 1
        my_id = self._id
        await self._ws.write_message(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = await asyncio.wait_for(self._ws.read_message(), self.timeout_s)
            if msg is None:
                raise RuntimeError("chromium closed the connection")
            data = json.loads(msg)
            if data.get("id") == my_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data.get("result", {})
            self._note(data)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer (events meanwhile are recorded)."""
        return self._loop.run_until_complete(self._call(method, params))

    def wait_for(self, method: str) -> dict[str, Any]:
        """Wait for the next event ``method`` (one seen before the call counts)."""

        async def wait() -> dict[str, Any]:
            while True:
                for i, event in enumerate(self._events):
                    if event.get("method") == method:
                        del self._events[i]
                        return event
                msg = await asyncio.wait_for(self._ws.read_message(), self.timeout_s)
                if msg is None:
                    raise RuntimeError("chromium closed the connection")
                self._note(json.loads(msg))

        return self._loop.run_until_complete(wait())

    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self._events.clear()
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def press(self, key: str, code: int) -> None:
        """A real key press (down and up) on the focused element, e.g. ``("ArrowRight", 39)``."""
        for kind in ("keyDown", "keyUp"):
            self.call(
                "Input.dispatchKeyEvent",
                type=kind,
                key=key,
                code=key,
                windowsVirtualKeyCode=code,
                nativeVirtualKeyCode=code,
            )

    def screenshot(self) -> bytes:
        import base64

        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
