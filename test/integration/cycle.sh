#!/bin/bash
# The good paths of stop-and-copy checkpoint/restore, one victim at a time:
#
#   cycle.sh RELIVE VICTIM CASE [VICTIM ARGS...]
#
# CASE restore:       dump -> the original is gone -> restore -d -> same pid,
#                     running, untraced, child of init -> the victim's PASS.
# CASE leave-running: dump --leave-running -> the original runs on, untouched
#                     (same process, not stopped, not traced) -> its PASS.
# CASE twice:         dump -> restore -> dump -> restore -> PASS.
#
# Every PASS must carry the nonce the victim drew at start (restored, not
# restarted) and a counter above the one read from its memory before the dump.
set -euo pipefail

[[ $# -ge 3 ]] || { echo "usage: $0 RELIVE VICTIM CASE [VICTIM ARGS...]" >&2; exit 2; }
RELIVE=$1
VICTIM=$2
CASE=$3
shift 3
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_root
require_features "${CR_FEATURES[@]}"

# One dump and restore of pid; prints nothing, dies on any failure.
dump_and_restore() {
	local pid=$1 dir=$2 c0
	c0=$(victim_counter "$pid" "$V_ADDR")
	dump "$pid" "$dir"
	wait_dead "$pid"
	log "pid $pid is gone after the dump (counter was >= $c0)"
	restore "$dir"
	[[ $(proc_start "$pid") != "$V_START" ]] ||
		die "pid $pid has the start time of the original: restore did not create it"
	check_running "$pid" "$dir.restore.out" "$dir/restore.log" "$V_DIR/victim.log" \
		"$V_DIR/verdict"
	V_START=$(proc_start "$pid")
	LAST_COUNTER=$c0
}

start_victim "$VICTIM" "$@"
sleep 0.3	# let the main loop run a little before the freeze

case $CASE in
restore)
	dump_and_restore "$V_PID" "$TMP/img"
	finish "$V_PID" "$V_NONCE" "$LAST_COUNTER"
	;;
twice)
	dump_and_restore "$V_PID" "$TMP/img1"
	sleep 0.3
	dump_and_restore "$V_PID" "$TMP/img2"
	finish "$V_PID" "$V_NONCE" "$LAST_COUNTER"
	;;
leave-running)
	c0=$(victim_counter "$V_PID" "$V_ADDR")
	dump "$V_PID" "$TMP/img" --leave-running
	check_running "$V_PID"
	[[ $(proc_start "$V_PID") == "$V_START" ]] || die "pid $V_PID is not the original process"
	c1=$(victim_counter "$V_PID" "$V_ADDR")
	sleep 0.3
	c2=$(victim_counter "$V_PID" "$V_ADDR")
	((c2 > c1)) || die "pid $V_PID stopped counting after dump --leave-running ($c1 -> $c2)"
	[[ -n $(ls -A "$TMP/img") ]] || die "dump --leave-running wrote nothing to $TMP/img"
	finish "$V_PID" "$V_NONCE" "$c0"
	;;
*)
	die "unknown case '$CASE'"
	;;
esac
log "PASS: $CASE $(basename "$VICTIM") $*"
