"""Starts `infra/run-local.sh` on a free port for a Python test or benchmark (the soak,
the browser test, the API fuzzing) and stops its whole process group afterwards, and the
calls they all make (a user's token, one API request, waiting for a condition):

    with local_run({"STUDIOS_LOCAL_JOB_DELAY_MS": "20"}) as (port, pid):
        status, body = request(f"http://127.0.0.1:{port}", token("bob"), "GET", "/workspaces")
"""

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_run(settings):
    port = free_port()
    env = dict(os.environ, STUDIOS_PORT=str(port), **settings)
    env.pop("AWS_ENDPOINT_URL", None)
    stack = subprocess.Popen(
        [os.path.join(ROOT, "infra/run-local.sh")], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )
    try:
        for line in stack.stdout:
            if line.startswith("ready"):
                break
        else:
            raise SystemExit("the local run did not start")
        # Keep reading its console (status events) so it never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in stack.stdout], daemon=True).start()
        yield port, stack.pid
    finally:
        os.killpg(stack.pid, signal.SIGTERM)
        stack.wait()


class _LoopbackConnection(http.client.HTTPConnection):
    """An HTTP connection to a `*.localhost` name made to 127.0.0.1, its Host header
    kept: each studio of the local run is its own origin `http://<studio>.localhost:<port>/`
    (docs/security.md), which browsers and curl resolve to the loopback themselves and
    Python's resolver may not."""

    def connect(self):
        host = self.host
        if host == "localhost" or host.endswith(".localhost"):
            self.host = "127.0.0.1"
        try:
            super().connect()
        finally:
            self.host = host


class _LoopbackHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_LoopbackConnection, req)


def localhost_opener(*handlers):
    """A urllib opener that reaches `*.localhost` URLs on the loopback."""
    return urllib.request.build_opener(_LoopbackHandler(), *handlers)


def token(user):
    """A bearer token of the local run for `user`."""
    return subprocess.run(
        [os.path.join(ROOT, "infra/run-local.sh"), "token", user],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip()


def request(base, bearer, method, path, body=None, timeout=60):
    """One API request (JSON body if given): its status and raw answer."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if bearer:
        req.add_header("Authorization", f"Bearer {bearer}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait(what, predicate, timeout=60, every=0.3):
    """`predicate()`'s first truthy value, polled every `every` s; exits naming `what`
    after `timeout` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")
