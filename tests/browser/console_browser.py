#!/usr/bin/env python3
"""Drives the readgate web console in real headless Chromium over the DevTools protocol.

Standard library + websocket-client (tests/requirements.txt). Started by
tests/console_browser.rs with a running readgate that holds one study; it can also be run
by hand against any readgate:

    python3 tests/browser/console_browser.py --url http://127.0.0.1:8080 \
        --user admin --password ... --study <Study Instance UID> \
        --expect 山田 --expect 検査目的 [--shots docs/]

Steps: open / (redirected to the login page), log in, see the held study and its reason
in Japanese on the held list, open the study, release it with a written justification,
wait until its page says it was forwarded. With --shots, saves PNGs of the held list,
the study page, the accountability page and the audit page. Prints one JSON line.
"""

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request


def check(ok, message):
    """An assertion that holds under PYTHONOPTIMIZE too (assert statements vanish)."""
    if not ok:
        raise AssertionError(message)

import websocket  # websocket-client


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("console_browser: no chromium found (apt-get install chromium)")


class Browser:
    def __init__(self, width=1280, height=900):
        self.profile = tempfile.mkdtemp(prefix="readgate-chromium-")
        args = [
            find_chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
            f"--window-size={width},{height}",
            f"--user-data-dir={self.profile}",
            "about:blank",
        ]
        # Chromium keeps its singleton socket in a directory of its own under TMPDIR
        # (org.chromium.Chromium.*) and leaves it there: inside the profile, it goes
        # with the profile when the browser is closed.
        env = dict(os.environ, TMPDIR=self.profile)
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.time() + 30
        while not os.path.exists(port_file) or os.path.getsize(port_file) == 0:
            if self.proc.poll() is not None or time.time() > deadline:
                self.close()
                sys.exit("console_browser: chromium did not start")
            time.sleep(0.1)
        port = int(open(port_file).read().split()[0])
        pages = []
        while not pages:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if time.time() > deadline:
                sys.exit("console_browser: no page target")
            time.sleep(0.1)
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=30)
        self.next_id = 0
        self.events = []
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def call(self, method, **params):
        self.next_id += 1
        my = self.next_id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_load(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for i, e in enumerate(self.events):
                if e.get("method") == "Page.loadEventFired":
                    del self.events[: i + 1]
                    return
            self.ws.settimeout(max(0.1, deadline - time.time()))
            try:
                self.events.append(json.loads(self.ws.recv()))
            except websocket.WebSocketTimeoutException:
                break
        raise RuntimeError("page did not load")

    def goto(self, url):
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_load()

    def js(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"script failed: {r['exceptionDetails']}")
        return r.get("result", {}).get("value")

    def submit(self, expr):
        """Runs a script that submits a form, and waits for the next page."""
        self.events.clear()
        self.js(expr)
        self.wait_load()

    def text(self):
        return self.js("document.body.innerText")

    def path(self):
        return self.js("location.pathname")

    def screenshot(self, path):
        height = self.js("Math.max(document.body.scrollHeight, 600)")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=1280,
            height=min(int(height), 2400),
            deviceScaleFactor=1,
            mobile=False,
        )
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        self.call(
            "Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False
        )

    def close(self):
        try:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def q(s):
    return json.dumps(s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--study", required=True)
    ap.add_argument("--expect", action="append", default=[])
    ap.add_argument("--justification", default="救急外来：依頼医に電話で検査目的を確認済み")
    ap.add_argument("--shots")
    a = ap.parse_args()
    base = a.url.rstrip("/")
    b = Browser()
    result = {"steps": []}
    try:
        b.goto(base + "/")
        check(b.path() == "/login", f"not redirected to the login page: {b.path()}")
        result["steps"].append("redirected to /login")
        b.submit(
            f"document.querySelector('input[name=user]').value={q(a.user)};"
            f"document.querySelector('input[name=password]').value={q(a.password)};"
            "document.querySelector('form').submit()"
        )
        check(b.path() == "/", f"login failed: {b.text()[:300]}")
        result["steps"].append("logged in")
        text = b.text()
        for e in a.expect:
            check(e in text, f"{e!r} not on the held list: {text[:1000]}")
        result["steps"].append("held list shows " + ", ".join(a.expect))
        if a.shots:
            b.screenshot(os.path.join(a.shots, "console-held.png"))
        # Open the study from the list.
        b.submit(f"document.querySelector('a[href=\"/studies/{a.study}\"]').click()")
        check(b.path() == f"/studies/{a.study}", b.path())
        result["steps"].append("study page")
        b.submit(
            f"document.querySelector('textarea[name=justification]').value={q(a.justification)};"
            "document.querySelector('form[action$=\"/release\"]').submit()"
        )
        result["steps"].append("released with a justification")
        deadline = time.time() + 45
        while "送信完了" not in b.text():
            if time.time() > deadline:
                raise AssertionError("study page never showed it forwarded: " + b.text()[:1500])
            time.sleep(1)
            b.goto(f"{base}/studies/{a.study}")
        check("RELEASED_OVERRIDE" in b.text(), '"RELEASED_OVERRIDE" in b.text()')
        result["steps"].append("study page shows forwarded (送信完了)")
        if a.shots:
            b.screenshot(os.path.join(a.shots, "console-study.png"))
            b.goto(base + "/accountability")
            b.screenshot(os.path.join(a.shots, "console-accountability.png"))
            b.goto(base + "/audit")
            check("改ざんされていません" in b.text(), '"改ざんされていません" in b.text()')
            b.screenshot(os.path.join(a.shots, "console-audit.png"))
            b.goto(base + "/queue")
            b.screenshot(os.path.join(a.shots, "console-queue.png"))
        result["ok"] = True
    except (AssertionError, RuntimeError) as e:
        result["ok"] = False
        result["error"] = str(e)
    finally:
        b.close()
    print(json.dumps(result, ensure_ascii=False))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
