"""Real headless Chromium driven over the DevTools protocol (a websocket, no browser download): load a page
and report what a listener would meet there: console errors, the audio players and the images."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# Waits for every player's metadata (or its error) and reads the page's images; runs inside the page.
PAGE_CHECK = """
(async () => {
  const audios = [...document.querySelectorAll('audio')];
  const metadata = a => a.error ? Promise.resolve(-1) : a.readyState >= 1 ? Promise.resolve(a.duration) :
    new Promise(resolve => {
    a.addEventListener('loadedmetadata', () => resolve(a.duration), {once: true});
    a.addEventListener('error', () => resolve(-1), {once: true});
  });
  const timeout = new Promise(resolve => setTimeout(() => resolve(null), 30000));
  const durations = await Promise.race([Promise.all(audios.map(metadata)), timeout]);
  const images = [...document.querySelectorAll('img')];
  await Promise.all(images.map(i => i.decode().catch(() => null)));
  return {audio: audios.map(a => a.src), durations,
          images: images.map(i => ({src: i.src.slice(0, 40), width: i.naturalWidth})),
          missing: document.querySelectorAll('.missing').length};
})()
"""


class Chromium:
    """One headless Chromium process and a DevTools connection to its first tab."""

    def __init__(self) -> None:
        from websockets.sync.client import connect

        self.profile = tempfile.mkdtemp(prefix="voicebatch-chromium-")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--mute-audio",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--remote-debugging-port=0", f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        browser_url = self._devtools_url()
        port = urlparse(browser_url).port
        tab = self._first_tab(port)
        self.ws = connect(tab, max_size=None, proxy=None, open_timeout=30)
        self.next_id = 0
        self.events: list[dict] = []
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(method)

    def _devtools_url(self) -> str:
        """Chromium prints its DevTools address on stderr; the rest of stderr is drained so it never blocks."""
        import queue
        import threading

        lines: queue.Queue[str] = queue.Queue()

        def drain() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                lines.put(line)
            lines.put("")

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode} before DevTools listened")
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                return found.group(1)
        raise RuntimeError("chromium did not announce its DevTools address within 60 s")

    @staticmethod
    def _first_tab(port: int) -> str:
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for _ in range(100):
            tabs = json.load(opener.open(f"http://127.0.0.1:{port}/json/list", timeout=10))
            pages = [t for t in tabs if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.1)
        raise RuntimeError("chromium has no tab to drive")

    def call(self, method: str, timeout: float = 60, **params) -> dict:
        self.next_id += 1
        call_id = self.next_id
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            self.events.append(message)
            if message.get("method") == method:
                return message

    def console_errors(self) -> list[str]:
        errors = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif e.get("method") == "Runtime.exceptionThrown":
                errors.append(p["exceptionDetails"].get("text", "exception"))
            elif e.get("method") == "Log.entryAdded" and p["entry"].get("level") == "error":
                errors.append(f"{p['entry'].get('text')} {p['entry'].get('url', '')}")
        return errors

    def check_page(self, page: Path) -> dict:
        """Load `page` from file:// and return its players (as file paths), their durations, its images and
        the console errors met on the way."""
        self.events.clear()
        self.call("Page.navigate", url=page.resolve().as_uri())
        self.wait_for("Page.loadEventFired")
        result = self.call("Runtime.evaluate", expression=PAGE_CHECK, awaitPromise=True, returnByValue=True,
                           timeout=90)
        if "exceptionDetails" in result:
            raise RuntimeError(f"the page check failed: {result['exceptionDetails']}")
        found = result["result"]["value"]
        found["audio_files"] = [Path(unquote(urlparse(src).path)) for src in found["audio"]]
        found["console_errors"] = self.console_errors()
        return found

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)
