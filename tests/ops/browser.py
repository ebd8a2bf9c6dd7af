"""Headless Chromium driven over the Chrome DevTools Protocol (a websocket, via aiohttp).

Just enough of CDP for page tests: navigate, wait for the page load, type into a field,
click an element with real mouse events at its position, read the DOM, screenshot.
Launches Debian's ``chromium`` (``apt-get install chromium``); :func:`find_chromium`
returns None when it is not installed so tests can skip with a reason.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = [
    "--headless",
    "--no-sandbox",  # tests run as root in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class CdpError(Exception):
    pass


class Page:
    """One browser tab: commands answered by id, events queued for ``wait_event``."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self._pending:
                future = self._pending.pop(data["id"])
                if "error" in data:
                    future.set_exception(CdpError(str(data["error"])))
                else:
                    future.set_result(data.get("result", {}))
            elif "method" in data:
                await self._events.put((data["method"], data.get("params", {})))

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        await self._ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        async with asyncio.timeout(15):
            return await future

    def clear_events(self) -> None:
        while not self._events.empty():
            self._events.get_nowait()

    async def wait_event(self, method: str, timeout: float = 15.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                name, params = await self._events.get()
                if name == method:
                    return params

    async def goto(self, url: str) -> None:
        self.clear_events()
        await self.send("Page.navigate", url=url)
        await self.wait_event("Page.loadEventFired")

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise CdpError(str(result["exceptionDetails"]))
        return result["result"].get("value")

    async def url(self) -> str:
        return str(await self.evaluate("location.href"))

    async def text(self, selector: str = "body") -> str:
        return str(await self.evaluate(f"document.querySelector({json.dumps(selector)}).innerText"))

    async def exists(self, selector: str) -> bool:
        return bool(await self.evaluate(f"!!document.querySelector({json.dumps(selector)})"))

    async def type_into(self, selector: str, text: str) -> None:
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        await self.send("Input.insertText", text=text)

    async def click(self, selector: str, *, navigates: bool = True) -> None:
        """A real left click at the element's centre (scrolled into view first)."""
        box = await self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        if box is None:
            raise CdpError(f"no element matches {selector!r}")
        x, y = box
        self.clear_events()
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
        if navigates:
            await self.wait_event("Page.loadEventFired")

    async def screenshot(self, path: Path) -> None:
        data = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(data["data"]))


class Chromium:
    """``async with Chromium() as page:`` a fresh headless browser with one tab."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self._profile = tempfile.mkdtemp(prefix="replyline-chromium-")
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.page: Page | None = None

    async def __aenter__(self) -> Page:
        self._proc = await asyncio.create_subprocess_exec(
            self.executable,
            *FLAGS,
            f"--user-data-dir={self._profile}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            port = await self._devtools_port()
        self._http = aiohttp.ClientSession()
        async with self._http.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json(content_type=None)
        target = next(t for t in targets if t.get("type") == "page")
        self._ws = await self._http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        self.page = Page(self._ws)
        await self.page.send("Page.enable")
        await self.page.send("Runtime.enable")
        return self.page

    async def _devtools_port(self) -> int:
        assert self._proc is not None and self._proc.stderr is not None
        seen = []
        while line := (await self._proc.stderr.readline()).decode(errors="replace"):
            seen.append(line)
            match = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if match:
                # Keep reading stderr so Chromium never blocks on a full pipe.
                self._drain = asyncio.create_task(_drain(self._proc.stderr))
                return int(match.group(1))
        raise CdpError("chromium exited before DevTools listened:\n" + "".join(seen[-20:]))

    async def __aexit__(self, *exc: object) -> None:
        if self.page is not None:
            self.page._reader.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                async with asyncio.timeout(10):
                    await self._proc.wait()
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        if self._drain is not None:
            await asyncio.gather(self._drain, return_exceptions=True)
        await asyncio.to_thread(shutil.rmtree, self._profile, True)


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass
