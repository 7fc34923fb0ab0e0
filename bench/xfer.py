#!/usr/bin/env python3
"""Copy an image directory over one TCP connection: what `scp -r` would do
between two hosts, without the cipher. The benchmark runs the receiver in
the destination network namespace and the sender in the source one, so the
copy crosses the (shaped) veth link like every other byte of a migration.
Both are started (and connected) before the dump, so that the copy time in
the frozen window is the copy, not Python starting up:

  xfer.py recv ADDR PORT DIR    listen ("listening"), write every file into DIR
  xfer.py send ADDR PORT DIR [--unlink]
                                connect ("connected"), wait for a line on
                                stdin, send every regular file of DIR (flat),
                                deleting each once sent with --unlink (so a
                                copy does not double the tmpfs footprint)

Framing: per file 8 bytes of size, 2 of name length, the name, the bytes; a
zero name length ends the stream, and the receiver answers "ok". File data
moves with sendfile and splice: no copies through Python.
"""
import fcntl
import os
import socket
import struct
import sys


def recv_exact(s, n):
    b = s.recv(n, socket.MSG_WAITALL)
    if len(b) != n:
        sys.exit("xfer: connection closed early")
    return b


def recv(addr, port, dirname):
    os.makedirs(dirname, mode=0o700, exist_ok=True)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port))
    ls.listen(1)
    print("listening", flush=True)
    s, _ = ls.accept()
    ls.close()
    pr, pw = os.pipe()
    fcntl.fcntl(pw, 1031, 1 << 20)  # F_SETPIPE_SZ
    while True:
        size, nlen = struct.unpack("<QH", recv_exact(s, 10))
        if not nlen:
            break
        name = recv_exact(s, nlen).decode()
        if "/" in name or name in (".", ".."):
            sys.exit("xfer: bad file name %r" % name)
        fd = os.open(os.path.join(dirname, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        left = size
        while left:
            n = os.splice(s.fileno(), pw, min(left, 1 << 20))
            if not n:
                sys.exit("xfer: connection closed inside %s" % name)
            left -= n
            while n:
                n -= os.splice(pr, fd, n)
        os.close(fd)
    s.sendall(b"ok")
    s.close()


def send(addr, port, dirname, unlink):
    s = socket.create_connection((addr, port))
    print("connected", flush=True)
    sys.stdin.readline()
    for name in sorted(os.listdir(dirname)):
        path = os.path.join(dirname, name)
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            s.sendall(struct.pack("<QH", size, len(name.encode())) + name.encode())
            if size:
                s.sendfile(f, 0, size)
        if unlink:
            os.unlink(path)
    s.sendall(struct.pack("<QH", 0, 0))
    if recv_exact(s, 2) != b"ok":
        sys.exit("xfer: the receiver did not confirm")
    s.close()


def main():
    a = sys.argv[1:]
    unlink = "--unlink" in a
    a = [x for x in a if x != "--unlink"]
    if len(a) != 4 or a[0] not in ("send", "recv"):
        sys.exit(__doc__)
    if a[0] == "recv":
        recv(a[1], int(a[2]), a[3])
    else:
        send(a[1], int(a[2]), a[3], unlink)


if __name__ == "__main__":
    main()
