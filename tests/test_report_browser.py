"""The HTML report in a real headless Chromium: no console errors, and the videos play.

Chromium is driven through the DevTools protocol over a websocket: every
exception, console error and failed resource load of the page is collected,
and each <video> element is asked whether it decoded its frames. The harness
itself is checked on a broken page first, so a silent harness cannot pass.

`make test` installs Chromium when missing (scripts/ensure-chromium.sh). Without
it the test fails when running as root (it could have been installed) and is
skipped, loudly, otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_report import make_batch, write_mp4

from evals.report import write_report

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    override = os.environ.get("VLM_TEACHER_CHROMIUM")
    if override:
        return override
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


class Browser:
    """A headless Chromium with one page, spoken to over the DevTools protocol."""

    def __init__(self, binary: str) -> None:
        import websocket

        self._profile = tempfile.mkdtemp(prefix="vlm-teacher-chromium-")
        self._proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--autoplay-policy=no-user-gesture-required",
                "--window-size=1280,900",
                f"--user-data-dir={self._profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._endpoint: str | None = None
        ready = threading.Event()
        # Chromium writes a lot to stderr; drain it so it never blocks on a full pipe.
        threading.Thread(target=self._read_stderr, args=(ready,), daemon=True).start()
        if not ready.wait(60) or self._endpoint is None:
            self.close()
            raise RuntimeError("Chromium did not open its DevTools endpoint within 60 s")
        port = self._endpoint.split(":")[2].split("/")[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            targets = json.load(resp)
        page = next(t for t in targets if t["type"] == "page")
        self._ws = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True
        )
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable")

    def _read_stderr(self, ready: threading.Event) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            match = re.search(r"DevTools listening on (ws://\S+)", line)
            if match and self._endpoint is None:
                self._endpoint = match.group(1)
                ready.set()
        ready.set()  # the process ended without an endpoint

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        self._ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def open(self, url: str, settle_s: float = 0.5) -> None:
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + 30
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not finish loading in 30 s")
            self.evaluate("1")  # pumps the event stream
            time.sleep(0.05)
        time.sleep(settle_s)

    def wait_for_videos(self, timeout_s: float = 30) -> list[dict[str, Any]]:
        """Every video's state once each has decoded a frame or failed (or at timeout)."""
        probe = (
            "[...document.querySelectorAll('video')].map(v => ({src: v.getAttribute('src'),"
            " ready: v.readyState, width: v.videoWidth, error: v.error && v.error.code,"
            " duration: v.duration}))"
        )
        deadline = time.monotonic() + timeout_s
        while True:
            videos = self.evaluate(probe)
            settled = all(v["ready"] >= 2 or v["error"] for v in videos)
            if settled or time.monotonic() > deadline:
                return videos
            time.sleep(0.1)

    def errors(self) -> list[str]:
        """Exceptions, console errors and failed loads the page has reported so far."""
        self.evaluate("1")
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(params["exceptionDetails"].get("exception", {}).get("description", ""))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(
                    " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
                )
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                found.append(f"{entry['text']} {entry.get('url', '')}".strip())
        return found

    def close(self) -> None:
        if getattr(self, "_ws", None) is not None:
            self._ws.close()
        self._proc.kill()
        self._proc.wait(timeout=10)
        shutil.rmtree(self._profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    binary = find_chromium()
    if binary is None:
        if os.geteuid() == 0:
            pytest.fail("Chromium is missing: run scripts/ensure-chromium.sh (make test does)")
        pytest.skip(
            "SKIPPED LOUDLY: no Chromium and not root, so the HTML report was NOT checked in a "
            "browser. Install Debian's `chromium` package to run this test."
        )
    instance = Browser(binary)
    try:
        yield instance
    finally:
        instance.close()


def test_harness_sees_script_errors_and_broken_videos(browser: Browser, tmp_path: Path) -> None:
    write_mp4(tmp_path / "good.mp4", seed=1)
    (tmp_path / "broken.html").write_text(
        "<!doctype html><html><head><link rel='icon' href='data:,'></head><body>"
        "<video src='good.mp4' muted autoplay></video>"
        "<video src='missing.mp4' muted autoplay></video>"
        "<script>console.error('deliberate'); undefinedFunction();</script></body></html>"
    )
    browser.events.clear()
    browser.open((tmp_path / "broken.html").as_uri())
    videos = browser.wait_for_videos()
    errors = browser.errors()
    assert any("undefinedFunction" in e for e in errors)
    assert any("deliberate" in e for e in errors)
    assert any("missing.mp4" in e or "ERR_FILE_NOT_FOUND" in e for e in errors)
    by_src = {v["src"]: v for v in videos}
    assert by_src["good.mp4"]["ready"] >= 2 and by_src["good.mp4"]["width"] == 32
    assert by_src["missing.mp4"]["error"]


def test_report_page_opens_without_errors_and_shows_the_videos(
    browser: Browser, tmp_path: Path
) -> None:
    records = make_batch(tmp_path)
    _, html_path = write_report(tmp_path)
    browser.events.clear()
    browser.open(html_path.as_uri())
    videos = browser.wait_for_videos()
    assert browser.errors() == []
    ok = [r for r in records if r.status == "ok"]
    assert len(videos) == len(ok)
    for video in videos:
        assert video["error"] is None, video
        assert video["ready"] >= 2 and video["width"] == 32, video  # a decoded frame
        assert video["duration"] > 0
    # Side by side: the cells of one instance share a row.
    tops = browser.evaluate(
        "[...document.querySelectorAll('#i1 .cell')].map(c => c.getBoundingClientRect().top)"
    )
    assert len(tops) == 3 and len(set(tops)) == 1
    title = browser.evaluate("document.title")
    assert title == "vlm-teacher eval: mini:test"
