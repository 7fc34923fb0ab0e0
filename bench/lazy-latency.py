#!/usr/bin/env python3
"""Lazy migration on loopback: fault service latency and stream throughput.

    bench/lazy-latency.py --build DIR [--mib 1024] [--runs 5] [--ws 100] [--threads 1]

Runs in a private network namespace (re-executes itself under `unshare -n`,
only `lo` up): the benchmark workload (bench/workload.c: random reads and
writes over its whole memory, all the time) is dumped with `relive dump
--lazy-pages --address 127.0.0.1`, its image directory (no anonymous memory
in it) copied, then `relive lazy-pages` and `relive restore --lazy-pages`
bring it back in the same namespace. The guest's free memory is touched
once per boot and one untimed warm-up run comes first (this VM backs
never-used guest memory lazily: bench/guestmem.py). Per run it prints the
daemon's fault latency p50/p99/max (µs, from --stats-json), its stream
MiB/s, and the time from the restore returning to the last page in (the
daemon's exit); then the median of each over the runs. --json FILE keeps
every run. --threads 8 restores an 8-thread workload whose threads all
touch random pages at once (faults from many threads, one uffd). All of it runs in one autogroup at nice -10 (--group-nice) so
that other tenants of a shared machine perturb it less. The acceptance targets of lazy migration on loopback: fault p50
< 50 µs, p99 < 250 µs; stream >= 1 GiB/s; a 1 GiB workload complete within
2 s of the restore.
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


def wait_for(pred, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.005)
    raise RuntimeError("timed out waiting for " + what)


def status_byte(fd, proc, timeout, what):
    import select
    end = time.time() + timeout
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            if os.read(fd, 1) == b"":
                raise RuntimeError(what + " closed its status fd (exit %s)" % proc.poll())
            return time.time()
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %d" % (what, proc.returncode))
    raise RuntimeError("timed out waiting for " + what)


def wait_cpu(proc, timeout, what):
    """Reap proc the moment it exits (its pidfd, not a polling loop that would
    blur the completion time); returns the CPU seconds (user + system) it and
    its reaped children used."""
    import select
    pidfd = os.pidfd_open(proc.pid)
    try:
        if not select.select([pidfd], [], [], timeout)[0]:
            raise RuntimeError("timed out waiting for " + what)
    finally:
        os.close(pidfd)
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ru.ru_utime + ru.ru_stime


def one_run(a, base, port):
    relive = os.path.join(a.build, "cli/relive")
    wl = os.path.join(a.build, "bench/relive-workload")
    work = tempfile.mkdtemp(dir=base)
    img, dst = os.path.join(work, "img"), os.path.join(work, "dst")
    procs, rpid = [], None
    try:
        wlog = os.path.join(work, "workload.log")
        threads = ["-t", str(a.threads)] if a.threads > 1 else []
        w = subprocess.Popen([wl, "-m", str(a.mib), "-w", str(a.ws)] + threads,
                             stdout=open(wlog, "w"),
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append(w)
        wait_for(lambda: open(wlog).read().count("t=") >= 3, 300, "the workload")
        rfd, wfd = os.pipe()
        dump = subprocess.Popen([relive, "dump", "-t", str(w.pid), "-D", img, "--lazy-pages",
                                 "--address", "127.0.0.1", "--port", str(port),
                                 "--status-fd", str(wfd), "-o", os.path.join(work, "dump.log")],
                                pass_fds=(wfd,), stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(work, "dump.err"), "w"))
        procs.append(dump)
        os.close(wfd)
        try:
            status_byte(rfd, dump, 120, "dump --lazy-pages")
        finally:
            os.close(rfd)
        w.wait(timeout=30)
        shutil.copytree(img, dst)
        stats = os.path.join(work, "lp-stats.json")
        rfd, wfd = os.pipe()
        lp = subprocess.Popen([relive, "lazy-pages", "--address", "127.0.0.1", "--port",
                               str(port), "-D", dst, "--status-fd", str(wfd), "--stats-json",
                               stats, "-o", os.path.join(work, "lp.log")], pass_fds=(wfd,),
                              stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(work, "lp.err"), "w"))
        procs.append(lp)
        os.close(wfd)
        try:
            status_byte(rfd, lp, 60, "lazy-pages")
        finally:
            os.close(rfd)
        pidfile = os.path.join(work, "restored.pid")
        t0 = time.time()
        rs = subprocess.run([relive, "restore", "--lazy-pages", "-D", dst, "-d", "--pidfile",
                             pidfile, "-o", os.path.join(work, "restore.log")],
                            capture_output=True, text=True, timeout=600)
        t1 = time.time()
        if rs.returncode:
            raise RuntimeError("restore failed: " + rs.stderr.strip()[-300:])
        rpid = int(open(pidfile).read().split()[0])
        cpu_lp = wait_cpu(lp, 120, "lazy-pages")
        t2 = time.time()
        if lp.returncode:
            raise RuntimeError("lazy-pages exited with %d: %s" % (
                lp.returncode, open(os.path.join(work, "lp.err")).read()[-500:]))
        cpu_src = wait_cpu(dump, 30, "dump --lazy-pages")
        if dump.returncode:
            raise RuntimeError("dump --lazy-pages exited with %d" % dump.returncode)
        time.sleep(0.2)
        os.kill(rpid, signal.SIGKILL)
        rpid = None
        if "ok=0" in open(wlog).read():
            raise RuntimeError("the workload read a word it did not write (ok=0)")
        s = json.load(open(stats))
        lat = s.get("fault_latency_us", {})
        return {"p50": lat.get("p50"), "p99": lat.get("p99"), "max": lat.get("max"),
                "mib_s": s.get("mib_per_s"), "complete_s": t2 - t1, "restore_s": t1 - t0,
                # CPU seconds per GiB brought in: the source (its dump included) and
                # the daemon; steadier than MiB/s on a shared machine
                "cpu_src_s_gib": cpu_src / max(1e-9, s["bytes"] / 2**30),
                "cpu_lp_s_gib": cpu_lp / max(1e-9, s["bytes"] / 2**30),
                "stats": s}
    finally:
        if rpid:
            try:
                os.kill(rpid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ws", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1,
                    help="workload threads, all touching random pages at once")
    ap.add_argument("--tmpfs", default="/dev/shm")
    ap.add_argument("--json")
    ap.add_argument("--group-nice", type=int, default=-10,
                    help="nice of this run's autogroup (every process of the benchmark is in "
                    "it): other tenants of a shared machine perturb it less; 0 leaves it")
    a = ap.parse_args()
    a.build = os.path.abspath(a.build)
    if os.geteuid():
        sys.exit("lazy-latency: must run as root")
    if os.environ.get("RELIVE_LAZY_LAT_NS") != "1":
        env = dict(os.environ, RELIVE_LAZY_LAT_NS="1")
        os.execvpe("unshare", ["unshare", "-n", "--", "sh", "-c",
                               'ip link set lo up && exec "$@"', "sh", sys.executable,
                               os.path.abspath(__file__)] + sys.argv[1:], env)
    if a.group_nice:
        try:
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(a.group_nice))
        except OSError as e:
            print("lazy-latency: cannot set the autogroup's nice: %s" % e, file=sys.stderr)
    guestmem.warm()
    base = tempfile.mkdtemp(prefix="relive-lazylat-", dir=a.tmpfs)
    runs = []
    try:
        one_run(a, base, 27900)
        for i in range(a.runs):
            r = one_run(a, base, 27901 + i)
            runs.append(r)
            print("run %d: fault p50 %s us, p99 %s us, max %s us, stream %.0f MiB/s, "
                  "complete %.2f s after the restore (faults %s; CPU s/GiB: source %.2f, "
                  "daemon %.2f)" % (
                      i + 1, r["p50"], r["p99"], r["max"], r["mib_s"], r["complete_s"],
                      r["stats"].get("faults"), r["cpu_src_s_gib"], r["cpu_lp_s_gib"]),
                  flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(runs, f, indent=1)
    med = {k: statistics.median(r[k] for r in runs) for k in
           ("p50", "p99", "max", "mib_s", "complete_s", "cpu_src_s_gib", "cpu_lp_s_gib")}
    print("median of %d (%d workload thread%s): fault p50 %.0f us, p99 %.0f us, max %.0f us, "
          "stream %.0f MiB/s, complete %.2f s; CPU s/GiB: source %.2f, daemon %.2f" % (
              len(runs), a.threads, "s" if a.threads > 1 else "", med["p50"], med["p99"],
              med["max"], med["mib_s"], med["complete_s"], med["cpu_src_s_gib"],
              med["cpu_lp_s_gib"]))


if __name__ == "__main__":
    main()
