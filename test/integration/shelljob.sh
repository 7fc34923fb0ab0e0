#!/bin/bash
# Shell jobs (test/victims/victim-shell.c): a process whose stdio is the
# controlling terminal of a session led from outside the dumped tree.
#
#   shelljob.sh RELIVE VICTIM CASE [VICTIM ARGS...]
#
# The victim runs under `script` (util-linux): a pty of its own, bash leads
# the session, the victim is bash's child on that terminal. relive dump runs
# from the driver, on no terminal.
#
# CASE restore:  dump --shell-job -> the victim is gone -> restore -d
#                --shell-job run under a second `script` (another pty): the
#                process runs in that script's session, on its terminal, and
#                PASSes; its "shell-job: hello from pid N" line shows in the
#                second script's typescript (the restore caller's terminal).
# CASE lazy:     the same as a lazy migration on loopback (dump --lazy-pages
#                --shell-job, lazy-pages, restore --lazy-pages --shell-job).
# CASE refused:  dump without --shell-job fails naming fd 0 and --shell-job,
#                writes no inventory.img; the victim runs on and PASSes.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
driver_init 3 "RELIVE VICTIM CASE [VICTIM ARGS...]" "$@"
shift 3
command -v script >/dev/null || skip "util-linux script is not installed"

# wait_for FILE PATTERN SECONDS: FILE holds a line matching PATTERN in time.
wait_for() {
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		grep -qa -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# The victim under `script` on a pty of its own: sets V_PID V_NONCE V_ADDR V_DIR V_START.
start_on_tty() {
	local line
	V_DIR=$TMP/victim1
	mkdir -p "$V_DIR"
	script -qfec "$VICTIM $* --workdir $V_DIR --ready $V_DIR/ready --verdict $V_DIR/verdict; \
echo victim-exited" "$TMP/ts-src" </dev/null >/dev/null 2>&1 &
	VICTIM_PIDS+=("$!")
	disown "$!"	# the EXIT trap kills it: no job report
	wait_for "$V_DIR/ready" "^[RS]" "$VICTIM_TIMEOUT" ||
		die "the victim did not get ready: $(cat "$TMP/ts-src" 2>/dev/null)"
	line=$(cat "$V_DIR/ready")
	[[ $line == SKIP* ]] && skip "$(basename "$VICTIM"): ${line#SKIP }"
	read -r _ V_PID V_NONCE V_ADDR <<<"$line"
	VICTIM_PIDS+=("$V_PID")
	V_START=$(proc_start "$V_PID")
	[[ $(stat_field "$V_PID" 4) != "$V_PID" ]] || die "the victim leads its own session"
	[[ $(stat_field "$V_PID" 5) != 0 ]] || die "the victim has no controlling terminal"
	log "started $(basename "$VICTIM") as pid $V_PID on a terminal (session $(stat_field "$V_PID" 4))"
}

# restore_on_tty ARGS...: relive restore -d ARGS under a second `script`, which stays up.
restore_on_tty() {
	local rc
	log "script: relive restore $*"
	script -qfec "$RELIVE restore $* -d -o restore.log -v4 >$TMP/restore.out 2>&1; \
echo restore-rc=\$?; sleep 120" "$TMP/ts-dst" </dev/null >/dev/null 2>&1 &
	SCRIPT_DST=$!
	VICTIM_PIDS+=("$SCRIPT_DST")
	disown "$SCRIPT_DST"
	wait_for "$TMP/ts-dst" "restore-rc=[0-9]" "$RELIVE_TIMEOUT" || die "relive restore did not end"
	rc=$(grep -ao 'restore-rc=[0-9][0-9]*' "$TMP/ts-dst" | tail -1 | cut -d= -f2)
	if [[ $rc != 0 ]]; then
		show_failure "$TMP/restore.out"
		die "relive restore $* exited with $rc"
	fi
}

# The restored victim is on the second terminal, in its session, and PASSes.
check_restored() {
	local c0=$1 sess tty
	check_running "$V_PID" "$TMP/restore.out"
	[[ $(proc_start "$V_PID") != "$V_START" ]] || die "pid $V_PID was not recreated"
	sess=$(stat_field "$V_PID" 4)
	tty=$(stat_field "$V_PID" 5)
	[[ $(readlink "/proc/$sess/fd/0") == /dev/pts/* ]] || die "session $sess has no pty"
	[[ $(stat_field "$sess" 5) == "$tty" ]] || die "pid $V_PID is not on its session's terminal"
	[[ $(stat_field "$sess" 2) == "$SCRIPT_DST" ]] ||
		die "pid $V_PID is in session $sess, not the restore caller's (under script $SCRIPT_DST)"
	log "pid $V_PID restored in session $sess (the restore caller's), tty $tty"
	finish "$V_PID" "$V_NONCE" "$c0"
	wait_for "$TMP/ts-dst" "shell-job: hello from pid $V_PID" 5 ||
		die "the victim's line did not reach the restore caller's terminal"
}

start_on_tty "$@"
sleep 0.3
c0=$(victim_counter "$V_PID" "$V_ADDR")
mkdir -p "$TMP/img"
case $CASE in
refused)
	rc=0
	run_relive "$TMP/dump.out" dump -t "$V_PID" -D "$TMP/img" -v4 || rc=$?
	expect_failure "$TMP/dump.out" "$rc" "fd 0" "--shell-job" "$V_PID"
	[[ ! -e $TMP/img/inventory.img ]] || die "a refused dump wrote inventory.img"
	# Not check_running: the original is bash's child, not init's.
	[[ $(proc_state "$V_PID") == [RS] ]] || die "pid $V_PID is not running after the refusal"
	[[ $(status_field "$V_PID" TracerPid) == 0 ]] || die "pid $V_PID is still traced"
	[[ $(proc_start "$V_PID") == "$V_START" ]] || die "pid $V_PID is not the original process"
	finish "$V_PID" "$V_NONCE" "$c0"
	;;
restore)
	dump "$V_PID" "$TMP/img" --shell-job
	wait_dead "$V_PID"
	wait_gone "$V_PID" 30 || die "pid $V_PID is still held 30 s after the dump"
	restore_on_tty -D "$TMP/img" --shell-job
	check_restored "$c0"
	;;
lazy)
	port=$((21000 + $$ % 4000))
	mkfifo "$TMP/src.status" "$TMP/lp.status"
	log "relive dump --lazy-pages --shell-job of pid $V_PID, port $port"
	"$RELIVE" dump -t "$V_PID" -D "$TMP/img" -o dump.log -v4 --lazy-pages --shell-job \
		--address 127.0.0.1 --port "$port" --status-fd 3 --lazy-timeout 60 \
		3>"$TMP/src.status" >"$TMP/dump.out" 2>&1 &
	src=$!
	[[ $(timeout 60 head -c1 "$TMP/src.status" | wc -c) == 1 ]] ||
		{ show_failure "$TMP/dump.out" "$TMP/img/dump.log"; die "no status byte from the dump"; }
	wait_gone "$V_PID" 30 || die "pid $V_PID is still held 30 s after the dump"
	"$RELIVE" lazy-pages --address 127.0.0.1 --port "$port" -D "$TMP/img" --status-fd 3 \
		-o lazy-pages.log -v4 --lazy-timeout 60 3>"$TMP/lp.status" >"$TMP/lp.out" 2>&1 &
	lp=$!
	[[ $(timeout 60 head -c1 "$TMP/lp.status" | wc -c) == 1 ]] ||
		{ show_failure "$TMP/lp.out"; die "no status byte from lazy-pages"; }
	restore_on_tty -D "$TMP/img" --lazy-pages --shell-job
	wait "$lp" || { show_failure "$TMP/lp.out" "$TMP/img/lazy-pages.log"; die "lazy-pages failed"; }
	wait "$src" || { show_failure "$TMP/dump.out"; die "the lazy dump failed"; }
	log "$(grep -m1 '^lazy-pages: .* pages in' "$TMP/lp.out")"
	check_restored "$c0"
	;;
*)
	die "unknown case '$CASE'"
	;;
esac
log "PASS: $CASE $(basename "$VICTIM")"
