#!/usr/bin/env python3
"""Connect in a real browser (headless Chromium, driven by Playwright) against the local
run (infra/run-local.sh on a free port), as README says a user would:

- Carol (connect) opens her connect link: JupyterLab loads through the local run's
  /connect/<studio>/ route and the session's agent; in that page a kernel executes 1+1
  over a WebSocket and answers 2.
- Refused: the studio without a link (401), the same link again (403, used), a link of
  another studio opened at this one (403), and Carol once she is demoted to view
  (403 within a report interval).

Run by infra/test.sh (`python tests/browser/connect.py`); needs Debian's chromium.
"""

import json
import os
import sys
import time

from playwright.sync_api import sync_playwright

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "infra"))
from localrun import local_run, request, token  # noqa: E402
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


class Api:
    def __init__(self, base):
        self.base = base

    def call(self, bearer, method, path, body=None):
        status, text = request(self.base, bearer, method, path, body)
        return status, json.loads(text) if text else None


def wait(what, predicate, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise SystemExit(f"timed out waiting for {what}")


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


def main():
    with local_run({"STUDIOS_LOCAL_JOB_DELAY_MS": "200"}) as (port, _):
        run(Api(f"http://127.0.0.1:{port}"))


def run(api):
    alice, bob, carol = token("alice"), token("bob"), token("carol")
    _, w = api.call(bob, "GET", "/workspaces")
    ws = next(x["id"] for x in w["workspaces"] if x["name"] == "demo")
    _, ces = api.call(bob, "GET", f"/workspaces/{ws}/compute-envs")
    ce = ces["computeEnvs"][0]["id"]

    def running_studio(name, kind):
        status, st = api.call(bob, "POST", f"/workspaces/{ws}/studios?autoStart=true",
                              {"name": name, "computeEnvId": ce, "template": {"kind": kind}})
        assert status == 202, st
        wait(f"{name} ready", lambda: (api.call(bob, "GET", f"/workspaces/{ws}/studios/{st['id']}")[1]
                                       .get("session") or {}).get("ready"))
        return st["id"]

    def link(studio, user=carol):
        status, body = api.call(user, "POST", f"/workspaces/{ws}/studios/{studio}/connect")
        assert status == 200, body
        return body["url"]

    lab = running_studio(f"browser {int(time.time())}", "jupyter")
    other = running_studio(f"other {int(time.time())}", "rstudio")
    url = link(lab)
    studio_url = url.split("?")[0]
    results = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_context().new_page()
            started = time.time()
            page.goto(url)
            page.wait_for_selector("#jp-main-dock-panel", timeout=60000)
            results["lab loaded (s)"] = round(time.time() - started, 2)
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
        finally:
            browser.close()
    print(json.dumps(results))
    expected = {"no link": 401, "used link": 403, "other studio's link": 403}
    for k, v in expected.items():
        assert results[k] == v, (k, results)
    print("browser connect test passed")


if __name__ == "__main__":
    sys.exit(main())
