"""Benchmark of the web console (scripts/bench-console runs it): a real `meridian server`
with N workloads and M simulated nodes; server time of the workloads list page and the
estate overview (p50/p99 over sequential requests on one keep-alive connection), the
bytes of a first load, and the time from a change in the store to Chromium showing it
(p50 over 100 changes, measured in the browser with one clock)."""

import http.client
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from playwright.sync_api import sync_playwright

MERIDIAN = os.environ["MERIDIAN_BIN"]
WORKLOADS = int(os.environ.get("BENCH_WORKLOADS", "10000"))
NODES = int(os.environ.get("BENCH_NODES", "1000"))
RUNS = int(os.environ.get("BENCH_RUNS", "200"))
CHANGES = int(os.environ.get("BENCH_CHANGES", "100"))
SITES = [("sim-de", "DE"), ("sim-fr", "FR"), ("sim-ch", "CH"), ("sim-us", "US")]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


def main():
    data = pathlib.Path(tempfile.mkdtemp(prefix="meridian-bench-console-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs = []
    log = open(data.parent / (data.name + ".log"), "w")
    server = subprocess.Popen([MERIDIAN, "server", "--insecure-http", "--listen", f"127.0.0.1:{port}",
                               "--data-dir", str(data)], stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    procs.append(server)
    try:
        token_file = data / "admin.token"
        for _ in range(300):
            if token_file.exists() and token_file.read_text().strip():
                break
            time.sleep(0.1)
        token = token_file.read_text().strip()
        env = dict(os.environ, MERIDIAN_SERVER=url, MERIDIAN_TOKEN=token)
        per_site = NODES // len(SITES)
        for site, country in SITES:
            procs.append(subprocess.Popen(
                [MERIDIAN, "sim", "nodes", "--count", str(per_site), "--site", site, "--jurisdiction", country,
                 "--prefix", site, "--heartbeat", "10s", "--concurrency", "8"],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        subprocess.run([MERIDIAN, "bench", "create", "--count", str(WORKLOADS), "--clients", "16", "--size", "512"],
                       env=env, check=True, stdout=log, stderr=subprocess.STDOUT)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

        def get(path, headers):
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            return r.status, r.read(), r

        # `bench create` returned once every workload was created; wait for every node.
        auth = {"Authorization": "Bearer " + token}
        nodes = 0
        for _ in range(600):
            _, body, _ = get("/apis/meridian.dev/v1/nodes?limit=5000", auth)
            nodes = len(json.loads(body)["items"])
            if nodes >= per_site * len(SITES):
                break
            time.sleep(1)
        workloads = WORKLOADS
        print(f"estate: {nodes} nodes, {workloads} workloads", file=sys.stderr)
        time.sleep(5)  # let the scheduler's first passes over the new fleet finish

        conn.request("POST", "/ui/login", body=f"token={token}",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        r = conn.getresponse()
        r.read()
        cookie = r.getheader("Set-Cookie").split(";")[0]
        page = {"Cookie": cookie, "Accept": "text/html"}
        rows = []
        for name, path, runs in [
            ("workloads list, first page (50 rows)", "/ui/workloads", RUNS),
            ("workloads list, a later page", None, RUNS),
            ("workloads list, label filter (no match)", "/ui/workloads?label=nothing%3Dhere", RUNS),
            ("estate overview", "/ui", max(20, RUNS // 4)),
            ("nodes list, first page (100 rows)", "/ui/nodes", RUNS),
            ("where personal data runs (every workload and allocation)", "/ui/residency", max(10, RUNS // 10)),
            ("migration plans list", "/ui/migrations", RUNS),
        ]:
            if path is None:
                _, body, _ = get("/ui/workloads?limit=50", page)
                text = body.decode()
                at = text.index('rel="next"')
                start = text.rindex('href="', 0, at) + 6
                path = text[start:text.index('"', start)].replace("&amp;", "&")
            get(path, page)  # warm
            samples = []
            size = 0
            for _ in range(runs):
                t0 = time.perf_counter()
                status, body, _ = get(path, page)
                samples.append((time.perf_counter() - t0) * 1000)
                assert status == 200, (path, status, body[:300])
                size = len(body)
            rows.append((name, runs, pct(samples, 50), pct(samples, 99), size))
        first_load = 0
        for path in ["/ui/workloads", "/ui/assets/console.css", "/ui/assets/console.js"]:
            _, body, _ = get(path, page)
            first_load += len(body)

        # Time from a change in the store to Chromium showing it, in the browser's clock.
        live = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                              "--disable-component-update", "--no-first-run"])
            context = browser.new_context(base_url=url)
            context.add_cookies([{"name": "meridian_console", "value": cookie.split("=", 1)[1],
                                  "url": url + "/ui"}])
            pg = context.new_page()
            pg.goto("/ui/workloads?limit=50")
            pg.wait_for_function("document.body.dataset.live === 'connected'", timeout=60000)
            key = pg.locator("tbody[data-live] tr").first.get_attribute("data-key")
            ns, name = key.split("/")
            for i in range(CHANGES):
                ms = pg.evaluate("""async ([ns, name, token, priority]) => {
                    const row = () => [...document.querySelectorAll('tbody[data-live] tr')]
                        .find(r => r.dataset.key === ns + '/' + name);
                    const seen = new Promise(resolve => {
                        const obs = new MutationObserver(() => {
                            const r = row();
                            if (r && r.textContent.includes(String(priority))) { obs.disconnect(); resolve(performance.now()); }
                        });
                        obs.observe(document.querySelector('tbody[data-live]'), {childList: true, subtree: true, characterData: true});
                    });
                    const t0 = performance.now();
                    const r = await fetch(`/apis/meridian.dev/v1/namespaces/${ns}/workloads/${name}`, {
                        method: 'PATCH', headers: {'Authorization': 'Bearer ' + token,
                        'Content-Type': 'application/merge-patch+json'},
                        body: JSON.stringify({spec: {priority}})});
                    if (!r.ok) throw new Error('patch ' + r.status);
                    return (await seen) - t0;
                }""", [ns, name, token, 1000 + i])
                live.append(ms)
            browser.close()

        print(f"| page | runs | p50 ms | p99 ms | bytes |")
        print(f"| --- | ---: | ---: | ---: | ---: |")
        for name, runs, p50, p99, size in rows:
            print(f"| {name} | {runs} | {p50:.1f} | {p99:.1f} | {size} |")
        print()
        print(f"first load of the workloads list (HTML + CSS + JS, uncompressed): {first_load} bytes")
        print(f"change in the store → row updated in Chromium, {CHANGES} changes: "
              f"p50 {pct(live, 50):.1f} ms, p99 {pct(live, 99):.1f} ms (includes the PATCH itself)")
    finally:
        for proc in reversed(procs):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        shutil.rmtree(data, ignore_errors=True)
        log.close()
        print(f"(the server's and agents' log: {log.name})", file=sys.stderr)


if __name__ == "__main__":
    # A SIGTERM (timeout, Ctrl-C of a wrapper) still stops the server and agents.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
