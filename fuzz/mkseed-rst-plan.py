#!/usr/bin/env python3
"""Turn an image directory into an input of fuzz/fuzz_rst_plan (format in
its header comment): one record per *.img file of a kind the planner reads,
its bytes without the 8-byte header, and for pages-N.img just the page count.

    mkseed-rst-plan.py [--lazy] DIR OUT
"""
import os
import re
import struct
import sys

KINDS = {'inventory': 0, 'pstree': 1, 'core': 2, 'task': 3, 'mm': 4, 'pagemap': 5,
         'pages': 6, 'files': 7, 'fdinfo': 8}
PAGE = 4096


def main():
    args = sys.argv[1:]
    lazy = '--lazy' in args
    args = [a for a in args if a != '--lazy']
    if len(args) != 2:
        sys.exit(__doc__)
    src, out = args
    blob = bytearray([1 if lazy else 0])
    for name in sorted(os.listdir(src)):
        m = re.fullmatch(r'([a-z]+)(?:-(\d+))?\.img', name)
        if not m or m.group(1) not in KINDS:
            continue
        kind, ident = KINDS[m.group(1)], int(m.group(2) or 0)
        with open(os.path.join(src, name), 'rb') as f:
            data = f.read()
        if kind == KINDS['pages']:
            data = struct.pack('<I', (len(data) - PAGE) // PAGE)
        else:
            data = data[8:]
        if len(data) > 0xffff:
            sys.exit(f'{name}: {len(data)} bytes, more than a record holds')
        blob += struct.pack('<BIH', kind, ident, len(data)) + data
    with open(out, 'wb') as f:
        f.write(blob)


if __name__ == '__main__':
    main()
