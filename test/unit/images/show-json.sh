#!/bin/bash
# `relive show` end to end: the sample image of every kind decodes to JSON
# that python3 accepts, with the values the samples hold; every broken image
# makes it exit 1 with one error line naming the file and the offset, and
# nothing on stdout.
# Usage: show-json.sh RELIVE MKIMAGES
set -u
relive=$1
mkimages=$2
tmpdir=${TMPDIR:-/dev/shm}
[ -w "$tmpdir" ] || tmpdir=/tmp
tmp=$(mktemp -d "$tmpdir/relive-show-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$mkimages" "$tmp/good" || fail "mkimages"
"$mkimages" --corrupt "$tmp/bad" || fail "mkimages --corrupt"

# The whole directory, then each file alone.
"$relive" show -D "$tmp/good" > "$tmp/dir.json" 2> "$tmp/err" || fail "show -D: $(cat "$tmp/err")"
python3 -m json.tool "$tmp/dir.json" > /dev/null || fail "show -D output is not JSON"
for f in "$tmp"/good/*.img; do
	"$relive" show "$f" > "$tmp/one.json" 2> "$tmp/err" || fail "show $f: $(cat "$tmp/err")"
	python3 -m json.tool "$tmp/one.json" > /dev/null || fail "show $f output is not JSON"
done
"$relive" show -D "$tmp/good" core-4243.img mm-4242.img > "$tmp/two.json" || fail "show -D DIR FILE..."
python3 -m json.tool "$tmp/two.json" > /dev/null || fail "show of two files is not JSON"

python3 - "$tmp/dir.json" "$tmp/two.json" <<'EOF' || fail "content of the JSON"
import json, sys
doc = json.load(open(sys.argv[1]))
imgs = doc["images"]
kinds = [i["kind"] for i in imgs]
want = {"inventory", "pstree", "core", "task", "mm", "pagemap", "pages", "files", "fdinfo",
        "stats-dump", "stats-restore", "file-locks"}
assert set(kinds) == want, kinds
assert [i["file"] for i in imgs] == sorted(i["file"] for i in imgs), "not sorted"
by = {i["kind"]: i for i in imgs}
assert by["pages"]["nr_pages"] == 3
inv = by["inventory"]["entries"][0]
assert inv["hostname"] == 'ho"st\\\n\x01\u00e9\ufffd\ufffd', repr(inv["hostname"])
assert inv["session_token"] == bytes(range(0xa0, 0xc0)).hex()
core = by["core"]["entries"][0]
assert core["regs"]["rip"] == 2**64 - 1
assert len(core["pending"]) == 2 and len(core["xsave"]) == 2 * 576
assert by["pstree"]["entries"][2]["exit_status"] == -2**31
assert [v["kind"] for v in by["mm"]["entries"][0]["vmas"]] == \
    ["VMA_FILE_PRIVATE", "VMA_ANON_PRIVATE", "VMA_ANON_SHARED"]
assert by["pagemap"]["entries"][0] == {"pages_id": 7}
assert by["files"]["entries"][0]["reg"]["path"] == "/var/log/\u20ac-log.txt"
two = json.load(open(sys.argv[2]))
assert [i["kind"] for i in two] == ["core", "mm"], two
EOF

n=0
for f in "$tmp"/bad/*.img; do
	name=$(basename "$f")
	"$relive" show "$f" > "$tmp/out" 2> "$tmp/err"
	rc=$?
	[ "$rc" = 1 ] || fail "show $name: exit $rc, expected 1"
	[ -s "$tmp/out" ] && fail "show $name: wrote to stdout: $(head -c 200 "$tmp/out")"
	[ "$(wc -l < "$tmp/err")" = 1 ] || fail "show $name: not one error line: $(cat "$tmp/err")"
	grep -q "$name: offset [0-9]*: " "$tmp/err" || fail "show $name: no file and offset: $(cat "$tmp/err")"
	echo "ok $name: $(cat "$tmp/err")"
	n=$((n + 1))
done
[ "$n" -ge 9 ] || fail "only $n broken images"

# One bad file spoils the directory: exit 1, no partial JSON.
"$relive" show -D "$tmp/bad" > "$tmp/out" 2> "$tmp/err"
[ $? = 1 ] || fail "show -D of the broken images did not exit 1"
[ -s "$tmp/out" ] && fail "show -D of the broken images wrote to stdout"
"$relive" show "$tmp/none.img" > /dev/null 2> "$tmp/err"
[ $? = 1 ] || fail "show of a missing file did not exit 1"
grep -q "none.img: cannot open: No such file" "$tmp/err" || fail "missing file: $(cat "$tmp/err")"
echo "PASS: $(ls "$tmp/good" | wc -l) good images, $n broken images"
