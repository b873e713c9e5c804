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
import time

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
import moto.dynamodb.models as ddb_models
from moto.batch import models as batch_models
from moto.dynamodb.models import table as ddb_table
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.batch.models import batch_backends
from moto.core import common_models
from moto.core.model_instances import model_data
from moto.dynamodbstreams import models as streams_models
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

# AWS Batch forgets a finished job after a while (DescribeJobs stops listing it); moto
# never does. The local run forgets jobs that ended more than
# STUDIOS_EMULATOR_JOB_RETENTION_S ago (default 600: its reconciler runs every minute, and
# a job that is gone counts as ended, after the grace period, anyway).
JOB_RETENTION = datetime.timedelta(seconds=int(os.environ.get("STUDIOS_EMULATOR_JOB_RETENTION_S", "600")))
_submit_job = batch_models.BatchBackend.submit_job


def _submit_job_forgetting_old_ones(self, *args, **kwargs):
    oldest = datetime.datetime.now() - JOB_RETENTION
    for job_id, job in list(self._jobs.items()):
        if job.job_stopped and job.job_stopped_at < oldest:
            del self._jobs[job_id]
    return _submit_job(self, *args, **kwargs)


batch_models.BatchBackend.submit_job = _submit_job_forgetting_old_ones


# moto backs up every table of a TransactWriteItems by deep-copying it, and restores the
# copy if the transaction is cancelled: each transaction costs O(table size), so writes
# slow down as a table grows, and the restored copy detaches open stream iterators from
# the table. Instead: no table copy, and an undo log of just the items the transaction
# touches (and the stream records it added), applied if it fails.
class _NoTableCopies:
    def deepcopy(self, obj, memo=None):
        if isinstance(obj, ddb_table.Table):
            return obj
        return copy.deepcopy(obj, memo)

    def __getattr__(self, name):
        return getattr(copy, name)


ddb_models.copy = _NoTableCopies()
_transact = ddb_models.DynamoDBBackend.transact_write_items


def _touched(backend, transact_items):
    """(table, hash key, range key) of every item a transaction names."""
    for entry in transact_items:
        for op in entry.values():
            table = backend.tables.get(op.get("TableName"))
            if table is None:
                continue
            key = op.get("Item") if "Item" in op else op.get("Key")
            try:
                hash_key = DynamoType(key[table.hash_key_attr])
                range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
            except (KeyError, TypeError):
                continue
            yield table, hash_key, range_key


def _transact_write_items(self, transact_items):
    undo = []
    for table, hash_key, range_key in _touched(self, transact_items):
        old = table.get_item(hash_key, range_key) if hash_key in table.items else None
        undo.append((table, hash_key, range_key, copy.deepcopy(old)))
    streams = {id(t): (t, len(t.stream_shard.items)) for t, *_ in undo if t.stream_shard}
    try:
        return _transact(self, transact_items)
    except Exception:
        for table, hash_key, range_key, old in reversed(undo):
            if range_key is None:
                if old is None:
                    table.items.pop(hash_key, None)
                else:
                    table.items[hash_key] = old
            elif old is None:
                table.items.get(hash_key, {}).pop(range_key, None)
                if hash_key in table.items and not table.items[hash_key]:
                    del table.items[hash_key]
            else:
                table.items[hash_key][range_key] = old
        for table, recorded in streams.values():
            del table.stream_shard.items[recorded:]
        raise


ddb_models.DynamoDBBackend.transact_write_items = _transact_write_items


# Bounded memory (docs/performance.md, "Soak"). moto's BaseModel keeps every instance it
# ever creates in a class-level list (for its dashboard): every copy of a table that
# TransactWriteItems makes to roll back with, every stream record and shard iterator,
# forever — the emulator grew by table size × transactions (1 GB in 90 s of contested
# starts). Nothing here uses that dashboard: create models untracked.
def _untracked_new(cls, *args, **kwargs):
    return super(common_models.BaseModel, cls).__new__(cls)


common_models.BaseModel.__new__ = _untracked_new
for _models in model_data.values():
    for _model in _models.values():
        _model.instances_tracked = []

# DynamoDB Streams as DynamoDB bounds it: a shard iterator expires 15 minutes after it is
# handed out, and records leave the stream after 24 hours. moto keeps both forever (one
# new iterator per GetRecords call). The local run may drop a record sooner, once every
# live reader has read past it: a reader's position is its newest iterator (GetRecords
# hands out the next one, and a reader moves on to it); an iterator nobody has used
# holds records for its 15 minutes. A record nobody has read stays its 24 hours.
ITERATOR_LIFETIME_S = 15 * 60
RECORD_RETENTION = datetime.timedelta(hours=24)
_iterator_init = streams_models.ShardIterator.__init__
_iterator_get = streams_models.ShardIterator.get


def _tracked_iterator_init(self, *args, **kwargs):
    _iterator_init(self, *args, **kwargs)
    self.created = time.monotonic()
    self.superseded = False


def _iterator_get_and_trim(self, limit=1000):
    result = _iterator_get(self, limit)
    self.superseded = True
    _trim_streams(self.streams_backend)
    return result


def _trim_streams(backend):
    now = time.monotonic()
    for arn, iterator in list(backend.shard_iterators.items()):
        if now - iterator.created > ITERATOR_LIFETIME_S:
            del backend.shard_iterators[arn]
    shards, marks = {}, {}
    for iterator in backend.shard_iterators.values():
        shard = iterator.stream_shard
        shards[id(shard)] = shard
        if not iterator.superseded:
            marks[id(shard)] = min(marks.get(id(shard), iterator.sequence_number), iterator.sequence_number)
    oldest = datetime.datetime.now(datetime.timezone.utc) - RECORD_RETENTION
    for key, shard in shards.items():
        read = marks.get(key, shard.starting_sequence_number) - shard.starting_sequence_number
        expired = 0
        while expired < len(shard.items) and _created(shard.items[expired]) < oldest:
            expired += 1
        drop = min(max(read, expired), len(shard.items))
        if drop > 0:
            del shard.items[:drop]
            shard.starting_sequence_number += drop


def _created(record):
    at = record.record["dynamodb"]["ApproximateCreationDateTime"]
    if isinstance(at, (int, float)):
        return datetime.datetime.fromtimestamp(at, datetime.timezone.utc)
    return at if at.tzinfo else at.replace(tzinfo=datetime.timezone.utc)


_shard_get = ddb_table.StreamShard.get


def _shard_get_clamped(self, start, quantity):
    # An old iterator may point before the records dropped above: read from the oldest kept.
    return _shard_get(self, max(start, self.starting_sequence_number), quantity)


streams_models.ShardIterator.__init__ = _tracked_iterator_init
streams_models.ShardIterator.get = _iterator_get_and_trim
ddb_table.StreamShard.get = _shard_get_clamped


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


_COUNTS = {"requests": 0, "transactions": 0}


def _rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _backends(family):
    for account in family.values():
        yield from account.values()


def _stats(environ, start_response):
    """What the emulator holds, for the soak benchmark (infra/soak.py).
    `?objects=1` adds the most common Python object types (slow: a full GC walk)."""
    stream_records = sum(
        len(t.stream_shard.items)
        for b in _backends(ddb_models.dynamodb_backends)
        for t in b.tables.values()
        if t.stream_shard is not None
    )
    body = dict(
        _COUNTS,
        rssBytes=_rss_bytes(),
        streamRecords=stream_records,
        shardIterators=sum(len(b.shard_iterators) for b in _backends(streams_models.dynamodbstreams_backends)),
        batchJobs=sum(len(b._jobs) for b in _backends(batch_backends)),
    )
    if "objects" in environ.get("QUERY_STRING", ""):
        import collections
        import gc

        gc.collect()
        counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
        body["objects"] = dict(counts.most_common(20))
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


class SerialisedApp:
    def __init__(self, app):
        self._app = app

    def __call__(self, environ, start_response):
        with _LOCK:
            if environ.get("PATH_INFO") == "/_studios/batch/job-status":
                return _control(environ, start_response)
            if environ.get("PATH_INFO") == "/_studios/stats":
                return _stats(environ, start_response)
            _COUNTS["requests"] += 1
            if environ.get("HTTP_X_AMZ_TARGET", "").endswith(".TransactWriteItems"):
                _COUNTS["transactions"] += 1
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
