#!/usr/bin/env python3
"""The conda installer of the local run and the tests: the subset of `micromamba create`
the studio agent uses (docs/agent.md), implemented with rattler (py-rattler) — the same
solver family micromamba uses, without network access to conda-forge.

Usage: conda-create.py create --yes --prefix PREFIX --override-channels
                              [--channel CHANNEL ...] SPEC ...
A failed solve prints the solver's message on stderr and exits 1.
"""

import argparse
import asyncio
import os
import sys
import tempfile

from rattler import install, solve


def main():
    parser = argparse.ArgumentParser(prog="conda-create.py")
    parser.add_argument("command", choices=["create"])
    parser.add_argument("--yes", "-y", action="store_true")
    parser.add_argument("--prefix", "-p", required=True)
    parser.add_argument("--override-channels", action="store_true")
    parser.add_argument("--channel", "-c", action="append", default=[])
    parser.add_argument("specs", nargs="+")
    args = parser.parse_args()
    channels = [c if "://" in c else os.path.abspath(c) for c in args.channel]
    try:
        records = asyncio.run(solve(sources=channels, specs=args.specs, platforms=["linux-64", "noarch"]))
        # Outside the environment's directory (the workspace is checkpointed).
        cache = os.environ.get("CONDA_PKGS_DIRS") or os.path.join(tempfile.gettempdir(), "studios-conda-pkgs")
        asyncio.run(install(records, target_prefix=args.prefix, cache_dir=cache, show_progress=False))
    except Exception as e:  # the solver's (or installer's) own message
        print(f"error: {e}", file=sys.stderr, flush=True)
        # Not sys.exit: rattler's threads can abort the interpreter's finalization.
        os._exit(1)
    names = ", ".join(f"{r.name.normalized}={r.version}" for r in records)
    print(f"created {args.prefix}: {names}", flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
