#!/bin/bash
# The relive front end on bad command lines: exit 2, the reason and a
# "Usage:" line on stderr, nothing on stdout. Good ones (--help, --version) exit 0.
# Usage: usage.sh RELIVE
set -u
relive=$1
fail() { echo "FAIL: $*"; exit 1; }

expect_usage() {
	local out err rc
	out=$("$relive" "$@" 2> /tmp/relive-usage.$$)
	rc=$?
	err=$(cat /tmp/relive-usage.$$)
	rm -f /tmp/relive-usage.$$
	[ "$rc" = 2 ] || fail "relive $*: exit $rc, expected 2"
	[ -z "$out" ] || fail "relive $*: wrote to stdout: $out"
	grep -q '^Usage: relive ' <<< "$err" || fail "relive $*: no Usage line: $err"
	[ "$(grep -c '^relive: ' <<< "$err")" = 1 ] || fail "relive $*: no reason line: $err"
	echo "ok relive $*: $(head -1 <<< "$err")"
}

expect_usage dump
expect_usage dump -D /tmp
expect_usage dump -t 1
expect_usage dump -t notapid -D /tmp
expect_usage restore
expect_usage show
expect_usage show --port 5 x.img
expect_usage frobnicate
expect_usage

"$relive" --help > /tmp/relive-usage.$$ || fail "--help exit $?"
grep -q '^Usage: relive ' /tmp/relive-usage.$$ || fail "--help has no Usage line"
grep -q 'relive show FILE' /tmp/relive-usage.$$ || fail "--help does not list show"
rm -f /tmp/relive-usage.$$
"$relive" --version | grep -q '^relive [0-9]' || fail "--version"
echo PASS
