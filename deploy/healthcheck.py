"""The image's HEALTHCHECK: which role runs here (PID 1 is tini, its arguments name the
role), then a check that fits it. Standard library only: it runs every 30 s.

- web: GET http://127.0.0.1:$CONVEYOR_PORT/healthz. Healthy when the web process answers
  and its database is reachable. /healthz answers 503 too while no worker cluster runs;
  that is not this container's fault (restarting it would not help), so a 503 whose
  database check passed still counts as healthy here. A load balancer that wants "the
  whole service works" should read /healthz itself.
- worker: the cluster's process is alive (tini exits with it otherwise; this catches a
  zombie-free hang only as far as /proc shows it).
- anything else (migrate, one-off commands): healthy.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path


def role() -> str:
    try:
        args = Path("/proc/1/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    names = [a.decode(errors="replace") for a in args if a]
    for name in ("web", "worker", "migrate"):
        if name in names:
            return name
    return ""


def web() -> int:
    port = os.environ.get("CONVEYOR_PORT") or "8000"
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:  # noqa: S310 - fixed URL
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read() or b"{}")
        except ValueError:
            return 1
        ok = exc.code == 503 and body.get("database", {}).get("ok") is True
        print(f"/healthz {exc.code}: {body.get('cluster', {}).get('error', '')}")
        return 0 if ok else 1
    except OSError as exc:
        print(f"/healthz unreachable: {exc}")
        return 1


def worker() -> int:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"qcluster" in cmdline and entry.name != "1":
            return 0
    print("no qcluster process")
    return 1


def main() -> int:
    current = role()
    if current == "web":
        return web()
    if current == "worker":
        return worker()
    return 0


if __name__ == "__main__":
    sys.exit(main())
