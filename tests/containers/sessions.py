#!/usr/bin/env python3
"""Sessions as AWS Batch runs them on EC2: real containers (infra/run-local.sh with
STUDIOS_LOCAL_SESSIONS=container, the template image built by infra/images.sh, each job a
`docker run` configured from its registered job definition: host networking, an init
process, /dev/shm, the job's resources). What only a container boundary can show:

- stop → start → clone keeps a file: the agent in the container saves the checkpoint
  (manifest last), the next container restores it, a clone's container starts from it;
- SIGTERM (what TerminateJob sends, through the container's init process, SIGKILL 30 s
  later): the agent saves within the grace and the next start restores that save;
- the container is what the job definition says (network host, init, shm, memory, CPUs);
- two sessions on one host network: a co-located session reaches the other's IDE port on
  the shared loopback, and is refused there without that session's own secret, and at
  the other's agent without a connect link;
- a killed local run leaves no session container behind.

Prints the times (start → ready, stop → stopped, SIGTERM → saved) for docs/performance.md.
Run by infra/test.sh (`python tests/containers/sessions.py`) after infra/images.sh.
`--processes` runs the same flow with sessions as processes (the local run's default),
without the container checks, to compare the times.
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "infra"))
from localrun import local_run, localhost_opener, request, token, wait  # noqa: E402

IMAGE = "studios-jupyter:local"


class Api:
    def __init__(self, base, bearer):
        self.base, self.bearer = base, bearer

    def call(self, method, path, body=None):
        status, text = request(self.base, self.bearer, method, path, body)
        return status, json.loads(text) if text else None


def docker(*args):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def containers():
    """Names of the running containers of the template image."""
    return [n for n in docker("ps", "--filter", f"ancestor={IMAGE}", "--format", "{{.Names}}").split() if n]


class Session:
    """A studio's connect link opened like a browser would: the cookie, then requests."""

    def __init__(self, url):
        self.base = url.split("?")[0]
        self.opener = localhost_opener(urllib.request.HTTPCookieProcessor())
        with self.opener.open(url, timeout=30) as r:
            assert r.status == 200, r.status

    def put_text(self, name, text):
        body = json.dumps({"type": "file", "format": "text", "content": text}).encode()
        req = urllib.request.Request(f"{self.base}api/contents/{name}", data=body, method="PUT",
                                     headers={"Content-Type": "application/json"})
        with self.opener.open(req, timeout=30) as r:
            return json.loads(r.read())["path"]

    def get_text(self, name):
        with self.opener.open(f"{self.base}api/contents/{name}", timeout=30) as r:
            return json.loads(r.read())["content"]


CONTAINERS = "--processes" not in sys.argv


def main():
    settings = {"STUDIOS_LOCAL_SESSIONS": "container" if CONTAINERS else "process",
                "STUDIOS_LOCAL_IMAGES": "jupyter", "STUDIOS_LOCAL_JOB_DELAY_MS": "200"}
    before = set(containers())
    times = {}
    with local_run(settings) as (port, _):
        run(f"http://127.0.0.1:{port}", times)
    # The local run ended: none of its session containers outlives it.
    left = wait("session containers removed", lambda: set(containers()) <= before or None, 30)
    assert left, "containers left behind"
    for k, v in times.items():
        print(f"{k}: {v}")
    print("container sessions: ok" if CONTAINERS else "process sessions: ok")


def run(base, times):
    bob = Api(base, token("bob"))
    _, w = bob.call("GET", "/workspaces")
    ws = next(x["id"] for x in w["workspaces"] if x["name"] == "demo")
    _, ces = bob.call("GET", f"/workspaces/{ws}/compute-envs")
    ce = ces["computeEnvs"][0]["id"]

    def studio(sid):
        return bob.call("GET", f"/workspaces/{ws}/studios/{sid}")[1]

    def ready(sid):
        t0 = time.time()
        wait(f"{sid} ready", lambda: (studio(sid).get("session") or {}).get("ready"), 120, 0.2)
        return round(time.time() - t0, 2)

    def stopped(sid):
        t0 = time.time()
        wait(f"{sid} stopped", lambda: studio(sid)["status"] in ("stopped", "errored"), 120, 0.2)
        return round(time.time() - t0, 2)

    def link(sid):
        status, body = bob.call("POST", f"/workspaces/{ws}/studios/{sid}/connect")
        assert status == 200, body
        return Session(body["url"])

    def container_of(sid):
        job = studio(sid)["session"]["jobId"]
        assert job in containers(), (job, containers())
        return job

    # A studio with 3 CPUs and 3 GiB, a conda package and the reads mounted: its
    # container is what the job definition and the job's resources say.
    _, links = bob.call("GET", f"/workspaces/{ws}/data-links")
    reads = next(x["id"] for x in links["dataLinks"] if x["name"] == "reads")
    status, st = bob.call("POST", f"/workspaces/{ws}/studios?autoStart=true",
                          {"name": "in a box", "computeEnvId": ce, "template": {"kind": "jupyter"},
                           "resources": {"cpus": 3, "memoryMiB": 3072},
                           "condaPackages": ["plot-helper=0.3"], "mounts": [{"dataLinkId": reads}]})
    assert status == 202, st
    sid = st["id"]
    times["add and start → ready (s)"] = ready(sid)
    if CONTAINERS:
        check_container(container_of(sid))
    return lifecycle(bob, ws, sid, studio, ready, stopped, link, container_of, times)


def check_container(box):
    inspect = json.loads(docker("inspect", box))[0]["HostConfig"]
    seen = (inspect["NetworkMode"], inspect["Init"], inspect["ShmSize"], inspect["Memory"], inspect["NanoCpus"])
    # (CPUs capped at this machine's: Docker refuses more; Batch would place the job on
    # an instance with enough.)
    assert seen == ("host", True, 4096 << 20, 3072 << 20, min(3, os.cpu_count()) * 10**9), seen
    # A session with mounts: /dev/fuse and SYS_ADMIN (Batch makes it privileged; this
    # sandbox refuses --privileged, and mount-s3 needs no more); its conda environment
    # and its mounted data inside the container.
    devices = [d["PathOnHost"] for d in inspect["Devices"] or []]
    assert devices == ["/dev/fuse"] and inspect["CapAdd"] in (["SYS_ADMIN"], ["CAP_SYS_ADMIN"]), (devices, inspect["CapAdd"])
    inside = docker("exec", box, "sh", "-c", "ls /workspace/data/reads; ls /workspace/.studio/conda/*/bin")
    assert "plot-helper" in inside and "sample-1" in inside, inside


def lifecycle(bob, ws, sid, studio, ready, stopped, link, container_of, times):
    # stop → start keeps a file.
    lab = link(sid)
    assert lab.put_text("notes.txt", "saved in a container") == "notes.txt"
    t0 = time.time()
    assert bob.call("POST", f"/workspaces/{ws}/studios/{sid}/stop")[0] == 202
    stopped(sid)
    times["stop → stopped, checkpoint saved (s)"] = round(time.time() - t0, 2)
    view = studio(sid)
    assert view["status"] == "stopped", view
    _, cps = bob.call("GET", f"/workspaces/{ws}/studios/{sid}/checkpoints")
    assert [(c["name"], c["status"]) for c in cps["checkpoints"]] == [("checkpoint-1", "finalized")], cps
    checkpoint = cps["checkpoints"][0]["id"]
    assert bob.call("POST", f"/workspaces/{ws}/studios/{sid}/start")[0] == 202
    times["restart (restore) → ready (s)"] = ready(sid)
    lab = link(sid)
    assert lab.get_text("notes.txt") == "saved in a container"

    if CONTAINERS:
        sigterm(bob, ws, sid, stopped, ready, link, container_of, lab, times)
    else:
        # (A running session's restored checkpoint cannot seed a clone: a new one first.)
        assert bob.call("POST", f"/workspaces/{ws}/studios/{sid}/stop")[0] == 202
        stopped(sid)

    # Two sessions on one host network: the clone of the first checkpoint, beside it.
    status, clone = bob.call("POST", f"/workspaces/{ws}/studios/{sid}/clone",
                             {"name": "in a box, again", "checkpointId": checkpoint, "autoStart": True, "mounts": []})
    assert status in (201, 202), clone
    times["clone → ready (s)"] = ready(clone["id"])
    other = link(clone["id"])
    assert other.get_text("notes.txt") == "saved in a container"
    if CONTAINERS:
        co_located(container_of(sid), container_of(clone["id"]), clone["id"], other, times)


def sigterm(bob, ws, sid, stopped, ready, link, container_of, lab, times):
    # SIGTERM, as TerminateJob sends it on EC2 (a Spot reclaim, a node drained): the
    # agent saves within the 30 s before SIGKILL; the next start restores that save.
    lab.put_text("late.txt", "written just before SIGTERM")
    box = container_of(sid)
    t0 = time.time()
    docker("kill", "--signal", "TERM", box)
    wait("the container to exit", lambda: box not in containers(), 40)
    times["SIGTERM → container exited, saved (s)"] = round(time.time() - t0, 2)
    assert time.time() - t0 < 30, "saved within the grace"
    stopped(sid)
    _, cps = bob.call("GET", f"/workspaces/{ws}/studios/{sid}/checkpoints")
    assert cps["checkpoints"][0]["status"] == "finalized", cps
    assert len(cps["checkpoints"]) == 2, cps
    assert bob.call("POST", f"/workspaces/{ws}/studios/{sid}/start")[0] == 202
    ready(sid)
    lab = link(sid)
    assert lab.get_text("late.txt") == "written just before SIGTERM"


def co_located(a, b, b_id, other, times):
    # From inside A: B's IDE listens on the shared loopback (host networking), but
    # answers nothing without B's own token; B's agent refuses without a connect link.
    ports = re.findall(r"--ServerApp\.port=(\d+)", docker("top", b, "-o", "pid,args"))
    assert ports, "B's JupyterLab port"
    # To 127.0.0.1 with the URL's Host (a studio's origin is `<studio>.localhost`).
    probe = ("import sys, http.client, urllib.parse as p\n"
             "u = p.urlsplit(sys.argv[1])\n"
             "c = http.client.HTTPConnection('127.0.0.1', u.port, timeout=5)\n"
             "try:\n c.request('GET', u.path, headers={'Host': u.netloc}); print(c.getresponse().status)\n"
             "except Exception as e: print(type(e).__name__)")
    ide_url = f"http://127.0.0.1:{ports[0]}/api/contents"
    ide = docker("exec", a, "python3", "-c", probe, ide_url).strip()
    assert ide == "403", f"B's IDE answered A's unauthenticated request: {ide}"
    agent = docker("exec", a, "python3", "-c", probe, f"{other.base}api/contents").strip()
    assert agent == "401", f"B's agent answered A without a link: {agent}"
    times["co-located session, B's IDE without its token"] = ide
    times["co-located session, B's agent without a link"] = agent


if __name__ == "__main__":
    main()
