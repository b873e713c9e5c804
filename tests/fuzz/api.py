"""Fuzzes the HTTP API against its own document (docs/openapi.json) with Schemathesis.

Starts the local run (sessions without agents: the control plane is what is fuzzed),
checks that the served `GET /openapi.json` is the committed docs/openapi.json, seeds a
few real objects (a studio with a checkpoint, one without), then runs Schemathesis with
a maintainer's token (bob) over every operation: the examples, coverage and fuzzing
phases, path parameters drawn mostly from the real ids so requests get past 404. Fails
on any server error (5xx), any response that does not match the document (status, body
schema, content type, headers), any schema-invalid request that is accepted, any
request without a token that is not refused, and a wrong `Allow` on 405.

    .venv/bin/python tests/fuzz/api.py [--max-examples N]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "infra"))
from localrun import ROOT, local_run, request, token  # noqa: E402

# Everything but `positive_data_acceptance`: a schema-valid body can still break a rule
# the schema cannot say (a unique name, an existing compute environment, a state), and
# the API rightly answers 400/404/409 to it.
CHECKS = ",".join([
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_headers_conformance", "response_schema_conformance",
    "negative_data_rejection", "ignored_auth", "unsupported_method",
    "allow_header_conformance", "missing_required_header",
])


def api(base, bearer, method, path, body=None, expect=(200,)):
    status, text = request(base, bearer, method, path, body)
    if status not in expect:
        raise SystemExit(f"seeding: {method} {path} → {status} {text[:300]!r}")
    return json.loads(text) if text else None


def wait_status(base, token, ws, sid, status):
    deadline = time.time() + 60
    while time.time() < deadline:
        if api(base, token, "GET", f"/workspaces/{ws}/studios/{sid}")["status"] == status:
            return
        time.sleep(0.1)
    raise SystemExit(f"seeding: studio {sid} never became {status}")


def seed(base, token):
    ws = next(w["id"] for w in api(base, token, "GET", "/workspaces")["workspaces"]
              if w["name"] == "demo")
    ce = api(base, token, "GET", f"/workspaces/{ws}/compute-envs")["computeEnvs"][0]["id"]
    links = [d["id"] for d in api(base, token, "GET", f"/workspaces/{ws}/data-links")["dataLinks"]]
    studios = []
    for name in ["fuzz seed a", "fuzz seed b"]:
        studio = api(base, token, "POST", f"/workspaces/{ws}/studios", {
            "name": name, "computeEnvId": ce, "template": {"kind": "jupyter"},
            "mounts": [{"dataLinkId": links[0]}],
        }, expect=(201,))
        studios.append(studio["id"])
    # One studio with a checkpoint: a session that ran and stopped.
    first = studios[0]
    api(base, token, "POST", f"/workspaces/{ws}/studios/{first}/start", expect=(202,))
    wait_status(base, token, ws, first, "running")
    api(base, token, "POST", f"/workspaces/{ws}/studios/{first}/stop", expect=(202,))
    wait_status(base, token, ws, first, "stopped")
    checkpoints = [c["id"] for c in api(
        base, token, "GET", f"/workspaces/{ws}/studios/{first}/checkpoints")["checkpoints"]]
    return {"ws": [ws], "id": studios, "ceId": [ce], "linkId": links,
            "cpId": checkpoints, "userId": ["carol", "dave", "erin"]}


# Body fields that name objects, and the ids they take.
BODY_IDS = {"computeEnvId": "ceId", "dataLinkId": "linkId", "checkpointId": "cpId"}


def config_text(ids):
    lines = []
    for name, values in ids.items():
        lines.append(f"[dictionaries.{name}]")
        lines.append("values = " + json.dumps(values))
    lines.append("[parameters]")
    # Mostly real ids (to reach the handlers' logic), sometimes generated ones.
    for name in ids:
        lines.append(f'"path.{name}" = {{ dictionary = "{name}", probability = 0.85 }}')
    for field, name in BODY_IDS.items():
        lines.append(f'"body.{field}" = {{ dictionary = "{name}", probability = 0.85 }}')
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-examples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    committed = open(os.path.join(ROOT, "docs/openapi.json"), "rb").read()
    with local_run({"STUDIOS_AGENT_BIN": "none", "STUDIOS_LOCAL_JOB_DELAY_MS": "50"}) as (port, _):
        base = f"http://127.0.0.1:{port}"
        status, served = request(base, None, "GET", "/openapi.json")
        if status != 200 or served != committed:
            raise SystemExit("GET /openapi.json (no token) is not docs/openapi.json")
        print("GET /openapi.json (no token): 200, identical to docs/openapi.json")
        ids = seed(base, token("bob"))
        failed = False
        # A maintainer (operates studios), then an owner (administers the workspace too).
        for user in ["bob", "alice"]:
            failed |= schemathesis(base, token(user), ids, user, args) != 0
        sys.exit(1 if failed else 0)


def schemathesis(base, token, ids, user, args):
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "schemathesis.toml")
        with open(config, "w") as f:
            f.write(config_text(ids))
        command = [
            os.path.join(os.path.dirname(sys.executable), "st"),
            "--config-file", config, "run", f"{base}/openapi.json",
            "--url", base,
            "--header", f"Authorization: Bearer {token}",
            "--checks", CHECKS,
            "--phases", "examples,coverage,fuzzing",
            "--max-examples", str(args.max_examples),
            "--workers", "2",
            "--request-timeout", "30",
            "--no-color",
        ]
        if args.seed is not None:
            command += ["--seed", str(args.seed)]
        print(f"== schemathesis as {user}", flush=True)
        started = time.time()
        result = subprocess.run(command, cwd=tmp, env=dict(os.environ, SCHEMATHESIS_TELEMETRY="false"))
        print(f"== as {user}: {time.time() - started:.0f} s, exit code {result.returncode}", flush=True)
        return result.returncode


if __name__ == "__main__":
    main()
