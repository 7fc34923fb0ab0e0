#!/bin/bash
# Process trees that cannot be restored (test/victims/victim-tree.c):
#
#   tree.sh RELIVE VICTIM CASE
#
# CASE cwd-gone:  after the dump, the cwd of child B is removed. B's helper
#                 fails after the root and A's subtree were created: the
#                 restore fails naming the directory, and no process of the
#                 tree is left (nothing half-restored). With the directory
#                 back, the same images restore and the tree gives its PASS.
# CASE pid-taken: after the dump, another process takes the PID of the
#                 grandchild A1: the restore fails naming that PID ("in use")
#                 before creating anything; once it is free, the images
#                 restore and the tree gives its PASS.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
driver_init 3 "RELIVE VICTIM CASE" "$@"

# No process of the tree exists (zombies reaped by init are waited for).
none_left() {
	local p
	for p in "$@"; do
		wait_gone "$p" 10 || die "pid $p of the tree is left after the failed restore:" \
			"$(cat "/proc/$p/status" 2>/dev/null | head -3)"
	done
}

start_victim "$VICTIM"
sleep 0.3
c0=$(victim_counter "$V_PID" "$V_ADDR")
dump "$V_PID" "$TMP/img"
read -ra PIDS <<<"$(tree_pids "$TMP/img")"
((${#PIDS[@]} == 6)) || die "pstree.img has ${#PIDS[@]} processes, expected 6: ${PIDS[*]}"
VICTIM_PIDS+=("${PIDS[@]}")
log "dumped the tree ${PIDS[*]}"
for p in "${PIDS[@]}"; do
	wait_gone "$p" 10 || die "pid $p still exists after the dump"
done

OUT=$TMP/fail.out
case $CASE in
cwd-gone)
	mv "$V_DIR/b" "$V_DIR/b.away"
	rc=0
	run_relive "$OUT" restore -D "$TMP/img" -d || rc=$?
	expect_failure "$OUT" "$rc" "$V_DIR/b"
	none_left "${PIDS[@]}"
	log "restore failed naming $V_DIR/b; no process of the tree is left"
	mv "$V_DIR/b.away" "$V_DIR/b"
	;;
pid-taken)
	victim=$("$RELIVE" show "$TMP/img/pstree.img" | python3 -c 'import json,sys
e = json.load(sys.stdin)["entries"]
print([x["pid"] for x in e if x["ppid"] not in (e[0]["ppid"], e[0]["pid"])][0])')
	holder=
	for ((i = 0; i < 50; i++)); do
		echo $((victim - 1)) >/proc/sys/kernel/ns_last_pid
		sleep 60 &
		if [[ $! == "$victim" ]]; then
			holder=$!
			break
		fi
		kill $! 2>/dev/null || true
		wait $! 2>/dev/null || true
	done
	[[ -n $holder ]] || skip "could not take pid $victim for the test"
	# The next processes (timeout, relive) must not take the other pids of the tree.
	max=0
	for p in "${PIDS[@]}"; do ((p > max)) && max=$p; done
	echo $((max + 100)) >/proc/sys/kernel/ns_last_pid
	rc=0
	run_relive "$OUT" restore -D "$TMP/img" -d || rc=$?
	kill "$holder"
	wait "$holder" 2>/dev/null || true
	expect_failure "$OUT" "$rc" "$victim" "in use"
	none_left "${PIDS[@]}"
	log "restore failed naming pid $victim; no process of the tree is left"
	;;
*)
	die "unknown case '$CASE'"
	;;
esac
restore "$TMP/img"
check_running "$V_PID" "$TMP/img.restore.out" "$TMP/img/restore.log" "$V_DIR/victim.log"
sleep 0.2
finish "$V_PID" "$V_NONCE" "$c0"
log "PASS: $CASE"
