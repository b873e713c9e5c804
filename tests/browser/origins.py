#!/usr/bin/env python3
"""One browser origin per studio (docs/security.md, "Browser origins"), in a real browser
(headless Chromium, driven by Playwright) against the local run: Carol opens two
JupyterLab studios, A and B, each through its connect link, in one browser (she holds
both cookies). B holds a file only B has. Then a page in A's origin tries to reach B
with Carol's credentials and gets nothing of B:

- `fetch(<B>/api/contents/…, {credentials: 'include'})`: the browser refuses to give A
  the answer (B's origin sends no CORS headers): a TypeError, no content;
- the same with `mode: 'no-cors'`: an opaque answer (type `opaque`, status 0, no body);
- a POST to B's kernels API (`no-cors`, credentials): B's agent refuses another origin
  (403, docs/agent.md), so B has no new kernel afterwards;
- a WebSocket to one of B's kernels: B's agent refuses the upgrade, A's page sees it fail;
- the old path form, `fetch('/connect/<B>/…')` in A's origin, goes to A (the relay routes
  by Host only) and finds no file of B's.

Run by infra/test.sh (`python tests/browser/origins.py`); needs Debian's chromium.
"""

import json
import os
import sys
import time

from playwright.sync_api import sync_playwright

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "infra"))
from localrun import local_run, request, token, wait  # noqa: E402
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

SECRET = "only in studio B"

# What a page in A's origin can learn of B, each attempt's outcome as text.
FROM_A = """
async ([b, bId, bKernel]) => {
  const out = {};
  try {
    const r = await fetch(b + 'api/contents/b-secret.txt', {credentials: 'include'});
    out.cors = 'read ' + r.status + ' ' + (await r.text());
  } catch (e) {
    out.cors = 'refused: ' + e.name;
  }
  const opaque = await fetch(b + 'api/contents/b-secret.txt', {credentials: 'include', mode: 'no-cors'});
  out.noCors = opaque.type + ' ' + opaque.status + ' ' + JSON.stringify(await opaque.text());
  const post = await fetch(b + 'api/kernels', {method: 'POST', credentials: 'include', mode: 'no-cors', body: '{}'});
  out.post = post.type + ' ' + post.status;
  out.websocket = await new Promise((resolve) => {
    const ws = new WebSocket(b.replace(/^http/, 'ws') + 'api/kernels/' + bKernel + '/channels');
    ws.onopen = () => { resolve('opened'); ws.close(); };
    ws.onerror = () => resolve('failed');
    setTimeout(() => resolve('no answer in 10 s'), 10000);
  });
  const old = await fetch('/connect/' + bId + '/api/contents/b-secret.txt', {credentials: 'include'});
  const text = await old.text();
  out.oldPath = old.status + (text.includes('only in studio B') ? ' with B\\'s file' : ' without B\\'s file');
  return out;
}
"""

# In B's own origin: a kernel, a file, and how many kernels there are.
IN_B = """
async (secret) => {
  await fetch('api/contents/b-secret.txt', {method: 'PUT', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({type: 'file', format: 'text', content: secret})});
  const k = await (await fetch('api/kernels', {method: 'POST', body: '{}'})).json();
  return k.id;
}
"""
KERNELS = "async () => (await (await fetch('api/kernels')).json()).length"


def main():
    with local_run({"STUDIOS_LOCAL_JOB_DELAY_MS": "200"}) as (port, _):
        run(f"http://127.0.0.1:{port}")


def run(base):
    bob, carol = token("bob"), token("carol")

    def call(user, method, path, body=None):
        status, text = request(base, user, method, path, body)
        return status, json.loads(text) if text else None

    _, w = call(bob, "GET", "/workspaces")
    ws = next(x["id"] for x in w["workspaces"] if x["name"] == "demo")
    _, ces = call(bob, "GET", f"/workspaces/{ws}/compute-envs")
    ce = ces["computeEnvs"][0]["id"]

    def studio(name):
        status, st = call(bob, "POST", f"/workspaces/{ws}/studios?autoStart=true",
                          {"name": f"{name} {int(time.time())}", "computeEnvId": ce,
                           "template": {"kind": "jupyter"}})
        assert status == 202, st
        return st["id"]

    def ready(sid):
        wait(f"{sid} ready", lambda: (call(bob, "GET", f"/workspaces/{ws}/studios/{sid}")[1]
                                      .get("session") or {}).get("ready"), 240, 0.2)

    def link(sid):
        status, body = call(carol, "POST", f"/workspaces/{ws}/studios/{sid}/connect")
        assert status == 200, body
        return body["url"]

    a, b = studio("origin A"), studio("origin B")
    ready(a)
    ready(b)
    a_url, b_url = link(a), link(b)
    a_origin, b_origin = a_url.split("?")[0], b_url.split("?")[0]
    assert a_origin.startswith(f"http://{a}.localhost:"), a_origin
    assert b_origin.startswith(f"http://{b}.localhost:"), b_origin
    results = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            context = browser.new_context()
            page_b = context.new_page()
            page_b.goto(b_url)
            page_b.wait_for_selector("#jp-main-dock-panel", timeout=60000)
            b_kernel = page_b.evaluate(IN_B, SECRET)
            kernels_before = page_b.evaluate(KERNELS)
            page_a = context.new_page()
            page_a.goto(a_url)
            page_a.wait_for_selector("#jp-main-dock-panel", timeout=60000)
            assert page_a.url.startswith(a_origin), page_a.url
            results = page_a.evaluate(FROM_A, [b_origin, b, b_kernel])
            results["B's kernels before, after"] = [kernels_before, page_b.evaluate(KERNELS)]
            # B itself still reads its file with its own cookie.
            results["B reads its own file"] = page_b.evaluate(
                "async () => (await (await fetch('api/contents/b-secret.txt')).json()).content")
        finally:
            browser.close()
    print(json.dumps(results))
    assert results["cors"].startswith("refused: TypeError"), results
    assert results["noCors"] == 'opaque 0 ""', results
    assert results["post"] == "opaque 0", results
    assert results["websocket"] == "failed", results
    assert results["oldPath"] == "404 without B's file", results
    before, after = results["B's kernels before, after"]
    assert before == after, results
    assert results["B reads its own file"] == SECRET, results
    print("browser origins test passed")


if __name__ == "__main__":
    sys.exit(main())
