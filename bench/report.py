#!/usr/bin/env python3
"""Turn one bench/results/*.json (written by bench.py) into the Markdown
table on stdout and three PNG plots beside the JSON (or in --img-dir):

  <name>-frozen.png   frozen window vs. memory size, eager vs. lazy, log-log
  <name>-ops.png      workload ops per 100 ms around the migration
  <name>-cdf.png      CDF of the workload's memory-access latency after the
                      restore (eager vs. lazy), with lazy-pages' own fault
                      service p50/p99/max marked

Every cell is "median (min-max)" over the runs of that cell.

  report.py RESULTS.json [--img-dir DIR] [--prefix NAME]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

FIG = [  # key, header, scale, format
    ("frozen_window_ms", "frozen window (ms)", 1, "%.1f"),
    ("total_s", "total migration (s)", 1, "%.2f"),
    ("dump_s", "dump (s)", 1, "%.3f"),
    ("copy_s", "image copy (s)", 1, "%.3f"),
    ("restore_s", "restore (s)", 1, "%.3f"),
    ("fault_p50_us", "fault p50 (µs)", 1, "%.0f"),
    ("fault_p99_us", "fault p99 (µs)", 1, "%.0f"),
    ("fault_max_us", "fault max (µs)", 1, "%.0f"),
    ("access_p99_after_us", "access p99, 5 s after (µs)", 1, "%.1f"),
    ("access_p99_lazy_us", "access p99, lazy phase (µs)", 1, "%.1f"),
    ("slowdown_pct", "slowdown 5 s after (%)", 1, "%.1f"),
    ("stream_mib_s", "stream (MiB/s)", 1, "%.0f"),
    ("wire_per_mem", "wire / memory", 1, "%.3f"),
]
# an access slower than this is a fault (or a preemption), not a memory access
SLOW_NS = 2000
MAIN = ("frozen_window_ms", "total_s", "slowdown_pct")


def hist_quantiles(h, slow, qs):
    """Quantiles (ns) of a bucket histogram {lower_ns: count} plus raw slow samples."""
    items = sorted([(int(k), v) for k, v in h.items()] + [(s, 1) for s in slow])
    n = sum(v for _, v in items)
    out = []
    for q in qs:
        want, acc = q * n, 0
        for b, v in items:
            acc += v
            if acc >= want:
                out.append(b)
                break
        else:
            out.append(None)
    return out


def derived(r):
    r = dict(r)
    if r.get("memory_bytes"):
        r["wire_per_mem"] = r["wire_bytes"] / r["memory_bytes"]
    for ph in ("after", "lazy"):
        h = r.get("access_hist_" + ph)
        if h:
            q = hist_quantiles(h, r.get("access_slow_%s_ns" % ph, []), [0.99])[0]
            r["access_p99_%s_us" % ph] = q / 1e3 if q is not None else None
    return r


def cell_text(c, key, fmt):
    if c.get("not_run"):
        return c["not_run"]
    vals = [derived(r).get(key) for r in c["runs"]]
    vals = [v for v in vals if v is not None]
    fails = len(c.get("failures", []))
    if not vals:
        return ("failed (%d runs)" % fails) if fails else "—"
    med = statistics.median(vals)
    s = fmt % med
    if len(vals) > 1:
        s += " (" + fmt % min(vals) + "–" + fmt % max(vals) + ")"
    if fails:
        s += " [%d failed]" % fails
    return s


def table(res):
    out = []
    profs = [p for p in res["profiles"]]
    cells = {(c["profile"], c["tool"], c["mode"], c["mib"]): c for c in res["cells"]}
    rows = sorted({(c["mib"], c["tool"], c["mode"]) for c in res["cells"]},
                  key=lambda x: (x[0], x[1] != "relive", x[2] != "eager"))
    out.append("Host %s, kernel %s, %s; %d runs per cell, median (min–max); working set %d%%; "
               "%s." % (res["host"], res["kernel"], res["date"], res["runs_per_cell"],
                        res["working_set_pct"], res["warmup"]))
    for mib, why in sorted(res.get("skipped_sizes", {}).items(), key=lambda x: int(x[0])):
        out.append("\n%s MiB skipped: %s." % (mib, why))
    for p in profs:
        if p.get("skipped"):
            out.append("\nProfile **%s** (%s) skipped: %s." % (p["key"], p["desc"], p["skipped"]))
    live = [p for p in profs if not p.get("skipped")]
    if not live:
        return "\n".join(out)
    # the summary: one column group per profile
    out.append("\n### Summary (column group per link profile)\n")
    hdr = ["size", "tool", "mode"]
    for p in live:
        hdr += ["%s: %s" % (p["key"], h) for k, h, _, _ in FIG if k in MAIN]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(hdr) - 3)) + "|")
    for mib, tool, mode in rows:
        line = ["%d MiB" % mib, tool, mode]
        nr = {cells[k].get("not_run") for k in cells if k[1:] == (tool, mode, mib)}
        if len(nr) == 1 and None not in nr:
            out.append("| " + " | ".join(line + [nr.pop()] + [""] * (len(hdr) - 4)) + " |")
            continue
        for p in live:
            c = cells.get((p["key"], tool, mode, mib))
            for k, h, _, f in FIG:
                if k in MAIN:
                    line.append(cell_text(c, k, f) if c else "—")
        out.append("| " + " | ".join(line) + " |")
    # one detail table per profile: every figure
    for p in live:
        out.append("\n### Every figure, profile %s (%s)\n" % (p["key"], p["desc"]))
        hdr = ["size", "tool", "mode"] + [h for _, h, _, _ in FIG]
        out.append("| " + " | ".join(hdr) + " |")
        out.append("|" + "|".join(["---"] * 3 + ["---:"] * len(FIG)) + "|")
        for mib, tool, mode in rows:
            c = cells.get((p["key"], tool, mode, mib))
            if not c:
                continue
            if c.get("not_run"):
                out.append("| %d MiB | %s | %s | %s |" % (mib, tool, mode, c["not_run"]) +
                           " |" * (len(FIG) - 1))
                continue
            out.append("| %d MiB | %s | %s | " % (mib, tool, mode) +
                       " | ".join(cell_text(c, k, f) for k, _, _, f in FIG) + " |")
    fails = [(c, f) for c in res["cells"] for f in c.get("failures", [])]
    if fails:
        out.append("\nFailed runs:\n")
        for c, f in fails:
            out.append("- %s %s %s %d MiB: %s" % (c["profile"], c["tool"], c["mode"], c["mib"],
                                                   f.replace("\n", " ")[:300]))
    return "\n".join(out)


def median_run(c, key="frozen_window_ms"):
    runs = sorted(c["runs"], key=lambda r: r[key])
    return runs[len(runs) // 2] if runs else None


def gnuplot(script):
    if not shutil.which("gnuplot"):
        print("report: gnuplot not found (apt-get install gnuplot-nox): no plots",
              file=sys.stderr)
        return False
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    return True


def plots(res, imgdir, prefix):
    os.makedirs(imgdir, exist_ok=True)
    data = tempfile.mkdtemp(prefix="relive-plot-")
    try:
        return draw(res, imgdir, prefix, data)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def draw(res, imgdir, prefix, data):
    done = [c for c in res["cells"] if c["runs"]]
    if not done:
        return []
    ok = subprocess.run(["gnuplot", "-e", "set terminal pngcairo"], capture_output=True)
    term = "set terminal %s size 1000,620 font 'DejaVu Sans,11'\n" % (
        "pngcairo" if ok.returncode == 0 else "png")
    made = []

    # 1. frozen window vs. memory size
    series = sorted({(c["profile"], c["tool"], c["mode"]) for c in done})
    plot = []
    for prof, tool, mode in series:
        fn = os.path.join(data, "frozen-%s-%s-%s.dat" % (prof, tool, mode))
        with open(fn, "w") as f:
            for c in sorted((c for c in done if (c["profile"], c["tool"], c["mode"]) ==
                             (prof, tool, mode)), key=lambda c: c["mib"]):
                v = [r["frozen_window_ms"] for r in c["runs"]]
                f.write("%d %f %f %f\n" % (c["mib"], statistics.median(v), min(v), max(v)))
        plot.append("'%s' using 1:2:3:4 with yerrorlines lw 2 pt 7 title '%s %s, %s'"
                    % (fn, tool, mode, prof))
    out = os.path.join(imgdir, prefix + "-frozen.png")
    if gnuplot(term + """set output '%s'
set title 'Frozen window vs. memory size (median, bars: min-max)'
set logscale xy
set xlabel 'workload memory (MiB)'
set ylabel 'frozen window: last instruction before to first after (ms)'
set key top left
set grid
set xtics (64, 512, 2048, 8192)
plot %s
""" % (out, ", ".join(plot))):
        made.append(out)

    # 2. ops per 100 ms around the migration (median run of the largest size, first profile)
    prof = done[0]["profile"]
    mib = max(c["mib"] for c in done if c["profile"] == prof)
    plot = []
    for c in done:
        if c["profile"] != prof or c["mib"] != mib:
            continue
        r = median_run(c)
        fn = os.path.join(data, "ops-%s-%s.dat" % (c["tool"], c["mode"]))
        with open(fn, "w") as f:
            for t, ops in r["ops_before"]:
                f.write("%f %d\n" % (t, ops))
            f.write("\n")
            for t, ops in r["ops_after"]:
                f.write("%f %d\n" % (t, ops))
        plot.append("'%s' using 1:($2/1000) with linespoints lw 2 pt 7 ps 0.6 title "
                    "'%s %s (frozen %.0f ms)'" % (fn, c["tool"], c["mode"],
                                                 r["frozen_window_ms"]))
    out = os.path.join(imgdir, prefix + "-ops.png")
    if plot and gnuplot(term + """set output '%s'
set title 'Workload throughput around the migration (%d MiB, %s; median run)'
set xlabel 'time since the freeze (s)'
set ylabel 'operations per 100 ms (thousands)'
set key bottom right
set grid
set yrange [0:*]
set arrow from 0, graph 0 to 0, graph 1 nohead dt 2
set label 'freeze' at 0.05, graph 0.95
plot %s
""" % (out, mib, prof, ", ".join(plot))):
        made.append(out)

    # 3. CDF of access latency after the restore, all runs of that cell pooled
    plot, marks = [], []
    for c in done:
        if c["profile"] != prof or c["mib"] != mib:
            continue
        ph = "lazy" if c["mode"] == "lazy" else "after"
        pool = {}
        for r in c["runs"]:
            for b, n in r.get("access_hist_" + ph, {}).items():
                pool[int(b)] = pool.get(int(b), 0) + n
            for s in r.get("access_slow_%s_ns" % ph, []):
                pool[s] = pool.get(s, 0) + 1
        pool = {b: n for b, n in pool.items() if b >= SLOW_NS}
        total = sum(pool.values())
        if not total:
            continue
        fn = os.path.join(data, "cdf-%s-%s.dat" % (c["tool"], c["mode"]))
        acc = 0
        with open(fn, "w") as f:
            for b in sorted(pool):
                acc += pool[b]
                f.write("%f %.9f\n" % (max(b, 1) / 1e3, acc / total))
        plot.append("'%s' using 1:2 with steps lw 2 title '%s %s: %d accesses > 2 µs %s'" % (
            fn, c["tool"], c["mode"], total, "from restore to last page in" if ph == "lazy" else
            "in the 5 s after restore"))
        if c["mode"] == "lazy":
            r = median_run(c)
            for q, k in ((0.5, "fault_p50_us"), (0.99, "fault_p99_us"), (1.0, "fault_max_us")):
                if r.get(k) is not None:
                    marks.append((max(r[k], 1), q, k.split("_")[1]))
    if marks:
        fn = os.path.join(data, "cdf-daemon.dat")
        with open(fn, "w") as f:
            for x, q, name in marks:
                f.write("%f %f %s\n" % (x, q, name))
        plot.append("'%s' using 1:2 with points pt 9 ps 2 title 'lazy-pages fault service "
                    "p50 / p99 / max (its own clock)'" % fn)
    out = os.path.join(imgdir, prefix + "-cdf.png")
    if plot and gnuplot(term + """set output '%s'
set title 'Fault latency: workload accesses slower than 2 µs after the restore (%d MiB, %s, runs pooled)'
set logscale x
set xlabel 'latency of one access (µs, log scale)'
set ylabel 'fraction of those accesses (CDF)'
set key bottom right
set grid
set yrange [0:1.02]
set ytics 0.1
plot %s
""" % (out, mib, prof, ", ".join(plot))):
        made.append(out)
    return made


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("--img-dir")
    ap.add_argument("--prefix")
    a = ap.parse_args()
    with open(a.json) as f:
        res = json.load(f)
    prefix = a.prefix or os.path.basename(a.json)[:-len(".json")]
    print(table(res))
    made = plots(res, a.img_dir or os.path.dirname(os.path.abspath(a.json)), prefix)
    for m in made:
        print("\nplot: " + m)


if __name__ == "__main__":
    main()
