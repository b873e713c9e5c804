"""Cold start and invoke latency of the bootstrap binary, on this machine.

Serves a fake Lambda Runtime API on 127.0.0.1 (TCP_NODELAY), starts the binary as Lambda
would (`_HANDLER=list-workspaces`), and times: process start → first /next (init),
first invoke (first DynamoDB connection), and warm invokes, against the emulator at
AWS_ENDPOINT_URL. Run through infra/bench-cold-start.sh.

Usage: bench-cold-start.py BOOTSTRAP [INVOKES]
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

BOOTSTRAP = sys.argv[1]
INVOKES = int(sys.argv[2]) if len(sys.argv) > 2 else 50
TABLE = f"bench-{int(time.time())}"

events = []
marks = {}
done = threading.Event()
lock = threading.Lock()


def event(n):
    return {
        "version": "2.0",
        "routeKey": "GET /workspaces",
        "rawPath": "/workspaces",
        "rawQueryString": "",
        "headers": {},
        "requestContext": {
            "accountId": "000000000000", "apiId": "bench", "domainName": "localhost",
            "domainPrefix": "localhost", "requestId": f"r{n}", "routeKey": "GET /workspaces",
            "stage": "$default", "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 0,
            "http": {"method": "GET", "path": "/workspaces", "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "bench"},
            "authorizer": {"jwt": {"claims": {"sub": "bench-user"}, "scopes": None}},
        },
        "isBase64Encoded": False,
    }


class Runtime(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def do_GET(self):
        with lock:
            n = len(marks.get("sent", []))
            if n == 0:
                marks["init_done"] = time.perf_counter()
            if n >= INVOKES:
                done.set()
        if n >= INVOKES:
            time.sleep(3600)
            return
        body = json.dumps(event(n)).encode()
        with lock:
            marks.setdefault("sent", []).append(time.perf_counter())
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", f"r{n}")
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:000000000000:function:bench")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length)
        with lock:
            marks.setdefault("answered", []).append(time.perf_counter())
            marks.setdefault("statuses", []).append(json.loads(payload).get("statusCode"))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()


def main():
    kw = {"endpoint_url": os.environ["AWS_ENDPOINT_URL"], "region_name": "us-east-1"}
    ddb = boto3.client("dynamodb", **kw)
    ddb.create_table(
        TableName=TABLE, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("PK", "SK", "GSI1PK", "GSI1SK")],
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{"IndexName": "GSI1", "Projection": {"ProjectionType": "ALL"},
                                 "KeySchema": [{"AttributeName": "GSI1PK", "KeyType": "HASH"},
                                               {"AttributeName": "GSI1SK", "KeyType": "RANGE"}]}],
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), Runtime)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ)
    env.update({
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_port}",
        "_HANDLER": "list-workspaces", "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench", "AWS_LAMBDA_LOG_GROUP_NAME": "bench",
        "TABLE_NAME": TABLE, "EVENT_BUS_NAME": "bench",
        "CONNECT_URL_PATTERN": "https://studios.example.org/{studioId}/", "RUST_LOG": "warn",
        "TEMPLATE_IMAGE_JUPYTER": "j", "TEMPLATE_IMAGE_RSTUDIO": "r",
        "TEMPLATE_IMAGE_VSCODE": "v", "TEMPLATE_IMAGE_XPRA": "x",
    })
    started = time.perf_counter()
    proc = subprocess.Popen([BOOTSTRAP], env=env)
    try:
        if not done.wait(120):
            sys.exit("the bootstrap did not finish the invokes")
    finally:
        proc.kill()
    sent, answered = marks["sent"], marks["answered"]
    per_invoke = [(a - s) * 1000 for s, a in zip(sent, answered)]
    print(json.dumps({
        "binary_bytes": os.path.getsize(BOOTSTRAP),
        "init_ms": round((marks["init_done"] - started) * 1000, 1),
        "first_invoke_ms": round(per_invoke[0], 1),
        "warm_invoke_median_ms": round(statistics.median(per_invoke[1:]), 2),
        "warm_invoke_p90_ms": round(sorted(per_invoke[1:])[int(0.9 * (len(per_invoke) - 1))], 2),
        "invokes": len(per_invoke),
        "statuses": sorted(set(marks["statuses"])),
    }))


main()
