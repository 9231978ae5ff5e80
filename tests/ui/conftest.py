"""Fixtures of the console's browser tests: a real `meridian demo` (a real server with the
example estate, simulated agents and one real agent running a real task), Debian's
Chromium driven by Playwright (never a downloaded browser), and the admin token."""

import json
import os
import pathlib
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request

import pytest
from playwright.sync_api import sync_playwright

ROOT = pathlib.Path(__file__).resolve().parents[2]
MERIDIAN = pathlib.Path(os.environ.get("MERIDIAN_BIN", ROOT / "target/debug/meridian"))
CHROMIUM = os.environ.get("MERIDIAN_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = pathlib.Path(os.environ.get("MERIDIAN_SCREENSHOTS", ROOT / "target/ui-screenshots"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url, data_dir, token, process):
        self.url = url
        self.data_dir = data_dir
        self.token = token
        self.process = process
        self.ctx = ssl.create_default_context(cafile=str(data_dir / "ca.crt"))

    def api(self, method, path, body=None, token=None, content_type="application/json"):
        """The API as a client other than the browser; returns (status, JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + (token or self.token))
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as r:
                return r.status, decode(r.read())
        except urllib.error.HTTPError as e:
            return e.code, decode(e.read())

    def cli(self, *args):
        env = dict(os.environ, MERIDIAN_SERVER=self.url, MERIDIAN_TOKEN=self.token,
                   MERIDIAN_CA_FILE=str(self.data_dir / "ca.crt"))
        return subprocess.run([str(MERIDIAN), *args], env=env, capture_output=True, text=True, timeout=60)


def decode(body):
    try:
        return json.loads(body or b"null")
    except ValueError:
        return body.decode(errors="replace")


def wait_for(what, check, timeout=60):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - what was seen is reported below
            last = e
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last seen: {last!r}")


@pytest.fixture(scope="session")
def server():
    assert MERIDIAN.exists(), f"{MERIDIAN} is missing: build it first (cargo build -p cli)"
    data_dir = pathlib.Path(tempfile.mkdtemp(prefix="meridian-ui-"))
    port = free_port()
    log = open(data_dir.parent / (data_dir.name + ".log"), "w")
    process = subprocess.Popen(
        [str(MERIDIAN), "demo", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"https://127.0.0.1:{port}"
    token_file = data_dir / "admin.token"
    ok = False
    try:
        wait_for("the demo's admin token", lambda: token_file.exists() and token_file.read_text().strip())
        s = Server(url, data_dir, token_file.read_text().strip(), process)
        wait_for("the server to be ready", lambda: s.api("GET", "/readyz")[0] == 200)
        # The example estate is applied and placed, and the real agent runs its task.
        wait_for("local-clock running", lambda: any(
            (a.get("status") or {}).get("phase") == "running"
            for a in s.api("GET", "/apis/meridian.dev/v1/namespaces/default/allocations")[1]["items"]
            if a["spec"]["workload"] == "local-clock"))
        yield s
        ok = True
    finally:
        # Stopped and removed however the set-up or the tests ended; the server's log is
        # kept (and named) when the set-up failed.
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)
        if ok:
            os.unlink(log.name)
        else:
            print(f"the demo server's log: {log.name}")


@pytest.fixture(scope="session")
def browser():
    assert pathlib.Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"])
        yield b
        b.close()


def new_page(browser, server, color_scheme="light"):
    context = browser.new_context(ignore_https_errors=True, base_url=server.url,
                                  color_scheme=color_scheme, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    return context.new_page()


def sign_in(page, token):
    page.goto("/ui/login")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui")


def shot(page, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
