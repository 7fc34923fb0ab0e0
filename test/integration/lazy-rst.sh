#!/bin/bash
# restore --lazy-pages against a stand-in daemon, without the lazy dumper:
#
#   lazy-rst.sh RELIVE VICTIM CASE MKIMG DAEMON [VICTIM ARGS...]
#
# Every case dumps the victim eagerly into img-eager (the victim is gone),
# copies it to img-lazy and rewrites that copy with MKIMG so that every
# private anonymous page is LAZY (its data stays only in img-eager).
#
# CASE serve:     DAEMON takes the handover and serves the faults from
#                 img-eager -> restore --lazy-pages -d -> same pid, running,
#                 untraced -> the victim's PASS; restore read only the PRESENT
#                 pages (stats-restore.img) and the daemon copied lazy pages.
# CASE no-daemon: restore of lazy images without --lazy-pages is refused;
#                 with it but no daemon socket it fails, no process is left.
# CASE stale:     a socket file nobody listens on: fails, no process is left.
# CASE nack:      the daemon closes the handover without 'A': fails, no
#                 process is left.
# CASE silent:    the daemon takes the handover and never answers: restore
#                 gives up after its timeout, no process is left.
# CASE foreign:   the daemon runs as uid 65534: restore refuses to hand it the
#                 uffd (SO_PEERCRED), fails, no process is left.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
driver_init 5 "RELIVE VICTIM CASE MKIMG DAEMON [VICTIM ARGS...]" "$@"
MKIMG=$4
DAEMON=$5
shift 5
require_features "userfaultfd" "UFFDIO_API" "UFFDIO_COPY"

EAGER=$TMP/img-eager
LAZY=$TMP/img-lazy

# start_daemon MODE: the stand-in daemon, ready to take a handover.
start_daemon() {
	local i
	rm -f "$TMP/daemon.ready"
	"$DAEMON" "$1" "$LAZY" "$EAGER" "$TMP/daemon.ready" >"$TMP/daemon.out" 2>&1 &
	DAEMON_PID=$!
	VICTIM_PIDS+=("$DAEMON_PID")
	for ((i = 0; i < 100; i++)); do
		[[ -e $TMP/daemon.ready ]] && break
		kill -0 "$DAEMON_PID" 2>/dev/null || break
		sleep 0.1
	done
	[[ -e $TMP/daemon.ready ]] || die "the stand-in daemon did not start: $(cat "$TMP/daemon.out")"
	log "stand-in daemon ($1) listens on $LAZY/lazy-pages.sock"
}

# wait_daemon: it must exit 0 within 60 s.
wait_daemon() {
	local i rc=0
	for ((i = 0; i < 600; i++)); do
		kill -0 "$DAEMON_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$DAEMON_PID" 2>/dev/null && die "the stand-in daemon is still running"
	wait "$DAEMON_PID" || rc=$?
	[[ $rc == 0 ]] || die "the stand-in daemon failed ($rc): $(cat "$TMP/daemon.out")"
}

# restore_fails WORDS...: restore --lazy-pages fails naming WORDS; no process has the pid.
restore_fails() {
	local rc=0
	run_relive "$TMP/restore.out" restore -D "$LAZY" --lazy-pages -d -v4 || rc=$?
	expect_failure "$TMP/restore.out" "$rc" "$@"
	[[ -e /proc/$V_PID ]] && die "pid $V_PID exists after a failed lazy restore"
	[[ -e $V_DIR/verdict ]] && die "the victim ran after a failed lazy restore"
	return 0
}

# stats_field NAME: a number of stats-restore.img.
stats_field() {
	"$RELIVE" show "$LAZY/stats-restore.img" | tr -d ' \n' |
		grep -o "\"$1\":[0-9]*" | head -1 | cut -d: -f2
}

start_victim "$VICTIM" "$@"
sleep 0.3	# let the main loop run a little before the freeze
c0=$(victim_counter "$V_PID" "$V_ADDR")
dump "$V_PID" "$EAGER"
wait_dead "$V_PID"
mkdir -p "$LAZY"
cp -a "$EAGER/." "$LAZY/"
rm -f "$LAZY/dump.log" "$LAZY/stats-dump.img"
read -r _ present _ lazy < <("$MKIMG" "$EAGER" "$LAZY") || die "$MKIMG failed"
log "lazy images: $present pages present, $lazy pages lazy"
# The dumped process's zombie holds the pid until its reaper gets to it;
# restore would wait for that, which is not what its time should measure.
wait_gone "$V_PID" 30 || die "pid $V_PID is still held after 30 s"
((lazy > 0)) || die "no lazy page in the rewritten images"

case $CASE in
serve)
	start_daemon serve
	log "relive restore -D $LAZY --lazy-pages -d"
	rc=0
	run_relive "$TMP/restore.out" restore -D "$LAZY" --lazy-pages -d -o restore.log -v4 || rc=$?
	if [[ $rc != 0 ]]; then
		show_failure "$TMP/restore.out" "$LAZY/restore.log" "$TMP/daemon.out"
		die "relive restore --lazy-pages exited with $rc"
	fi
	check_running "$V_PID" "$TMP/restore.out" "$LAZY/restore.log" "$V_DIR/victim.log"
	[[ $(proc_start "$V_PID") != "$V_START" ]] || die "pid $V_PID was not recreated"
	t_us=$(stats_field restore_time_us)
	read_pages=$(stats_field pages_read)
	log "restore time ${t_us} us, pages read $read_pages (present $present, lazy $lazy)"
	[[ $read_pages == "$present" ]] ||
		die "restore read $read_pages pages, the lazy images have $present present pages"
	finish "$V_PID" "$V_NONCE" "$c0"
	wait_daemon
	log "$(cat "$TMP/daemon.out")"
	copied=$(grep -o '[0-9]* pages copied' "$TMP/daemon.out" | cut -d' ' -f1)
	((copied > 0)) || die "the victim passed without the daemon copying a page"
	echo "RESULT lazy-restore $* restore_time_us=$t_us pages_read=$read_pages lazy_pages=$lazy"
	;;
no-daemon)
	rc=0
	run_relive "$TMP/eager.out" restore -D "$LAZY" -d || rc=$?
	expect_failure "$TMP/eager.out" "$rc" "--lazy-pages"
	restore_fails "no lazy-pages daemon" "$LAZY/lazy-pages.sock"
	;;
stale)
	start_daemon stale
	wait_daemon
	[[ -S $LAZY/lazy-pages.sock ]] || die "the stale socket is gone"
	restore_fails "no lazy-pages daemon" "$LAZY/lazy-pages.sock" "refused"
	;;
nack)
	start_daemon nack
	restore_fails "closed the handover" "$V_PID"
	wait_daemon
	;;
silent)
	start_daemon silent
	restore_fails "did not accept pid $V_PID"
	wait_daemon
	;;
foreign)
	chmod 0777 "$LAZY"	# uid 65534 creates its socket there
	start_daemon foreign
	restore_fails "runs as uid 65534" "$V_PID"
	wait_daemon
	;;
*)
	die "unknown case '$CASE'"
	;;
esac
log "PASS: lazy $CASE $(basename "$VICTIM") $*"
