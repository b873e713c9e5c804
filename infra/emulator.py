"""Local AWS emulator: moto's server app behind one global request lock.

moto's DynamoDB is not atomic under concurrent requests (two winners of a
conditional transaction were measured in 2 of 100 rounds of 8), so every
request is served while holding one lock, which makes each request atomic as
it is on DynamoDB. TCP_NODELAY avoids the ~40 ms Nagle/delayed-ACK stall that
Python servers add to keep-alive requests.

Batch jobs do not run here (no Docker): moto would try to start a container for every
job and mark it FAILED seconds later. Instead a job stays where it is put — SUBMITTED
after SubmitJob, FAILED with the reason after TerminateJob — and the local run moves it
through its states with `POST /_studios/batch/job-status`, so what DescribeJobs says
matches the events the local run delivers.

Usage: emulator.py PORT_FILE   (binds 127.0.0.1 on a free port, writes it to PORT_FILE)
"""

import copy
import datetime
import json
import os
import socket
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
import moto.dynamodb.models as ddb_models
from moto.batch import models as batch_models
from moto.dynamodb.models import table as ddb_table
from moto.batch.models import batch_backends
from werkzeug.serving import make_server

_LOCK = threading.Lock()


def _inert_run(job):
    """A session job does nothing until told (see module docstring)."""


def _terminate(job, reason):
    job.stop = True
    job.job_stopped_reason = reason
    job.exit_code = 143
    job._mark_stopped(success=False)


batch_models.Job.run = _inert_run
batch_models.Job.terminate = _terminate


# moto backs up a table before each TransactWriteItems by deep-copying it once per item
# of the transaction, stream records included, so transactions slow down as a table and
# its stream grow (seconds per start after a few hundred writes). Copy each table once
# per transaction, and share the stream's records (immutable JSON snapshots) instead of
# copying them. A failed transaction still restores the table and its stream as before.
class _CopyOncePerTransaction:
    def __init__(self):
        self.tables = {}

    def deepcopy(self, obj, memo=None):
        if isinstance(obj, ddb_table.Table):
            if id(obj) not in self.tables:
                self.tables[id(obj)] = copy.deepcopy(obj)
            return self.tables[id(obj)]
        return copy.deepcopy(obj, memo)

    def __getattr__(self, name):
        return getattr(copy, name)


_copies = _CopyOncePerTransaction()
ddb_models.copy = _copies
_transact = ddb_models.DynamoDBBackend.transact_write_items


def _transact_write_items(self, transact_items):
    _copies.tables = {}
    originals = dict(self.tables)
    recorded = {n: len(t.stream_shard.items) for n, t in originals.items() if t.stream_shard}
    try:
        return _transact(self, transact_items)
    except Exception:
        # moto rolls back by swapping in its backup of the table, but open shard
        # iterators (a stream reader) keep the original shard: they would see the
        # records of the cancelled transaction and nothing written after it. Keep the
        # original shard, without the cancelled records, on the restored table.
        for name, table in originals.items():
            restored = self.tables.get(name)
            shard = table.stream_shard
            if restored is not None and restored is not table and shard is not None:
                del shard.items[recorded[name]:]
                shard.table = restored
                restored.stream_shard = shard
        raise
    finally:
        _copies.tables = {}


ddb_models.DynamoDBBackend.transact_write_items = _transact_write_items


def _shard_deepcopy(self, memo):
    clone = object.__new__(type(self))
    memo[id(self)] = clone
    for name, value in self.__dict__.items():
        if name == "items":
            clone.items = list(value)
        else:
            setattr(clone, name, copy.deepcopy(value, memo))
    return clone


ddb_table.StreamShard.__deepcopy__ = _shard_deepcopy


def _set_job_status(body):
    """Moves an emulated job: {"jobId", "status", "reason"?, "exitCode"?}."""
    for account in batch_backends.values():
        for backend in account.values():
            job = backend._jobs.get(body["jobId"])
            if job is None:
                continue
            status = body["status"]
            if status == "RUNNING":
                job.job_started_at = datetime.datetime.now()
                job._start_attempt()
            if status in ("SUCCEEDED", "FAILED"):
                job.job_stopped_reason = body.get("reason")
                job.exit_code = body.get("exitCode")
                job._mark_stopped(success=status == "SUCCEEDED")
            job.status = status
            return True
    return False


def _control(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = json.loads(environ["wsgi.input"].read(length) or b"{}")
    found = _set_job_status(body)
    start_response("200 OK" if found else "404 Not Found", [("Content-Type", "application/json")])
    return [json.dumps({"found": found}).encode()]


class SerialisedApp:
    def __init__(self, app):
        self._app = app

    def __call__(self, environ, start_response):
        with _LOCK:
            if environ.get("PATH_INFO") == "/_studios/batch/job-status":
                return _control(environ, start_response)
            # Drain the body inside the lock: moto may build it lazily.
            return list(self._app(environ, start_response))


class NoDelayHandler(MotoRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def main() -> None:
    port_file = sys.argv[1]
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(
        "127.0.0.1",
        0,
        SerialisedApp(app),
        threaded=True,
        request_handler=NoDelayHandler,
    )
    # Written atomically: the launcher polls for the file.
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_port))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
