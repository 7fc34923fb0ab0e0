#!/usr/bin/env python3
"""Eager (stop-and-copy) benchmark: for each memory size, migrate the
victim-mem test victim through an image directory on tmpfs N times and
report dump throughput, restore throughput and the frozen window.

The victim is started as our own child so that we reap it the moment the
dump kills it (this VM's init reaps orphans up to ~2 s late, which would
otherwise be measured as restore time). The guest's free memory is touched once
per boot (bench/guestmem.py), and one untimed warm-up run comes first:
this VM backs never-touched guest memory lazily (DESIGN.md).

  bench/eager-throughput.py --build build --sizes 1024 --runs 5 [--json FILE]

The issue-level figure "dump and restore >= 1 GiB/s to and from tmpfs";
bench/run.sh measures whole migrations between network namespaces.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import guestmem


def die(msg):
    sys.exit("bench: " + msg)


def show(relive, path):
    out = subprocess.run([relive, "show", path], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["entries"][0]


def wait_file(path, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path):
            with open(path) as f:
                return f.read()
        time.sleep(0.005)
    die("timed out waiting for " + path)


def one_run(relive, victim, mib, base):
    work = tempfile.mkdtemp(prefix="v-", dir=base)
    imgs = os.path.join(work, "img")
    ready, verdict = os.path.join(work, "ready"), os.path.join(work, "verdict")
    with open(os.path.join(work, "victim.log"), "w") as log:
        child = subprocess.Popen([victim, "--mib", str(mib), "--workdir", work, "--ready", ready,
                                  "--verdict", verdict], stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    pid = None
    try:
        line = wait_file(ready, 120).split()
        if line[0] != "READY":
            die("victim not ready: " + " ".join(line))
        pid = int(line[1])
        t0 = time.time()
        subprocess.run([relive, "dump", "-t", str(pid), "-D", imgs], check=True)
        t_dump = time.time() - t0
        child.wait(timeout=30)  # reap at once, as a real parent would
        t1 = time.time()
        subprocess.run([relive, "restore", "-D", imgs, "-d"], check=True, stdout=subprocess.DEVNULL,
                       timeout=120)
        t_resumed = time.time()
        ds = show(relive, os.path.join(imgs, "stats-dump.img"))["dump"]
        os.kill(pid, signal.SIGUSR2)
        v = wait_file(verdict, 60)
        if not v.startswith("PASS"):
            die("victim did not pass after restore: " + v.strip())
        nbytes = int(ds["pages_written"]) * 4096
        frozen = t_resumed - int(ds["freeze_start_realtime_us"]) / 1e6
        return {
            "mib": mib,
            "bytes": nbytes,
            "dump_wall_s": t_dump,
            "memdump_s": int(ds["memdump_time_us"]) / 1e6,
            "dump_gib_s": nbytes / (int(ds["memdump_time_us"]) / 1e6) / 2**30,
            "restore_wall_s": t_resumed - t1,
            "restore_gib_s": nbytes / (t_resumed - t1) / 2**30,
            "frozen_window_s": frozen,
        }
    finally:
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if child.poll() is None:
            child.kill()
            child.wait()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--sizes", default="64,1024")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json")
    ap.add_argument("--tmpfs", default="/dev/shm")
    a = ap.parse_args()
    relive = os.path.abspath(os.path.join(a.build, "cli/relive"))
    victim = os.path.abspath(os.path.join(a.build, "test/victims/victim-mem"))
    for p in (relive, victim):
        if not os.access(p, os.X_OK):
            die("missing %s: build first" % p)
    guestmem.warm()
    base = tempfile.mkdtemp(prefix="relive-bench-", dir=a.tmpfs)
    results = []
    try:
        for mib in [int(s) for s in a.sizes.split(",")]:
            one_run(relive, victim, mib, base)  # untimed warm-up
            runs = [one_run(relive, victim, mib, base) for _ in range(a.runs)]
            results.append({"mib": mib, "runs": runs})
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("| size | dump GiB/s | restore GiB/s | frozen window ms | dump wall ms |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        med = lambda k: statistics.median(x[k] for x in r["runs"])
        rng = lambda k: (min(x[k] for x in r["runs"]), max(x[k] for x in r["runs"]))
        print("| %d MiB | %.2f (%.2f-%.2f) | %.2f (%.2f-%.2f) | %.1f (%.1f-%.1f) | %.1f |" % (
            r["mib"], med("dump_gib_s"), *rng("dump_gib_s"), med("restore_gib_s"),
            *rng("restore_gib_s"), med("frozen_window_s") * 1e3,
            *[x * 1e3 for x in rng("frozen_window_s")], med("dump_wall_s") * 1e3))
    print("(median of %d runs after one untimed warm-up; range in parentheses; images on %s)"
          % (a.runs, a.tmpfs))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"kind": "eager", "time": time.time(), "host": os.uname().nodename,
                       "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
