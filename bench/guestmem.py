"""Warm the guest's memory once per boot, before anything is timed.

The VMs we run on back guest memory lazily: the first touch of a page never
used since boot costs ~7 us (a 2 GiB restore into such memory takes seconds
longer), and one warm-up migration warms only the pages it happened to get.
Measured on a machine 11 minutes after boot, 1 GiB lazy on loopback, 10
runs: stream 860 MiB/s and fault p99 236 us before all free memory was
touched once, 1255 MiB/s and 186 us right after. The boot id is kept in
/run so a second benchmark of the same boot skips it.

It does not make memory warm for good: this guest also reports free memory
back to the host (free page reporting, 2 MiB blocks, at once), and a
reported block is cold again when next used. Small runs mostly reuse
memory that was never reported; 8 GiB runs do not (docs/benchmarks.md,
"Caveats of this machine").
"""
import mmap
import os
import sys
import time

STAMP = "/run/relive-bench-warm"
PAGE = 4096


def boot_id():
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def warm(reserve=1 << 30, log=lambda m: print("bench: " + m, file=sys.stderr, flush=True)):
    """Touch all but RESERVE bytes of the available memory, once per boot."""
    bid = boot_id()
    try:
        with open(STAMP) as f:
            if f.read().strip() == bid:
                return
    except OSError:
        pass
    size = (mem_available() - reserve) // PAGE * PAGE
    if size <= 0:
        return
    t = time.time()
    m = mmap.mmap(-1, size)
    try:
        for off in range(0, size, PAGE):
            m[off] = 1
    finally:
        m.close()
    log("warmed %.1f GiB of guest memory in %.1f s (once per boot)" % (size / 2**30,
                                                                      time.time() - t))
    with open(STAMP, "w") as f:
        f.write(bid + "\n")
