#!/usr/bin/env python3
"""Builds a small local conda channel of noarch packages (conda channels are not
reachable from the machines that run the local stack and the tests).

Usage: conda-channel.py DIR [NAME=VERSION[:DEP,DEP...] ...]
Without packages: the local run's demo channel (qc-tools, plot-helper). Each package
holds one executable, bin/<name>, that prints "<name> <version>". The channel is indexed
with rattler (py-rattler).
"""

import asyncio
import hashlib
import io
import json
import os
import sys
import tarfile
import time

from rattler.index import index_fs

DEMO = ["qc-tools=1.0", "plot-helper=0.3:qc-tools"]


def _add(tar, name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def build(channel, spec):
    head, _, deps = spec.partition(":")
    name, _, version = head.partition("=")
    depends = [d for d in deps.split(",") if d]
    script = f"#!/bin/sh\necho {name} {version}\n".encode()
    index = {
        "name": name, "version": version, "build": "0", "build_number": 0,
        "depends": depends, "noarch": "generic", "subdir": "noarch",
        "timestamp": int(time.time() * 1000), "license": "Apache-2.0",
    }
    paths = {"paths_version": 1, "paths": [{
        "_path": f"bin/{name}", "path_type": "hardlink",
        "sha256": hashlib.sha256(script).hexdigest(), "size_in_bytes": len(script),
    }]}
    subdir = os.path.join(channel, "noarch")
    os.makedirs(subdir, exist_ok=True)
    with tarfile.open(os.path.join(subdir, f"{name}-{version}-0.tar.bz2"), "w:bz2") as tar:
        _add(tar, "info/index.json", json.dumps(index).encode())
        _add(tar, "info/paths.json", json.dumps(paths).encode())
        _add(tar, "info/files", f"bin/{name}\n".encode())
        _add(tar, f"bin/{name}", script, 0o755)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    channel = os.path.abspath(sys.argv[1])
    for spec in sys.argv[2:] or DEMO:
        build(channel, spec)
    asyncio.run(index_fs(channel, force=True))
    print(channel, flush=True)
    # Not a normal exit: rattler's threads can abort the interpreter's finalization.
    os._exit(0)


if __name__ == "__main__":
    main()
