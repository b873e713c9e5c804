#!/usr/bin/env python3
"""Connect in a real browser (headless Chromium, driven by Playwright) against the local
run (infra/run-local.sh on a free port), as README says a user would:

- Carol (connect) opens her connect link: JupyterLab loads through the local run's
  relay at the studio's own origin (http://<studio>.localhost:<port>/) and the session's agent; in that page a kernel executes 1+1
  over a WebSocket and answers 2.
- Refused: the studio without a link (401), the same link again (403, used), a link of
  another studio opened at this one (403), and Carol once she is demoted to view
  (403 within a report interval).
- JupyterLab saves a file in place (no atomic writing: agent/src/ide.rs): a directory
  where its atomic writing would put its backup copy does not make the save fail.
- The other IDEs the local run installs, each opened through a connect link until its
  UI is drawn, with a screenshot in the folder printed at the end: code-server (its
  workbench) and Xpra (its HTML5 client's window canvas, painted), two Xpra studios at
  once (each its own X display); neither IDE, nor anything it started, listens on a TCP
  port (their unix sockets only; JupyterLab's loopback port shows the check sees one);
  once the local run stops, no process of its sessions is left (Xvfb included). For each of jupyter, vscode and xpra: the time from
  the studio's `session.ready` (as the API reports it, polled every 0.1 s) to the UI
  drawn (docs/performance.md).

Run by infra/test.sh (`python tests/browser/connect.py`); needs Debian's chromium.
"""

import glob
import json
import os
import sys
import tempfile
import time

from playwright.sync_api import sync_playwright

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "infra"))
from localrun import local_run, request, token, wait  # noqa: E402
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


class Api:
    def __init__(self, base):
        self.base = base

    def call(self, bearer, method, path, body=None):
        status, text = request(self.base, bearer, method, path, body)
        return status, json.loads(text) if text else None


# JupyterLab drawn: its main panel is there and its splash screen gone.
JUPYTERLAB_DRAWN = """
() => !!document.querySelector('#jp-main-dock-panel') && !document.getElementById('jupyterlab-splash')
"""

# The Xpra HTML5 client draws each X window into a <canvas> in #screen: drawn once a
# window's canvas has painted pixels.
XPRA_WINDOW_PAINTED = """
() => [...document.querySelectorAll('#screen canvas')].some(c => {
  if (c.width < 50 || c.height < 50) return false;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  for (let i = 3; i < d.length; i += 4 * 97) if (d[i] !== 0) return true;
  return false;
})
"""


KERNEL_1_PLUS_1 = """
async () => {
  const base = location.pathname.replace(/lab.*$/, '');
  const k = await (await fetch(base + 'api/kernels', {method: 'POST', body: '{}'})).json();
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${proto}://${location.host}${base}api/kernels/${k.id}/channels`);
  const msgId = 'studios-test-' + Date.now();
  return await new Promise((resolve, reject) => {
    setTimeout(() => reject(new Error('no execute_result in 30 s')), 30000);
    ws.onerror = () => reject(new Error('WebSocket failed'));
    ws.onopen = () => ws.send(JSON.stringify({
      header: {msg_id: msgId, username: 'test', session: 'test', msg_type: 'execute_request', version: '5.3'},
      parent_header: {}, metadata: {}, channel: 'shell',
      content: {code: '1+1', silent: false, store_history: false, user_expressions: {}, allow_stdin: false},
    }));
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.msg_type === 'execute_result' && m.parent_header.msg_id === msgId) {
        resolve(m.content.data['text/plain']);
      }
    };
  });
}
"""


def tcp_listeners(workspace):
    """The processes working in `workspace` (the IDE and its children) and the TCP ports
    they listen on, from /proc: ([pid, …], [(pid, command), …])."""
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    listening.add(fields[9])  # the socket's inode
    pids, found = [], []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if not os.readlink(f"/proc/{pid}/cwd").startswith(workspace):
                continue
            pids.append(pid)
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in listening:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        found.append((pid, f.read().replace(b"\0", b" ").decode()[:80]))
        except OSError:
            continue
    return pids, found


def main():
    sessions = tempfile.mkdtemp(prefix="studios-browser-sessions-")
    settings = {"STUDIOS_LOCAL_JOB_DELAY_MS": "200", "STUDIOS_LOCAL_SESSIONS_DIR": sessions}
    with local_run(settings) as (port, _):
        run(Api(f"http://127.0.0.1:{port}"), sessions)
    # Stopping the local run stops its sessions' IDEs and all they started (Xpra's Xvfb
    # runs in a process group of its own).
    deadline = time.time() + 20
    while live_processes_in(sessions) and time.time() < deadline:
        time.sleep(0.5)
    left = live_processes_in(sessions)
    assert not left, f"still running after the local run stopped: {left}"
    print("no IDE process left after the local run stopped")


def live_processes_in(root):
    """Processes (not zombies) working under `root`: pid and command."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if not os.readlink(f"/proc/{pid}/cwd").startswith(root):
                continue
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                found.append((pid, f.read().replace(b"\0", b" ").decode()[:80]))
        except OSError:
            continue
    return found


def run(api, sessions):
    alice, bob, carol = token("alice"), token("bob"), token("carol")
    _, w = api.call(bob, "GET", "/workspaces")
    ws = next(x["id"] for x in w["workspaces"] if x["name"] == "demo")
    _, ces = api.call(bob, "GET", f"/workspaces/{ws}/compute-envs")
    ce = ces["computeEnvs"][0]["id"]

    def running_studio(name, kind):
        """Starts a studio and waits until its session is ready; (id, when ready)."""
        status, st = api.call(bob, "POST", f"/workspaces/{ws}/studios?autoStart=true",
                              {"name": name, "computeEnvId": ce, "template": {"kind": kind}})
        assert status == 202, st
        wait(f"{name} ready", lambda: (api.call(bob, "GET", f"/workspaces/{ws}/studios/{st['id']}")[1]
                                       .get("session") or {}).get("ready"), 240, 0.1)
        return st["id"], time.time()

    def link(studio, user=carol):
        status, body = api.call(user, "POST", f"/workspaces/{ws}/studios/{studio}/connect")
        assert status == 200, body
        return body["url"]

    shots = os.environ.get("STUDIOS_SCREENSHOTS") or tempfile.mkdtemp(prefix="studios-screenshots-")
    os.makedirs(shots, exist_ok=True)
    ready_to_drawn = {}
    results = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            lab, ready_at = running_studio(f"browser {int(time.time())}", "jupyter")
            url = link(lab)
            studio_url = url.split("?")[0]
            page = browser.new_context().new_page()
            started = time.time()
            page.goto(url)
            page.wait_for_function(JUPYTERLAB_DRAWN, timeout=60000, polling=100)
            results["lab loaded (s)"] = round(time.time() - started, 2)
            ready_to_drawn["jupyter"] = round(time.time() - ready_at, 2)
            page.screenshot(path=os.path.join(shots, "jupyter.png"))
            other, _ = running_studio(f"other {int(time.time())}", "rstudio")
            assert "studio_token" not in page.url, page.url
            assert page.url.startswith(studio_url), page.url
            started = time.time()
            results["1+1"] = page.evaluate(KERNEL_1_PLUS_1)
            results["kernel answered (s)"] = round(time.time() - started, 2)
            assert results["1+1"] == "2", results

            stranger = browser.new_context().new_page()
            results["no link"] = stranger.goto(studio_url).status
            results["used link"] = stranger.goto(url).status
            foreign = link(other).split("?")[1]
            results["other studio's link"] = stranger.goto(f"{studio_url}?{foreign}").status

            # Carol demoted to view: her cookie stops working at the agent's next report.
            status, _ = api.call(alice, "PUT", f"/workspaces/{ws}/members/carol", {"role": "view"})
            assert status == 200
            started = time.time()
            wait("revocation", lambda: page.goto(studio_url + "api/contents").status == 403, 30)
            results["revoked after (s)"] = round(time.time() - started, 2)
            api.call(alice, "PUT", f"/workspaces/{ws}/members/carol", {"role": "connect"})

            # Saving in place: a directory where atomic writing would copy the old file
            # to (`.~<name>`) makes an atomic save fail (IsADirectoryError, 500), not an
            # in-place one.
            url = link(lab)
            page = browser.new_context().new_page()
            page.goto(url)
            page.wait_for_selector("#jp-main-dock-panel", timeout=60000)
            put = """async (body) => {
              const base = location.pathname.replace(/lab.*$/, '');
              return (await fetch(base + 'api/contents/in-place.txt', {method: 'PUT', body})).status;
            }"""
            body = json.dumps({"type": "file", "format": "text", "content": "first"})
            assert page.evaluate(put, body) in (200, 201)
            saved = glob.glob(os.path.join(sessions, "*", "workspace", "in-place.txt"))
            assert len(saved) == 1, saved
            os.mkdir(os.path.join(os.path.dirname(saved[0]), ".~in-place.txt"))
            body = json.dumps({"type": "file", "format": "text", "content": "second"})
            results["save beside a .~ directory"] = page.evaluate(put, body)
            with open(saved[0]) as f:
                results["saved content"] = f.read()

            # code-server and Xpra, each through its own connect link.
            def drawn(kind, name, until):
                studio, ready_at = running_studio(f"{name} {int(time.time())}", kind)
                page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
                page.goto(link(studio))
                until(page)
                seconds = round(time.time() - ready_at, 2)
                page.screenshot(path=os.path.join(shots, f"{name}.png"))
                return studio, page, seconds

            def workbench(page):
                page.wait_for_selector(".monaco-workbench .part.activitybar", timeout=120000)
                page.wait_for_selector(".monaco-workbench .part.statusbar", timeout=120000)

            def xpra_window(page):
                page.wait_for_function(XPRA_WINDOW_PAINTED, timeout=120000, polling=100)

            def workspace(studio):
                _, st = api.call(bob, "GET", f"/workspaces/{ws}/studios/{studio}")
                return os.path.join(sessions, st["session"]["jobId"], "workspace")

            vscode, _, ready_to_drawn["vscode"] = drawn("vscode", "vscode", workbench)
            xpra, first_xpra, ready_to_drawn["xpra"] = drawn("xpra", "xpra", xpra_window)
            # A second Xpra session on the same host while the first one runs.
            xpra2, _, results["second xpra drawn (s)"] = drawn("xpra", "xpra-second", xpra_window)
            results["first xpra still painted"] = first_xpra.evaluate(XPRA_WINDOW_PAINTED)
            # Each its own X display (Xpra's log, in the agent's).
            displays = set()
            for studio in (xpra, xpra2):
                log = os.path.join(os.path.dirname(workspace(studio)), "agent.log")
                with open(log) as f:
                    displays |= {line.split("X11 display ")[1].split()[0]
                                 for line in f if "connected to X11 display" in line}
            results["xpra displays"] = sorted(displays)
            # code-server and Xpra (and what they started) listen on no TCP port: only
            # their unix sockets; JupyterLab's loopback port shows the check sees ports.
            for name, studio in (("vscode", vscode), ("xpra", xpra), ("jupyter", lab)):
                pids, ports = tcp_listeners(workspace(studio))
                assert pids, f"no process of the {name} studio found"
                results[f"{name} TCP listeners"] = len(ports)
        finally:
            browser.close()
    results["session.ready to UI drawn (s)"] = ready_to_drawn
    print(json.dumps(results))
    print(f"screenshots: {shots}")
    expected = {"no link": 401, "used link": 403, "other studio's link": 403,
                "save beside a .~ directory": 200, "saved content": "second",
                "first xpra still painted": True,
                "vscode TCP listeners": 0, "xpra TCP listeners": 0}
    for k, v in expected.items():
        assert results[k] == v, (k, results)
    assert set(ready_to_drawn) == {"jupyter", "vscode", "xpra"}, ready_to_drawn
    assert len(results["xpra displays"]) == 2, results
    assert results["jupyter TCP listeners"] >= 1, results
    print("browser connect test passed")


if __name__ == "__main__":
    sys.exit(main())
