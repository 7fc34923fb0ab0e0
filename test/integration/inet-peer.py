#!/usr/bin/env python3
"""The peer of victim-inet, outside the dumped tree.

    inet-peer.py 4|6 PORTFILE VERDICT [SECONDS]

Listens on the loopback (127.0.0.1 or ::1), writes its port to PORTFILE,
accepts one connection and sends "N\\n" lines, N = 1, 2, ..., a few every
millisecond or two while fewer than 2000 are unechoed. Every echo must be
the next number (padded with spaces); "BYE" from the victim ends the
exchange. SIGUSR1 stops and restarts the reading of echoes: the victim's
send queue then fills up (the receive buffer is small). VERDICT gets "PASS ..." or
"FAIL: reason": a number skipped or repeated, the connection closed or reset
before BYE, or no BYE within SECONDS (default 100).
"""
import os
import select
import signal
import socket
import sys
import time

WINDOW = 2000


def verdict(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.rename(tmp, path)
    print(text, flush=True)
    sys.exit(0 if text.startswith("PASS") else 1)


def main():
    fam = socket.AF_INET if sys.argv[1] == "4" else socket.AF_INET6
    portfile, vpath = sys.argv[2], sys.argv[3]
    deadline = time.monotonic() + (float(sys.argv[4]) if len(sys.argv) > 4 else 100.0)
    paused = [False]

    def toggle(signo, frame):
        paused[0] = not paused[0]

    signal.signal(signal.SIGUSR1, toggle)
    lis = socket.socket(fam, socket.SOCK_STREAM)
    lis.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    lis.bind(("127.0.0.1" if fam == socket.AF_INET else "::1", 0))
    lis.listen(1)
    with open(portfile + ".tmp", "w") as f:
        f.write("%d\n" % lis.getsockname()[1])
    os.rename(portfile + ".tmp", portfile)
    lis.settimeout(30)
    try:
        conn, _ = lis.accept()
    except OSError as e:
        verdict(vpath, "FAIL: no connection from the victim: %s" % e)
    conn.setblocking(False)
    nxt, echoed, inbuf, out = 1, 0, b"", b""
    longest, t_last = 0.0, time.monotonic()
    while True:
        now = time.monotonic()
        if now > deadline:
            verdict(vpath, "FAIL: no BYE in time (sent %d, echoed %d)" % (nxt - 1, echoed))
        # A few a round: a little faster than the victim reads, so its
        # receive queue holds up to WINDOW numbers at any time.
        while len(out) < 24 and nxt - 1 - echoed < WINDOW:
            out += b"%d\n" % nxt
            nxt += 1
        try:
            r, w, _ = select.select([] if paused[0] else [conn], [conn] if out else [], [],
                                    0.001)
            if w:
                out = out[conn.send(out):]
            if r:
                data = conn.recv(65536)
                if not data:
                    verdict(vpath, "FAIL: connection closed by the victim after echo %d" % echoed)
                inbuf += data
        except OSError as e:
            verdict(vpath, "FAIL: connection lost after echo %d (sent %d): %s"
                    % (echoed, nxt - 1, e))
        while b"\n" in inbuf:
            line, inbuf = inbuf.split(b"\n", 1)
            if line == b"BYE":
                verdict(vpath, "PASS sent=%d echoed=%d longest_silence_ms=%d"
                        % (nxt - 1, echoed, longest * 1000))
            line = line.rstrip(b" ")
            if not line.isdigit() or int(line) != echoed + 1:
                verdict(vpath, "FAIL: echo %r after %d" % (line, echoed))
            echoed += 1
            longest = max(longest, now - t_last)
            t_last = now
        time.sleep(0.001)


if __name__ == "__main__":
    main()
