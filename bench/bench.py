#!/usr/bin/env python3
"""The migration benchmark driver (bench/run.sh runs it after building).

Creates two network namespaces joined by a veth pair ("source" and
"destination" host), and for every link profile (loopback: both ends in the
source namespace on 127.0.0.1; plain veth, tbf-shaped to 10 and 1 Gbit/s,
1 ms netem delay where the kernel has netem) and memory
size migrates the benchmark workload (bench/workload.c) from one namespace
to the other N times, eager (stop-and-copy: dump, copy the image directory
over the link, restore) and lazy (dump --lazy-pages stays up as page server,
the image directory -- no anonymous memory in it -- is copied over, then
lazy-pages + restore --lazy-pages). With CRIU=/path/to/criu the same is done
with criu. Every figure of every run goes to bench/results/<date>-<host>.json;
report.py turns that into the Markdown table and the PNG plots.

Every process started here is killed, the namespaces deleted (which also
removes the veth pair and its qdiscs) on every path, Ctrl-C included.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import guestmem

HERE = os.path.dirname(os.path.abspath(__file__))
SRC_ADDR, DST_ADDR = "10.232.0.1", "10.232.0.2"
PAGE = 4096
BEFORE_S, AFTER_S = 2.0, 5.0
LAZY_UNAVAILABLE = "not run: lazy-pages not available"


class RunError(Exception):
    pass


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def sh(*cmd, check=True, **kw):
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True, **kw)


class Procs:
    """Every process we start, so that each is killed on every path."""

    def __init__(self):
        self.procs = []
        self.pids = set()

    def start(self, cmd, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(cmd, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def kill_all(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        self.procs = []
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.pids = set()


class Net:
    """Two namespaces and a veth pair; profiles are qdiscs on both ends."""

    def __init__(self):
        tag = str(os.getpid())
        self.src, self.dst = "rbench-src-" + tag, "rbench-dst-" + tag
        self.vs, self.vd = "rbs" + tag, "rbd" + tag
        self.up = False

    def setup(self):
        self.up = True
        sh("ip", "netns", "add", self.src)
        sh("ip", "netns", "add", self.dst)
        sh("ip", "link", "add", self.vs, "netns", self.src, "type", "veth", "peer", "name",
           self.vd, "netns", self.dst)
        for ns, dev, addr in ((self.src, self.vs, SRC_ADDR), (self.dst, self.vd, DST_ADDR)):
            sh("ip", "-n", ns, "addr", "add", addr + "/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def teardown(self):
        if not self.up:
            return
        for ns in (self.src, self.dst):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.up = False

    def qdisc(self, args):
        """Put ARGS (a tc qdisc spec) on both ends; None clears. Returns an error or None."""
        for ns, dev in ((self.src, self.vs), (self.dst, self.vd)):
            subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root"],
                           capture_output=True)
            if args:
                r = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev,
                                    "root"] + args, capture_output=True, text=True)
                if r.returncode:
                    return (r.stderr.strip() or "tc failed").splitlines()[0]
        return None

    def wire_bytes(self, loop=False):
        base = "/sys/class/net/%s/statistics/" % ("lo" if loop else self.vs)
        out = sh("ip", "netns", "exec", self.src, "cat", base + "tx_bytes", base + "rx_bytes")
        tx, rx = out.stdout.split()
        return int(tx) + int(rx)


LOOPBACK = "loopback"
PROFILES = [
    (LOOPBACK, "loopback, one namespace, 127.0.0.1", None),
    ("plain", "plain veth", None),
    ("10gbit", "veth, tbf 10 Gbit/s", ["tbf", "rate", "10gbit", "burst", "1250000", "latency",
                                        "50ms"]),
    ("1gbit", "veth, tbf 1 Gbit/s", ["tbf", "rate", "1gbit", "burst", "125000", "latency",
                                      "50ms"]),
    ("wan1ms", "veth, netem delay 1 ms", ["netem", "delay", "1ms"]),
]


def wait_for(pred, timeout, what, proc=None):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            raise RunError("%s: exited with %d" % (what, proc.returncode))
        time.sleep(0.002)
    raise RunError("timed out waiting for " + what)


def read_status_byte(fd, proc, timeout, what):
    """Wait for the one byte a --status-fd writer sends when ready."""
    import select
    end = time.time() + timeout
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            if os.read(fd, 1) == b"":
                raise RunError("%s closed its status fd without saying ready (exit %s)"
                               % (what, proc.poll()))
            return time.time()
        if proc.poll() is not None:
            raise RunError("%s exited with %d before it was ready" % (what, proc.returncode))
    raise RunError("timed out waiting for %s to be ready" % what)


def waiter(proc, box):
    """Record the wall time at which PROC exits (a thread per daemon)."""
    def run():
        proc.wait()
        box["exit_t"] = time.time()
        box["rc"] = proc.returncode
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


class Bench:
    def __init__(self, a):
        self.a = a
        self.relive = os.path.join(a.build, "cli/relive")
        self.workload = os.path.join(a.build, "bench/relive-workload")
        self.net = Net()
        self.procs = Procs()
        self.port = 27100
        self.loop = False  # the loopback profile: both "hosts" are the source namespace
        self.lazy_ok = self.relive_has_lazy()

    def relive_has_lazy(self):
        """--help lists lazy-pages, or both halves no longer say "not available"."""
        out = sh(self.relive, "--help").stdout
        if re.search(r"^\s+\S+ lazy-pages", out, re.M):
            return True
        probe = sh(self.relive, "lazy-pages", "-D", "/nonexistent", "--address", "127.0.0.1",
                   "--port", "1", check=False)
        with open(self.relive, "rb") as f:
            dump_lazy_missing = b"dump --lazy-pages is not available" in f.read()
        return "not available" not in probe.stderr and not dump_lazy_missing

    def ns(self, which):
        return ["ip", "netns", "exec", self.net.src if which == "src" or self.loop
                else self.net.dst]

    def addr(self, which):
        return "127.0.0.1" if self.loop else SRC_ADDR if which == "src" else DST_ADDR

    def next_port(self):
        self.port += 1
        return self.port

    def log_lines(self, path):
        with open(path, errors="replace") as f:
            return f.read().splitlines()

    def count_hist(self, path):
        return sum(1 for x in self.log_lines(path) if x.startswith("hist "))

    def start_workload(self, mib, work):
        wlog = os.path.join(work, "workload.log")
        out = open(wlog, "w")
        p = self.procs.start(self.ns("src") + [self.workload, "-m", str(mib), "-w",
                                               str(self.a.ws), "-g", "1000"], stdout=out,
                             stderr=subprocess.STDOUT, close_fds=True)
        out.close()
        wait_for(lambda: sum(1 for x in self.log_lines(wlog) if x.startswith("t=")) >= 3,
                 300, "the workload to start", p)
        return p, wlog

    def hist_now(self, pid, wlog, n, timeout=20):
        os.kill(pid, signal.SIGUSR1)
        wait_for(lambda: self.count_hist(wlog) >= n, timeout, "the workload's histogram")

    def xfer_start(self, srcdir, dstdir, unlink):
        """Start and connect both ends of the image copy (before the dump)."""
        port = self.next_port()
        xf = os.path.join(HERE, "xfer.py")
        recv = self.procs.start(self.ns("dst") + ["python3", xf, "recv", self.addr("dst"),
                                                  str(port), dstdir], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        if recv.stdout.readline().strip() != "listening":
            raise RunError("image copy receiver failed: " + recv.stderr.read().strip())
        unl = ["--unlink"] if unlink else []
        send = self.procs.start(self.ns("src") + ["python3", xf, "send", self.addr("dst"),
                                                  str(port), srcdir] + unl,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        if send.stdout.readline().strip() != "connected":
            raise RunError("image copy sender failed: " + send.stderr.read().strip())
        return recv, send

    def xfer_go(self, ends):
        recv, send = ends
        send.stdin.write("go\n")
        send.stdin.close()
        if send.wait(timeout=600) or recv.wait(timeout=60):
            raise RunError("image copy failed: " + send.stderr.read().strip() +
                           recv.stderr.read().strip())

    def one_run(self, tool, mode, mib, work, timed=True):
        """One migration; returns the dict of every figure (raises RunError)."""
        img, dst = os.path.join(work, "img"), os.path.join(work, "dst")
        r = {"tool": tool, "mode": mode, "mib": mib}
        exe = self.relive if tool == "relive" else self.a.criu
        wp, wlog = self.start_workload(mib, work)
        pid = wp.pid
        if timed:
            time.sleep(0.5)
        self.hist_now(pid, wlog, 1)  # drop start-up accesses
        if timed:
            time.sleep(BEFORE_S)
        self.hist_now(pid, wlog, 2)  # the accesses of the 2 s before the dump
        xf = self.xfer_start(img, dst, unlink=(mode == "eager"))
        wire0 = self.net.wire_bytes(self.loop)
        t0 = time.time()
        pidfile = os.path.join(work, "restored.pid")
        if mode == "eager":
            d = sh(*self.ns("src"), exe, "dump", "-t", str(pid), "-D", img, "-o",
                   os.path.join(work, "dump.log"), *(["--shell-job"] if tool == "criu" else []),
                   check=False)
            t_dump = time.time()
            wp.wait(timeout=30)  # reap the dumped workload at once, as its parent
            if d.returncode:
                raise RunError("dump failed: " + d.stderr.strip()[-300:])
            self.xfer_go(xf)
            t_xfer = time.time()
            rs = sh(*self.ns("dst"), exe, "restore", "-D", dst, "-d", "--pidfile", pidfile, "-o",
                    os.path.join(work, "restore.log"),
                    *(["--shell-job"] if tool == "criu" else []), check=False, timeout=600)
            t_rest = time.time()
            if rs.returncode:
                raise RunError("restore failed: " + rs.stderr.strip()[-300:])
            lp_box, ps_box = None, None
        else:
            port = self.next_port()
            rfd, wfd = os.pipe()
            dump = self.procs.start(self.ns("src") + [
                exe, "dump", "-t", str(pid), "-D", img, "--lazy-pages",
                "--address", self.addr("src"), "--port", str(port), "--status-fd", str(wfd), "-o",
                os.path.join(work, "dump.log")] + (["--shell-job"] if tool == "criu" else []),
                pass_fds=(wfd,), stdout=subprocess.DEVNULL,
                stderr=open(os.path.join(work, "dump.err"), "w"))
            os.close(wfd)
            try:
                t_dump = read_status_byte(rfd, dump, 120, "dump --lazy-pages")
            finally:
                os.close(rfd)
            ps_box = {}
            waiter(dump, ps_box)
            wp.wait(timeout=30)
            self.xfer_go(xf)
            t_xfer = time.time()
            stats = os.path.join(work, "lp-stats.json")
            rfd, wfd = os.pipe()
            if tool == "relive":
                lcmd = [exe, "lazy-pages", "--address", self.addr("src"), "--port", str(port),
                        "-D", dst, "--status-fd", str(wfd), "--stats-json", stats]
            else:
                lcmd = [exe, "lazy-pages", "--page-server", "--address", self.addr("src"),
                        "--port", str(port), "-D", dst, "--status-fd", str(wfd)]
            lp = self.procs.start(self.ns("dst") + lcmd + ["-o", os.path.join(work, "lp.log")],
                                  pass_fds=(wfd,), stdout=subprocess.DEVNULL,
                                  stderr=open(os.path.join(work, "lp.err"), "w"))
            os.close(wfd)
            try:
                read_status_byte(rfd, lp, 60, "lazy-pages")
            finally:
                os.close(rfd)
            lp_box = {}
            waiter(lp, lp_box)
            t_lp = time.time()
            rs = sh(*self.ns("dst"), exe, "restore", "--lazy-pages", "-D", dst, "-d",
                    "--pidfile", pidfile, "-o", os.path.join(work, "restore.log"),
                    *(["--shell-job"] if tool == "criu" else []), check=False, timeout=600)
            t_rest = time.time()
            if rs.returncode:
                raise RunError("restore --lazy-pages failed: " + rs.stderr.strip()[-300:])
            r["lazy_pages_start_s"] = t_lp - t_xfer
        rpid = int(open(pidfile).read().split()[0])
        self.procs.pids.add(rpid)
        # hist lines 3 and 4: the lazy phase (restore to the last page in) and
        # the 5 s after the restore, whichever ends first comes first
        deadline = t_rest + (AFTER_S if timed else 0)
        if lp_box is not None:
            while "exit_t" not in lp_box and time.time() < deadline:
                time.sleep(0.001)
            if "exit_t" in lp_box:
                self.hist_now(rpid, wlog, 3)
                time.sleep(max(0.0, deadline - time.time()))
                self.hist_now(rpid, wlog, 4)
                r["hist_plan"] = "lazy,rest"
            else:
                self.hist_now(rpid, wlog, 3)
                wait_for(lambda: "exit_t" in lp_box, 900, "lazy-pages to finish")
                self.hist_now(rpid, wlog, 4)
                r["hist_plan"] = "after,lazyrest"
            wait_for(lambda: "exit_t" in ps_box, 60, "the page server to exit")
            if lp_box["rc"]:
                raise RunError("lazy-pages exited with %d" % lp_box["rc"])
            if ps_box["rc"]:
                raise RunError("the page server (dump --lazy-pages) exited with %d" % ps_box["rc"])
        else:
            time.sleep(max(0.0, deadline - time.time()))
            self.hist_now(rpid, wlog, 3)
            r["hist_plan"] = "after"
        os.kill(rpid, signal.SIGKILL)
        wire = self.net.wire_bytes(self.loop) - wire0
        if not timed:
            return None
        return self.figures(r, tool, mode, mib, work, img, dst, wlog, t0, t_dump, t_xfer, t_rest,
                            lp_box, wire)

    def dump_stats(self, tool, img, dst):
        if tool != "relive":
            return {}
        for d in (img, dst):
            p = os.path.join(d, "stats-dump.img")
            if os.path.exists(p):
                out = sh(self.relive, "show", p).stdout
                return json.loads(out)["entries"][0]["dump"]
        return {}

    def figures(self, r, tool, mode, mib, work, img, dst, wlog, t0, t_dump, t_xfer, t_rest,
                lp_box, wire):
        ds = self.dump_stats(tool, img, dst)
        freeze = int(ds["freeze_start_realtime_us"]) / 1e6 if "freeze_start_realtime_us" in ds \
            else t0
        lines = self.log_lines(wlog)
        ticks, gaps, hists, ok = [], [], [], True
        for x in lines:
            if x.startswith("t="):
                kv = dict(f.split("=") for f in x.split())
                ticks.append((int(kv["t"]) / 1e6, int(kv["ops"]), int(kv["counter"])))
                ok = ok and kv["ok"] == "1"
            elif x.startswith("gap "):
                kv = dict(f.split("=") for f in x.split()[1:])
                gaps.append((int(kv["start"]) / 1e9, int(kv["end"]) / 1e9, kv["in"]))
            elif x.startswith("hist "):
                f = x.split()
                hists.append({int(b): int(c) for b, c in (y.split(":") for y in f[2:])})
        if not ok:
            raise RunError("the workload read a word that was not what it wrote (ok=0)")
        # The migration gap is the one gap of the workload's timeline that holds
        # an instant when it certainly was not running: the tree fully frozen
        # (freeze start + freezing time; the start is stamped before the
        # pre-freeze smaps read, which grows with memory: ~0.1 s at 8 GiB), or,
        # without relive's stats, the dump done. Gaps never overlap: at most one.
        held = freeze + int(ds["freezing_time_us"]) / 1e6 if "freezing_time_us" in ds \
            else t_dump
        cand = [g for g in gaps if g[0] <= held <= g[1]]
        if not cand:
            raise RunError("the workload logged no gap around %.6f (frozen since then; "
                           "freeze started at %.6f)" % (held, freeze))
        mg = cand[0]
        resume = mg[1]
        before = [t for t in ticks if freeze - BEFORE_S <= t[0] <= freeze]
        after = [t for t in ticks if resume < t[0] <= resume + AFTER_S]
        # the victim's own gap bounds the migration: a tick printed after the dump
        # started but before the freeze took hold counts as before. A tick is
        # stamped in µs from the reading that ended the previous access: a freeze
        # inside that access gives a tick stamped at the gap's end, truncated to
        # just below it. Nothing reads the clock inside a gap: after its start is after.
        cnt_before = max((t[2] for t in ticks if t[0] <= mg[0]), default=0)
        cnt_after = min((t[2] for t in ticks if t[0] > mg[0]), default=0)
        if cnt_after != cnt_before + 1:
            raise RunError("counter went from %d to %d across the migration"
                           % (cnt_before, cnt_after))
        slow = [int((g[1] - g[0]) * 1e9) for g in gaps
                if g is not mg and g[2] == "op" and resume <= g[0] <= resume + AFTER_S + 1]
        r.update({
            "ok": True,
            "freeze_realtime_s": freeze,
            # the victim ran this long after the dump's freeze started (pre-freeze work)
            "freeze_to_gap_ms": (mg[0] - freeze) * 1e3,
            "frozen_window_ms": (mg[1] - mg[0]) * 1e3,
            "frozen_window_driver_ms": (t_rest - freeze) * 1e3,
            "dump_s": t_dump - t0,
            "copy_s": t_xfer - t_dump,
            "restore_s": t_rest - t_xfer,
            "memory_bytes": mib << 20,
            "wire_bytes": wire,
            "ops_before": [(t[0] - freeze, t[1]) for t in before],
            "ops_after": [(t[0] - freeze, t[1]) for t in after],
            "access_hist_before": hists[1] if len(hists) > 1 else {},
            "access_slow_after_ns": slow,
            "dump_stats": ds,
        })
        plan = r.pop("hist_plan")
        h3 = hists[2] if len(hists) > 2 else {}
        h4 = hists[3] if len(hists) > 3 else {}
        both = {b: h3.get(b, 0) + h4.get(b, 0) for b in set(h3) | set(h4)}
        r["access_hist_after"] = h3 if plan == "after" else both if plan == "lazy,rest" else h3
        if plan != "after":
            end = lp_box["exit_t"]
            r["access_hist_lazy"] = h3 if plan == "lazy,rest" else both
            r["access_slow_lazy_ns"] = [int((g[1] - g[0]) * 1e9) for g in gaps
                                        if g is not mg and g[2] == "op" and resume <= g[0] <= end]
        mb = sum(t[1] for t in before) / max(1, len(before))
        ma = sum(t[1] for t in after) / max(1, len(after))
        r["ops_per_100ms_before"] = mb
        r["ops_per_100ms_after"] = ma
        r["slowdown_pct"] = (1 - ma / mb) * 100 if mb else None
        if mode == "eager":
            r["total_s"] = t_rest - freeze
            img_bytes = sum(os.path.getsize(os.path.join(dst, f)) for f in os.listdir(dst))
            r["image_bytes"] = img_bytes
            r["stream_mib_s"] = img_bytes / (1 << 20) / max(1e-9, t_xfer - t_dump)
        else:
            r["total_s"] = lp_box["exit_t"] - freeze
            st = os.path.join(work, "lp-stats.json")
            if os.path.exists(st):
                with open(st) as f:
                    s = json.load(f)
                r["lazy_stats"] = s
                r["stream_mib_s"] = s.get("mib_per_s")
                lat = s.get("fault_latency_us", {})
                r["fault_p50_us"], r["fault_p99_us"], r["fault_max_us"] = (
                    lat.get("p50"), lat.get("p99"), lat.get("max"))
        return r

    def mem_fits(self, mib):
        with open("/proc/meminfo") as f:
            avail = int(re.search(r"MemAvailable:\s+(\d+)", f.read()).group(1)) * 1024
        free_shm = shutil.disk_usage(self.a.tmpfs).free
        need = (mib << 20) * 2.3 + (512 << 20)
        if need > avail or (mib << 20) * 1.2 > free_shm:
            return "needs ~%.1f GiB free, %.1f GiB available" % (need / 2**30, avail / 2**30)
        return None

    def run(self):
        a = self.a
        res = {"host": socket.gethostname(), "kernel": os.uname().release,
               "date": datetime.datetime.now().isoformat(timespec="seconds"),
               "runs_per_cell": a.runs, "working_set_pct": a.ws, "sizes_mib": a.sizes,
               "quick": a.quick, "warmup": "the guest's free memory touched once per boot, then "
               "one untimed eager migration of the largest size (this VM backs never-used "
               "guest memory lazily)",
               "tools": {"relive": self.relive, "criu": a.criu}, "profiles": [], "cells": []}
        guestmem.warm(log=log)
        self.net.setup()
        base = tempfile.mkdtemp(prefix="relive-bench-", dir=a.tmpfs)
        try:
            sizes = []
            for mib in a.sizes:
                why = self.mem_fits(mib)
                if why:
                    log("skipping %d MiB: %s" % (mib, why))
                    res.setdefault("skipped_sizes", {})[str(mib)] = why
                else:
                    sizes.append(mib)
            if sizes:
                log("warm-up: one untimed migration of %d MiB" % max(sizes))
                w = tempfile.mkdtemp(dir=base)
                try:
                    self.one_run("relive", "eager", max(sizes), w, timed=False)
                finally:
                    self.procs.kill_all()
                    shutil.rmtree(w, ignore_errors=True)
            for key, desc, qd in PROFILES:
                if key not in a.profiles:
                    continue
                self.loop = key == LOOPBACK
                err = self.net.qdisc(qd)
                prof = {"key": key, "desc": desc, "tc": " ".join(qd) if qd else None}
                res["profiles"].append(prof)
                if err:
                    prof["skipped"] = "tc qdisc add ... %s failed: %s" % (qd[0], err)
                    log("profile %s skipped: %s" % (key, err))
                    continue
                for mib in sizes:
                    for tool in ("relive", "criu"):
                        for mode in ("eager", "lazy"):
                            res["cells"].append(self.cell(key, tool, mode, mib, base))
                            self.save(res)
                self.net.qdisc(None)
        finally:
            self.procs.kill_all()
            self.net.teardown()
            shutil.rmtree(base, ignore_errors=True)
        self.save(res)
        return res

    def cell(self, prof, tool, mode, mib, base):
        c = {"profile": prof, "tool": tool, "mode": mode, "mib": mib, "runs": []}
        if tool == "criu" and not self.a.criu:
            c["not_run"] = "not run: CRIU not set"
            return c
        if tool == "relive" and mode == "lazy" and not self.lazy_ok:
            c["not_run"] = LAZY_UNAVAILABLE
            return c
        for i in range(self.a.runs):
            w = tempfile.mkdtemp(dir=base)
            t = time.time()
            try:
                r = self.one_run(tool, mode, mib, w)
                c["runs"].append(r)
                log("%s %s %s %d MiB run %d: frozen %.1f ms, total %.2f s (%.1f s wall)" % (
                    prof, tool, mode, mib, i + 1, r["frozen_window_ms"], r["total_s"],
                    time.time() - t))
            except (RunError, subprocess.SubprocessError, OSError) as e:
                c.setdefault("failures", []).append(str(e))
                log("%s %s %s %d MiB run %d FAILED: %s" % (prof, tool, mode, mib, i + 1, e))
                self.keep_logs(w, c)
            finally:
                self.procs.kill_all()
                shutil.rmtree(w, ignore_errors=True)
        return c

    def keep_logs(self, w, c):
        """Keep the tail of relive's logs of a failed run in the results."""
        tails = {}
        for n in ("dump.log", "restore.log", "lp.log", "dump.err", "lp.err"):
            for d in (w, os.path.join(w, "img"), os.path.join(w, "dst")):
                p = os.path.join(d, n)
                if os.path.exists(p):
                    with open(p, errors="replace") as f:
                        tails[n] = f.read()[-2000:]
        c.setdefault("failure_logs", []).append(tails)

    def save(self, res):
        os.makedirs(self.a.out, exist_ok=True)
        with open(self.a.json, "w") as f:
            json.dump(res, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True, help="relive build directory")
    ap.add_argument("--quick", action="store_true",
                    help="64 and 512 MiB, plain profile, 3 runs (< 3 min)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sizes", default="64,512,2048,8192", help="MiB, comma-separated")
    ap.add_argument("--profiles", default="loopback,plain,10gbit,1gbit,wan1ms")
    ap.add_argument("--ws", type=int, default=100, help="working set, percent of the memory")
    ap.add_argument("--tmpfs", default="/dev/shm", help="where image directories go")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    a = ap.parse_args()
    if a.quick:
        a.sizes, a.profiles, a.runs = "64,512", "plain", 3
    a.sizes = [int(x) for x in a.sizes.split(",")]
    a.profiles = a.profiles.split(",")
    a.build = os.path.abspath(a.build)
    a.criu = os.environ.get("CRIU") or None
    host = socket.gethostname()
    a.json = os.path.join(a.out, "%s-%s.json" % (
        datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S"), host))
    if os.geteuid():
        sys.exit("bench: must run as root (network namespaces, dump, restore)")
    b = Bench(a)
    if not b.lazy_ok:
        log("relive --help does not list lazy-pages: lazy cells are not run")

    def on_signal(sig, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        b.run()
    except KeyboardInterrupt:
        sys.exit("bench: interrupted; processes killed, namespaces deleted")
    print(a.json)


if __name__ == "__main__":
    main()
