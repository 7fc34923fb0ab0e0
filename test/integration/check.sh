#!/bin/bash
# Integration test of `relive check`: on this machine every probe must pass
# (one "NAME: ok" line per feature, each name once, then "Looks good", exit
# 0). Then the missing path for real: in a new user namespace clone3 set_tid
# is refused (no CAP_CHECKPOINT_RESTORE over the pid namespace), so check
# must name it, give the errno text, list it under "Missing features" and
# exit 1. Usage: check.sh PATH-TO-RELIVE
set -u
RELIVE=${1:?usage: check.sh PATH-TO-RELIVE}

fail() { echo "FAIL: $*"; echo "--- output ---"; echo "$out"; exit 1; }

out=$(timeout 60 "$RELIVE" check 2>&1)
rc=$?
[ $rc -eq 0 ] || fail "relive check exited $rc, expected 0"
[ "$(echo "$out" | tail -n 1)" = "Looks good" ] || fail "last line is not 'Looks good'"
echo "$out" | grep -q '^Missing features' && fail "'Missing features' printed on success"

features=$(echo "$out" | sed '$d')
nlines=$(echo "$features" | wc -l)
nok=$(echo "$features" | grep -cE '^[^:]+: ok( \(.*\))?$')
[ "$nok" -eq "$nlines" ] || fail "$((nlines - nok)) of $nlines feature lines are not 'NAME: ok'"
ndistinct=$(echo "$features" | cut -d: -f1 | sort -u | wc -l)
[ "$ndistinct" -eq "$nlines" ] || fail "a feature is reported more than once"

# Every feature the brief of `relive check` names must have its line.
for name in "userfaultfd" "UFFDIO_API" "uffd EVENT_FORK" "uffd EVENT_REMAP" \
	"uffd EVENT_REMOVE" "uffd EVENT_UNMAP" "uffd THREAD_ID" "uffd MISSING_SHMEM" \
	"uffd WP_ASYNC" "uffd MOVE" "UFFDIO_COPY" "io_uring" "io_uring POLL_ADD multishot" \
	"io_uring RECV" "io_uring SEND" "io_uring SEND_ZC" "io_uring READ" "io_uring WRITE" \
	"io_uring PROVIDE_BUFFERS" "io_uring registered buffers" "clone3 set_tid" \
	"ptrace seize" "PTRACE_GET_RSEQ_CONFIGURATION" "process_vm_readv" "vmsplice" \
	"pidfd_open" "pidfd_getfd" "PR_SET_MM_MAP" "vdso/vvar layout" "network namespaces" \
	"pipe max size" "NT_X86_XSTATE size"; do
	echo "$features" | awk -F': ' -v n="$name" '$1 == n && $2 ~ /^ok( |$)/ { f = 1 }
		END { exit !f }' || fail "no '$name: ok' line"
done
echo "ok: $nlines features, Looks good"

# The missing path, for real.
if ! unshare -Ur true 2>/dev/null; then
	echo "user namespaces unavailable: missing-path check skipped"
	exit 0
fi
out=$(timeout 60 unshare -Ur "$RELIVE" check 2>&1)
rc=$?
[ $rc -eq 1 ] || fail "in a user namespace: exit $rc, expected 1"
echo "$out" | grep -q '^Looks good' && fail "in a user namespace: 'Looks good' printed"
echo "$out" | grep -qE '^clone3 set_tid: missing \(.*: Operation not permitted\)$' ||
	fail "in a user namespace: no 'clone3 set_tid: missing (...: Operation not permitted)'"
last=$(echo "$out" | tail -n 1)
case "$last" in
"Missing features: "*"clone3 set_tid"*) ;;
*) fail "in a user namespace: last line is not 'Missing features: ...clone3 set_tid...'" ;;
esac
# the summary lists exactly the features marked missing above it
want=$(echo "$out" | grep -E '^[^:]+: missing \(' | cut -d: -f1 | paste -sd, | sed 's/,/, /g')
[ "$last" = "Missing features: $want" ] || fail "summary '$last' != missing lines '$want'"
echo "ok: missing path reports: ${last#Missing features: }"
