#!/usr/bin/env python3
"""The local run's stand-in for `mount-s3` (no FUSE here): copies the prefix from the
emulated S3 into the directory, read-only unless --allow-overwrite is given. Same
arguments as the studio agent passes to mount-s3 (docs/agent.md):

    mount-stand-in.py BUCKET DIRECTORY [--prefix=PREFIX] [--read-only | --allow-overwrite --allow-delete]

Unlike a mount, writes do not reach S3 and later changes in S3 are not seen.
"""

import os
import stat
import sys

import boto3


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    if len(args) != 2:
        sys.exit(__doc__)
    bucket, directory = args
    prefix = next((f.split("=", 1)[1] for f in flags if f.startswith("--prefix=")), "")
    s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    except Exception as e:
        print(f"mount-stand-in: cannot list s3://{bucket}/{prefix}: {e}", file=sys.stderr)
        sys.exit(1)
    os.makedirs(directory, exist_ok=True)
    for key in keys:
        rel = key[len(prefix):]
        if not rel or rel.endswith("/"):
            continue
        path = os.path.join(directory, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        s3.download_file(bucket, key, path)
    if "--read-only" in flags:
        for root, _, files in os.walk(directory):
            for name in files:
                p = os.path.join(root, name)
                os.chmod(p, os.stat(p).st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    print(f"copied {len(keys)} objects of s3://{bucket}/{prefix} to {directory}")


if __name__ == "__main__":
    main()
