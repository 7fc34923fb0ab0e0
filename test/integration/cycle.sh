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
# CASE leave-running-100: 100 dumps --leave-running in a row into the same
#                     directory (CYCLE_DUMPS overrides the count), the original
#                     running and counting throughout, with the same mappings
#                     and descriptors at the end -> its PASS -> restore of
#                     the last images -> the restored process's PASS too.
# CASE refused-child: dump of the victim's (only) child alone must fail,
#                     naming each word of CYCLE_REFUSED (split on spaces) ->
#                     no inventory.img -> the original runs on (the child
#                     too: the victim's check involves it) -> its PASS.
#
# CYCLE_DUMP_ARGS: more arguments of the dumps of restore, twice and
# leave-running (e.g. --file-locks).
#
# Every PASS must carry the nonce the victim drew at start (restored, not
# restarted) and a counter above the one read from its memory before the dump.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
driver_init 3 "RELIVE VICTIM CASE [VICTIM ARGS...]" "$@"
shift 3

# One dump and restore of pid; prints nothing, dies on any failure.
dump_and_restore() {
	local pid=$1 dir=$2 c0
	c0=$(victim_counter "$pid" "$V_ADDR")
	# shellcheck disable=SC2086  # CYCLE_DUMP_ARGS: more dump options, split on spaces
	dump "$pid" "$dir" ${CYCLE_DUMP_ARGS:-}
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
	# shellcheck disable=SC2086
	dump "$V_PID" "$TMP/img" --leave-running ${CYCLE_DUMP_ARGS:-}
	check_running "$V_PID"
	[[ $(proc_start "$V_PID") == "$V_START" ]] || die "pid $V_PID is not the original process"
	c1=$(victim_counter "$V_PID" "$V_ADDR")
	sleep 0.3
	c2=$(victim_counter "$V_PID" "$V_ADDR")
	((c2 > c1)) || die "pid $V_PID stopped counting after dump --leave-running ($c1 -> $c2)"
	[[ -n $(ls -A "$TMP/img") ]] || die "dump --leave-running wrote nothing to $TMP/img"
	finish "$V_PID" "$V_NONCE" "$c0"
	;;
refused-child)
	c0=$(victim_counter "$V_PID" "$V_ADDR")
	kid=$(cat "/proc/$V_PID/task/$V_PID/children")
	[[ $kid =~ ^[0-9]+\ ?$ ]] || die "pid $V_PID has not exactly one child: '$kid'"
	kid=${kid% }
	mkdir -p "$TMP/img"
	rc=0
	run_relive "$TMP/dump.out" dump -t "$kid" -D "$TMP/img" -v4 || rc=$?
	# shellcheck disable=SC2086  # CYCLE_REFUSED: the words, split on spaces
	expect_failure "$TMP/dump.out" "$rc" "$kid" ${CYCLE_REFUSED:-}
	[[ ! -e $TMP/img/inventory.img ]] || die "a refused dump wrote inventory.img"
	st=$(proc_state "$kid") || die "child $kid is gone after the refused dump"
	[[ $st == [RS] && $(status_field "$kid" TracerPid) == 0 ]] ||
		die "child $kid is in state $st, traced by $(status_field "$kid" TracerPid)"
	check_running "$V_PID" "$TMP/dump.out" "$V_DIR/victim.log"
	finish "$V_PID" "$V_NONCE" "$c0"
	;;
leave-running-100)
	n=${CYCLE_DUMPS:-100}
	t0=$SECONDS
	maps0=$(cat "/proc/$V_PID/maps")
	fds0=$(ls "/proc/$V_PID/fd")
	c_prev=$(victim_counter "$V_PID" "$V_ADDR")
	for ((k = 1; k <= n; k++)); do
		c_last=$(victim_counter "$V_PID" "$V_ADDR")
		rc=0
		run_relive "$TMP/img.dump.out" dump -t "$V_PID" -D "$TMP/img" -o dump.log \
			--leave-running || rc=$?
		if [[ $rc != 0 ]]; then
			show_failure "$TMP/img.dump.out" "$TMP/img/dump.log"
			die "dump $k of $n of pid $V_PID exited with $rc"
		fi
		st=$(proc_state "$V_PID") || die "pid $V_PID is gone after dump $k"
		[[ $st == [RS] && $(proc_start "$V_PID") == "$V_START" ]] ||
			die "pid $V_PID after dump $k: state $st, start $(proc_start "$V_PID")"
		[[ $(status_field "$V_PID" TracerPid) == 0 ]] || die "pid $V_PID traced after dump $k"
		if ((k % 10 == 0)); then
			c=$(victim_counter "$V_PID" "$V_ADDR")
			((c > c_prev)) || die "pid $V_PID stopped counting by dump $k ($c_prev -> $c)"
			c_prev=$c
		fi
	done
	log "$n dumps --leave-running of pid $V_PID in $((SECONDS - t0)) s"
	# Nothing may pile up in the process, dump after dump.
	if [[ $(cat "/proc/$V_PID/maps") != "$maps0" ]]; then
		diff <(echo "$maps0") "/proc/$V_PID/maps" >&2 || true
		die "the mappings of pid $V_PID changed over $n dumps (above)"
	fi
	[[ $(ls "/proc/$V_PID/fd") == "$fds0" ]] ||
		die "the descriptors of pid $V_PID changed over $n dumps: $(ls "/proc/$V_PID/fd")"
	cp "$V_DIR/victim.log" "$V_DIR/victim.log.at-dump"
	sleep 0.1
	finish "$V_PID" "$V_NONCE" "$c_last"
	wait_gone "$V_PID" 30 || die "pid $V_PID is still held 30 s after its verdict"
	mv "$V_DIR/verdict" "$V_DIR/verdict.original"
	# The original's verdict went to its log too: the dumped file had the size of then.
	cp "$V_DIR/victim.log" "$V_DIR/victim.log.original"
	cat "$V_DIR/victim.log.at-dump" >"$V_DIR/victim.log"
	restore "$TMP/img"
	[[ $(proc_start "$V_PID") != "$V_START" ]] || die "pid $V_PID was not recreated"
	check_running "$V_PID" "$TMP/img.restore.out" "$TMP/img/restore.log"
	finish "$V_PID" "$V_NONCE" "$c_last"
	;;
*)
	die "unknown case '$CASE'"
	;;
esac
log "PASS: $CASE $(basename "$VICTIM") $*"
