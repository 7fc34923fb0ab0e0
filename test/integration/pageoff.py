#!/usr/bin/env python3
"""Where in a dump the data of one address lies, for the corrupted-image test.

    pageoff.py DIR ADDR        -> "pages-N.img OFFSET" of the byte at ADDR
    pageoff.py DIR --largest   -> the same for the middle of the largest run

Reads pagemap-*.img by the framing of images/img.h (u32 magic, u32 version,
then u32 length | protobuf entries; the first entry is the pagemap_head) and
knows that pages-N.img holds the PRESENT runs in entry order after a one-page
header. Independent of relive's own reader on purpose.
"""
import glob
import os
import struct
import sys

PAGE = 4096
PE_PRESENT = 1


def varint(buf, i):
    v = shift = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def fields(msg):
    """The varint fields of a protobuf message, by number."""
    out, i = {}, 0
    while i < len(msg):
        key, i = varint(msg, i)
        if key & 7 != 0:
            sys.exit(f"pageoff: unexpected wire type {key & 7} in a pagemap entry")
        out[key >> 3], i = varint(msg, i)
    return out


def read_pagemap(path):
    data = open(path, "rb").read()
    off, entries = 8, []
    while off < len(data):
        (n,) = struct.unpack_from("<I", data, off)
        entries.append(fields(data[off + 4:off + 4 + n]))
        off += 4 + n
    return entries[0][1], entries[1:]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    maps = glob.glob(os.path.join(sys.argv[1], "pagemap-*.img"))
    if len(maps) != 1:
        sys.exit(f"pageoff: expected one pagemap image in {sys.argv[1]}, found {len(maps)}")
    pages_id, entries = read_pagemap(maps[0])
    runs, pos = [], PAGE
    for e in entries:
        if e.get(3, 0) & PE_PRESENT:
            runs.append((e[1], e[2] * PAGE, pos))
            pos += e[2] * PAGE
    if sys.argv[2] == "--largest":
        vaddr, size, at = max(runs, key=lambda r: r[1])
        addr = vaddr + size // 2
    else:
        addr = int(sys.argv[2], 0)
    for vaddr, size, at in runs:
        if vaddr <= addr < vaddr + size:
            print(f"pages-{pages_id}.img {at + addr - vaddr}")
            return
    sys.exit(f"pageoff: address {addr:#x} is in no present run of {maps[0]}")


main()
