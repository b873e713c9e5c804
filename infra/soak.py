"""Soak benchmark: sustained start/stop rounds through the local run's API, with the
emulator's memory and the API's latency sampled (docs/performance.md, "Soak").

Each round: every studio of the set tries to start at once (their mounts overlap, so
one wins per overlapping group and the others get 409 `mount_locked`), the winners
run, are stopped, and end `stopped` through the simulated Batch events. The emulator
is asked after every round what it holds (its RSS, stream records, shard iterators,
Batch jobs) and how many DynamoDB transactions it has served.

    infra/soak.sh [--rounds N] [--studios K] [--warmup W] [--max-mb-per-1000 X]

With --max-mb-per-1000 it is a check: exits 1 when, after the warm-up rounds, the
emulator grows by more than X MB per 1,000 transactions (least-squares slope of its
RSS over the transactions it served), or when a lone request's latency (the median of
five sequential GETs of a studio, sampled each round) in the last third of the rounds
is over twice that of the first third.
"""

import argparse
import json
import os
import sys
import threading
import time
import urllib.request

from localrun import ROOT, local_run, request, token


class Api:
    def __init__(self, base, token):
        self.base = base
        self.token = token

    def call(self, method, path, body=None):
        started = time.perf_counter()
        status, text = request(self.base, self.token, method, path, body)
        elapsed = time.perf_counter() - started
        return status, (json.loads(text) if text else None), elapsed


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def slope(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--studios", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--max-mb-per-1000", type=float, default=None)
    args = parser.parse_args()

    # The control plane alone: sessions run no agent (their stops end them at once).
    with local_run({"STUDIOS_LOCAL_JOB_DELAY_MS": "20", "STUDIOS_AGENT_BIN": "none"}) as (port, pid):
        run(args, port, pid)


def emulator_stats(pgid, query=""):
    """The emulator of the local run (same process group) reports what it holds."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.getpgid(int(pid)) != pgid:
                continue
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except (OSError, ProcessLookupError):
            continue
        if any(c.endswith(b"emulator.py") for c in cmdline):
            port_file = cmdline[-2].decode()
            port = open(port_file).read().strip()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_studios/stats{query}") as r:
                return json.loads(r.read())
    raise SystemExit("the emulator of the local run was not found")


def run(args, port, pgid):
    api = Api(f"http://127.0.0.1:{port}", token("bob"))
    _, body, _ = api.call("GET", "/workspaces")
    ws = next(w["id"] for w in body["workspaces"] if w["name"] == "demo")
    _, body, _ = api.call("GET", f"/workspaces/{ws}/compute-envs")
    ce = body["computeEnvs"][0]["id"]
    # Overlapping paths: pairs share a directory, and every fourth one mounts its parent.
    studios = []
    for i in range(args.studios):
        uri = (f"s3://studios-demo-data/soak/{i // 4}/" if i % 4 == 0
               else f"s3://studios-demo-data/soak/{i // 4}/part-{i % 4}/")
        status, body, _ = api.call("POST", f"/workspaces/{ws}/studios", {
            "name": f"soak {i}", "computeEnvId": ce, "template": {"kind": "jupyter"},
            "mounts": [{"uri": uri}],
        })
        assert status == 201, (status, body)
        studios.append(body["id"])

    def status_of(sid):
        return api.call("GET", f"/workspaces/{ws}/studios/{sid}")[1]["status"]

    print("round  transactions  rss_mb  stream_records  shard_iterators  batch_jobs  "
          "start_p50_ms  get_p50_ms  won")
    samples = []
    for rnd in range(1, args.rounds + 1):
        results = [None] * len(studios)
        barrier = threading.Barrier(len(studios))

        def start(i):
            barrier.wait()
            results[i] = api.call("POST", f"/workspaces/{ws}/studios/{studios[i]}/start")

        threads = [threading.Thread(target=start, args=(i,)) for i in range(len(studios))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        won = [studios[i] for i, r in enumerate(results) if r[0] == 202]
        refused = [r for r in results if r[0] != 202]
        assert all(r[0] == 409 for r in refused), [r[:2] for r in refused]
        assert won, "no start won"
        for sid in won:
            wait_for(lambda: status_of(sid) == "running", 30, f"{sid} running")
        for sid in won:
            status, body, _ = api.call("POST", f"/workspaces/{ws}/studios/{sid}/stop")
            assert status == 202, (status, body)
        for sid in won:
            wait_for(lambda: status_of(sid) == "stopped", 30, f"{sid} stopped")
        latencies = sorted(r[2] for r in results)
        gets = sorted(api.call("GET", f"/workspaces/{ws}/studios/{studios[0]}")[2] for _ in range(5))
        stats = emulator_stats(pgid)
        sample = dict(stats, round=rnd, startP50=latencies[len(latencies) // 2],
                      getP50=gets[2], won=len(won))
        samples.append(sample)
        print(f"{rnd:5d}  {stats['transactions']:12d}  {stats['rssBytes'] / 2**20:6.1f}  "
              f"{stats['streamRecords']:14d}  {stats['shardIterators']:15d}  "
              f"{stats['batchJobs']:10d}  {sample['startP50'] * 1000:12.1f}  "
              f"{sample['getP50'] * 1000:10.1f}  {len(won):3d}",
              flush=True)

    if os.environ.get("SOAK_OBJECTS"):
        print(json.dumps(emulator_stats(pgid, "?objects=1")["objects"], indent=1))
    after = samples[args.warmup:]
    if len(after) < 3:
        return
    xs = [s["transactions"] for s in after]
    ys = [s["rssBytes"] / 2**20 for s in after]
    growth = slope(xs, ys) * 1000
    third = max(1, len(after) // 3)

    def median(key, part):
        return sorted(s[key] for s in part)[len(part) // 2]

    early, late = median("getP50", after[:third]), median("getP50", after[-third:])
    cycles = sum(s["won"] for s in samples)
    print(f"{cycles} start/stop cycles; after {args.warmup} warm-up rounds: "
          f"{xs[-1] - xs[0]} transactions, RSS {ys[0]:.1f} → {ys[-1]:.1f} MB, "
          f"growth {growth:.2f} MB per 1,000 transactions; lone GET p50 "
          f"{early * 1000:.1f} ms (first third) → {late * 1000:.1f} ms (last third); contested "
          f"start p50 {median('startP50', after[:third]) * 1000:.0f} → "
          f"{median('startP50', after[-third:]) * 1000:.0f} ms")
    failed = False
    if args.max_mb_per_1000 is not None and growth > args.max_mb_per_1000:
        print(f"FAIL: growth over {args.max_mb_per_1000} MB per 1,000 transactions")
        failed = True
    if args.max_mb_per_1000 is not None and late > 2 * early + 0.005:
        print("FAIL: request latency climbs with the writes done")
        failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
