"""Starts `infra/run-local.sh` on a free port for a Python test or benchmark (the soak,
the browser test) and stops its whole process group afterwards:

    with local_run({"STUDIOS_LOCAL_JOB_DELAY_MS": "20"}) as (port, pid):
        ...
"""

import contextlib
import os
import signal
import socket
import subprocess
import threading

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
