#!/bin/bash
# The source side of lazy migration (relive dump --lazy-pages), with the
# test client ps-client instead of the destination daemon:
#
#   lazy-src.sh RELIVE VICTIM PS_CLIENT CASE [VICTIM ARGS...]
#
# CASE serve:   the victim is stopped (SIGSTOP, so its memory cannot change),
#               dumped eagerly with --leave-running, then lazily. The status
#               byte comes once the images are complete; the original pid is
#               gone, a keeper holds the memory. Hostile clients (wrong token,
#               garbage, bad version, out-of-range run, huge run, unknown pid,
#               silent, stalled mid-request) are cut off; then the good client
#               fetches every LAZY page, checksums and compares them with the
#               eager dump, sends DONE: relive exits 0 and the keeper is gone.
# CASE timeout: --lazy-timeout 2 and no client: relive fails within a few
#               seconds naming the timeout, and the keeper is gone.
# CASE usage:   --lazy-pages with --leave-running is a usage error (exit 2)
#               and the victim runs on untouched.
set -euo pipefail

[[ $# -ge 4 ]] || { echo "usage: $0 RELIVE VICTIM PS_CLIENT CASE [VICTIM ARGS...]" >&2; exit 2; }
RELIVE=$1
VICTIM=$2
CLIENT=$3
CASE=$4
shift 4
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_root
require_features "ptrace seize"

# Seconds a silent or stalled client may hold a connection in these tests.
export RELIVE_PS_IDLE_TIMEOUT_MS=1500
PORT=$((27200 + RANDOM % 2000))
RELIVE_BG=

# The keeper of a lazy dump: comm relive-keeper, traced by relive.
keeper_of() {
	local p
	for p in /proc/[0-9]*; do
		[[ $(cat "$p/comm" 2>/dev/null) == relive-keeper ]] || continue
		[[ $(status_field "${p#/proc/}" TracerPid) == "$1" ]] && echo "${p#/proc/}"
	done
	return 0
}

# start_lazy DIR EXTRA...: relive dump --lazy-pages in the background; waits for the status byte.
start_lazy() {
	local dir=$1 n
	shift
	mkdir -p "$dir"
	mkfifo "$TMP/status"
	log "relive dump -t $V_PID -D $dir --lazy-pages --port $PORT $*"
	timeout -k 5 "$RELIVE_TIMEOUT" "$RELIVE" dump -t "$V_PID" -D "$dir" -o dump.log -v4 \
		--lazy-pages --address 127.0.0.1 --port "$PORT" --status-fd 3 "$@" \
		3>"$TMP/status" >"$dir.dump.out" 2>&1 &
	RELIVE_BG=$!
	n=$(timeout 60 head -c1 "$TMP/status" | wc -c) || true
	if [[ $n != 1 ]]; then
		show_failure "$dir.dump.out" "$dir/dump.log"
		die "no status byte from relive dump --lazy-pages"
	fi
	log "status byte received: images complete, server listening"
}

# wait_relive: the background relive's exit status.
wait_relive() {
	local rc=0
	wait "$RELIVE_BG" || rc=$?
	RELIVE_BG=
	return "$rc"
}

gone_or_zombie() {
	wait_gone "$1" 5 || [[ $(proc_state "$1") == [ZX] ]]
}

client() {
	local out=$TMP/client-$1.out rc=0
	timeout 60 "$CLIENT" "$TMP/lazy" 127.0.0.1 "$PORT" "$@" >"$out" 2>&1 || rc=$?
	cat "$out"
	[[ $rc == 0 ]] || { show_failure "$TMP/lazy/dump.log"; die "client $1 failed (exit $rc)"; }
}

case $CASE in
serve)
	start_victim "$VICTIM" "$@"
	# One CPU: the kernel writes the current cpu into the rseq area whenever
	# the thread (or the parasite in it) returns to user space.
	taskset -pc 0 "$V_PID" >/dev/null
	sleep 0.3
	kill -STOP "$V_PID"
	dump "$V_PID" "$TMP/eager" --leave-running
	[[ $(proc_state "$V_PID") == T ]] || die "pid $V_PID is not stopped after the eager dump"
	start_lazy "$TMP/lazy"
	wait_dead "$V_PID"
	log "pid $V_PID is gone after the lazy dump"
	relive_pid=$(pgrep -P "$RELIVE_BG" -x relive || echo "$RELIVE_BG")
	K=$(keeper_of "$relive_pid")
	[[ -n $K ]] || die "no keeper traced by relive $relive_pid"
	[[ -z $(ls "/proc/$K/fd") ]] || die "keeper $K holds descriptors: $(ls -l "/proc/$K/fd")"
	log "keeper $K holds the memory ($(status_field "$K" VmRSS) kB resident)"
	inv=$("$RELIVE" show "$TMP/lazy/inventory.img")
	[[ $inv == *'"flags": 1'* ]] || die "inventory without the lazy flag: $inv"
	stats=$("$RELIVE" show "$TMP/lazy/stats-dump.img")
	log "stats: $stats"
	[[ $stats =~ \"pages_lazy\":\ ([0-9]+) ]] && ((BASH_REMATCH[1] > 0)) ||
		die "stats-dump.img counts no lazy page: $stats"
	for m in badtoken garbage badversion outofrange hugerun unknownpid; do
		client "$m"
	done
	client silent 5000
	client partial 5000
	grep -q "wrong session token" "$TMP/lazy/dump.log" || die "the server did not log the wrong token"
	grep -q "outside the lazy runs" "$TMP/lazy/dump.log" || die "the server did not log the bad run"
	grep -q "unknown pid" "$TMP/lazy/dump.log" || die "the server did not log the unknown pid"
	grep -q "no valid hello within" "$TMP/lazy/dump.log" || die "the server did not log the silent client"
	kill -0 "$RELIVE_BG" 2>/dev/null || die "relive exited after the hostile clients"
	client fetch "$TMP/eager"
	rc=0
	wait_relive || rc=$?
	if [[ $rc != 0 ]]; then
		show_failure "$TMP/lazy.dump.out" "$TMP/lazy/dump.log"
		die "relive dump --lazy-pages exited with $rc after DONE"
	fi
	gone_or_zombie "$K" || die "keeper $K still runs after the session"
	log "relive exited 0 after DONE; keeper $K is gone"
	;;
timeout)
	start_victim "$VICTIM" "$@"
	sleep 0.3
	start_lazy "$TMP/lazy" --lazy-timeout 2
	wait_dead "$V_PID"
	relive_pid=$(pgrep -P "$RELIVE_BG" -x relive || echo "$RELIVE_BG")
	K=$(keeper_of "$relive_pid")
	[[ -n $K ]] || die "no keeper traced by relive $relive_pid"
	t0=$SECONDS
	rc=0
	wait_relive || rc=$?
	((SECONDS - t0 <= 6)) || die "relive took $((SECONDS - t0)) s to give up after --lazy-timeout 2"
	expect_failure "$TMP/lazy.dump.out" "$rc" "no client" "lazy-timeout"
	gone_or_zombie "$K" || die "keeper $K still runs after the timeout"
	log "keeper $K is gone"
	;;
usage)
	start_victim "$VICTIM" "$@"
	rc=0
	run_relive "$TMP/usage.out" dump -t "$V_PID" -D "$TMP/img" --lazy-pages --leave-running \
		--address 127.0.0.1 --port "$PORT" || rc=$?
	[[ $rc == 2 ]] || die "--lazy-pages --leave-running exited with $rc, expected 2: $(cat "$TMP/usage.out")"
	grep -q "leave-running" "$TMP/usage.out" || die "the error does not name --leave-running"
	check_running "$V_PID"
	[[ $(proc_start "$V_PID") == "$V_START" ]] || die "pid $V_PID is not the original process"
	finish "$V_PID" "$V_NONCE" 0
	;;
*)
	die "unknown case $CASE"
	;;
esac
echo PASS
