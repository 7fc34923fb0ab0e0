#!/bin/bash
# Multi-threaded processes against the freeze race:
#
#   threads.sh RELIVE VICTIM churn N [VICTIM ARGS...]
#
# VICTIM (victim-thread-churn) creates and joins threads as fast as it can.
# N dumps --leave-running in a row must all succeed, each leaving the
# original process running and counting; then a dump, restore -d and the
# victim's PASS (its sums of work done by short-lived threads must agree).
# The number of threads each dump caught is logged (from pstree.img).
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
driver_init 4 "RELIVE VICTIM churn N [VICTIM ARGS...]" "$@"
N=$4
shift 4

[[ $CASE == churn ]] || die "unknown case '$CASE'"
start_victim "$VICTIM" "$@"
sleep 0.2
c0=$(victim_counter "$V_PID" "$V_ADDR")
counts=()
for ((i = 1; i <= N; i++)); do
	dir=$TMP/img$i
	mkdir -p "$dir"
	rc=0
	run_relive "$dir.dump.out" dump -t "$V_PID" -D "$dir" -o dump.log -v4 --leave-running ||
		rc=$?
	if [[ $rc != 0 ]]; then
		show_failure "$dir.dump.out" "$dir/dump.log"
		die "dump $i of $N of pid $V_PID exited with $rc"
	fi
	check_running "$V_PID" "$dir/dump.log" "$V_DIR/victim.log"
	[[ $(proc_start "$V_PID") == "$V_START" ]] || die "pid $V_PID is not the original process"
	n=$("$RELIVE" show "$dir/pstree.img" | python3 -c \
		'import json,sys; print(len(json.load(sys.stdin)["entries"][0]["threads"]))')
	counts+=("$n")
	rm -rf "$dir" "$dir.dump.out"
done
log "$N dumps --leave-running in a row; threads caught: ${counts[*]}"
c1=$(victim_counter "$V_PID" "$V_ADDR")
((c1 > c0)) || die "pid $V_PID stopped counting during the dumps ($c0 -> $c1)"
[[ -e $V_DIR/verdict ]] && die "the victim ended during the dumps: $(cat "$V_DIR/verdict")"

dump "$V_PID" "$TMP/img"
wait_dead "$V_PID"
restore "$TMP/img"
check_running "$V_PID" "$TMP/img.restore.out" "$TMP/img/restore.log" "$V_DIR/victim.log"
sleep 0.3
finish "$V_PID" "$V_NONCE" "$c1"
log "PASS: churn $N $(basename "$VICTIM") $*"
