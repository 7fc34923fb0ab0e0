#!/bin/bash
# restore --pidns: a process tree restored into a fresh pid namespace while
# its original PIDs are still taken on the host:
#
#   pidns.sh RELIVE VICTIM CASE [VICTIM ARGS...]
#
# CASE eager: dump --leave-running (the original tree keeps every PID), then
#             restore --pidns -d. The restored root runs under another host
#             pid, in another pid namespace, where its pid (NSpid) is the
#             dumped one; its parent there is the namespace's init; its /proc
#             is the namespace's. Both the
#             restored tree and the original give their PASS.
# CASE fail:  as eager, but the cwd of child B is gone: the restore fails
#             naming it and leaves no process in any pid namespace; with the
#             directory back the same images restore and both trees PASS.
# CASE nsinit: the victim runs as pid 1 of a pid namespace (unshare -p); the
#             dump records the namespace's pids (the root is pid 1 in
#             pstree.img) and restore --pidns makes it pid 1 of a new
#             namespace, with the same pids for the whole tree: PASS.
#             PIDNS_DUMP_ARGS: more arguments of its dump, split on spaces
#             (--file-locks); victim-ptimers and victim-locks check that
#             their SIGEV_THREAD_ID timers and lock owners followed.
#             nsinit-lazy: a lazy dump of it is refused (the death of the
#             namespace's init would take the keepers of its memory along),
#             naming the pid, and the tree runs on and PASSes.
# CASE lazy:  dump --lazy-pages (the original dies), a process of ours takes
#             the root's PID on the host, then lazy-pages and restore --pidns
#             --lazy-pages on loopback: the restored tree PASSes, the daemon
#             and the source exit 0.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
driver_init 3 "RELIVE VICTIM CASE [VICTIM ARGS...]" "$@"
shift 3
[[ -e /proc/self/ns/pid ]] || skip "no pid namespaces"

HOLDER=
BG=()
pidns_cleanup() {
	local p
	set +e
	[[ -n $HOLDER ]] && kill -9 "$HOLDER" 2>/dev/null
	for p in "${BG[@]}"; do
		kill -9 "$p" 2>/dev/null
	done
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[[ $p == "$$" || $p == "$BASHPID" ]] && continue
		is_ours "$p" && kill -9 "$p" 2>/dev/null
	done
}
trap 'rc=$?; pidns_cleanup; (exit $rc); cleanup' EXIT

# restore_pidns DIR EXTRA...: restore --pidns -d; sets R_PID (host pid of the root).
restore_pidns() {
	local dir=$1 rc=0
	shift
	log "relive restore -D $dir --pidns -d $*"
	run_relive "$dir.restore.out" restore -D "$dir" --pidns -d -o restore.log -v4 "$@" || rc=$?
	if [[ $rc != 0 ]]; then
		show_failure "$dir.restore.out" "$dir/restore.log" "${LOGS[@]}"
		die "relive restore --pidns from $dir exited with $rc"
	fi
	R_PID=$(tail -1 "$dir.restore.out")
	[[ $R_PID =~ ^[0-9]+$ ]] || die "restore printed '$R_PID', not a pid"
}

# The restored root: in a pid namespace of its own, with the dumped pid there.
check_ns() {
	local nspid ppid
	[[ $R_PID != "$V_PID" ]] || die "the restored root has the host pid $V_PID: no new namespace"
	[[ $(readlink "/proc/$R_PID/ns/pid") != $(readlink /proc/self/ns/pid) ]] ||
		die "pid $R_PID is in our pid namespace"
	read -ra nspid <<<"$(awk '$1 == "NSpid:" { $1 = ""; print }' "/proc/$R_PID/status")"
	[[ ${nspid[-1]} == "$WANT_NSPID" ]] ||
		die "pid $R_PID is pid ${nspid[-1]} in its namespace, expected $WANT_NSPID"
	# Its /proc is its namespace's: there, its pid is the restored root itself.
	[[ $(nsenter -t "$R_PID" -m readlink "/proc/$WANT_NSPID/ns/pid") == \
		"$(readlink "/proc/$R_PID/ns/pid")" ]] ||
		die "in the mounts of pid $R_PID, /proc/$WANT_NSPID is not the restored root: no /proc" \
			"of its pid namespace"
	ppid=$(status_field "$R_PID" PPid)
	[[ $(tr -d '\0' <"/proc/$ppid/comm") == relive-init || $WANT_NSPID == 1 ]] ||
		die "the parent of pid $R_PID is $ppid ($(cat "/proc/$ppid/comm")), not relive-init"
	log "restored root: host pid $R_PID, pid ${nspid[-1]} in its namespace, parent $ppid"
}

# The victim as pid 1 of a pid namespace of its own (and a session leader
# there): sets what start_victim sets, V_PID being its host pid.
start_nsinit() {
	local p i
	V_DIR=$TMP/victim1
	mkdir -p "$V_DIR"
	# unshare's own messages must not land in the victim's log (its size is checked).
	setsid -f unshare -p -f --mount-proc -- setsid bash -c 'exec "$@" >"$0" 2>&1' \
		"$V_DIR/victim.log" "$VICTIM" "$@" --workdir "$V_DIR" --ready "$V_DIR/ready" \
		--verdict "$V_DIR/verdict" </dev/null >/dev/null 2>&1
	for ((i = 0; i < VICTIM_TIMEOUT * 10; i++)); do
		[[ -e $V_DIR/ready ]] && break
		sleep 0.1
	done
	[[ -e $V_DIR/ready ]] || die "the victim did not get ready: $(cat "$V_DIR/victim.log")"
	read -r _ _ V_NONCE V_ADDR <"$V_DIR/ready"
	V_PID=
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		is_ours "$p" || continue
		read -ra nspid <<<"$(awk '$1 == "NSpid:" { $1 = ""; print }' "/proc/$p/status")"
		((${#nspid[@]} == 2)) && [[ ${nspid[1]} == 1 ]] && V_PID=$p
	done
	[[ -n $V_PID ]] || die "cannot find the host pid of the victim (pid 1 of its namespace)"
	VICTIM_PIDS+=("$V_PID")
	log "started $(basename "$VICTIM") as pid 1 of a pid namespace, host pid $V_PID"
}

LOGS=()
if [[ $CASE == nsinit* ]]; then
	start_nsinit "$@"
	WANT_NSPID=1
else
	start_victim "$VICTIM" "$@"
	WANT_NSPID=$V_PID
fi
sleep 0.3
c0=$(victim_counter "$V_PID" "$V_ADDR")

case $CASE in
eager)
	dump "$V_PID" "$TMP/img" --leave-running
	check_running "$V_PID"
	restore_pidns "$TMP/img"
	check_ns
	sleep 0.2
	finish "$R_PID" "$V_NONCE" "$c0"
	rm -f "$V_DIR/verdict"
	log "the original tree, still on its pids"
	finish "$V_PID" "$V_NONCE" "$c0"
	;;
nsinit)
	# shellcheck disable=SC2086 # PIDNS_DUMP_ARGS is split on purpose
	dump "$V_PID" "$TMP/img" ${PIDNS_DUMP_ARGS:-}
	wait_gone "$V_PID" 10 || die "pid $V_PID still exists after the dump"
	[[ $("$RELIVE" show "$TMP/img/pstree.img") == *'"pid": 1, "ppid": 0'* ]] ||
		die "pstree.img does not have the root as pid 1: $("$RELIVE" show "$TMP/img/pstree.img")"
	restore_pidns "$TMP/img"
	check_ns
	sleep 0.2
	finish "$R_PID" "$V_NONCE" "$c0"
	;;
fail)
	dump "$V_PID" "$TMP/img" --leave-running
	mv "$V_DIR/b" "$V_DIR/b.away"
	rc=0
	run_relive "$TMP/fail.out" restore -D "$TMP/img" --pidns -d -o restore.log -v4 || rc=$?
	expect_failure "$TMP/fail.out" "$rc" "$V_DIR/b"
	# Nothing of ours is left in another pid namespace (init and helpers die together).
	sleep 0.2
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		is_ours "$p" || continue
		[[ $(readlink "/proc/$p/ns/pid") == "$(readlink /proc/self/ns/pid)" ]] ||
			die "pid $p ($(cat "/proc/$p/comm")) is left in a pid namespace after the failure"
	done
	log "restore --pidns failed naming $V_DIR/b; nothing is left in a pid namespace"
	mv "$V_DIR/b.away" "$V_DIR/b"
	restore_pidns "$TMP/img"
	check_ns
	sleep 0.2
	finish "$R_PID" "$V_NONCE" "$c0"
	rm -f "$V_DIR/verdict"
	finish "$V_PID" "$V_NONCE" "$c0"
	;;
nsinit-lazy)
	mkdir -p "$TMP/src"
	rc=0
	run_relive "$TMP/src.dump.out" dump -t "$V_PID" -D "$TMP/src" --lazy-pages \
		--address 127.0.0.1 --port $((31300 + $$ % 2000)) || rc=$?
	expect_failure "$TMP/src.dump.out" "$rc" "$V_PID" "init of a pid namespace"
	[[ $(proc_state "$V_PID") == [RS] ]] || die "pid $V_PID is not running after the refusal"
	finish "$V_PID" "$V_NONCE" "$c0"
	;;
lazy)
	require_features "userfaultfd" "UFFDIO_API" "UFFDIO_COPY"
	PORT=$((31300 + $$ % 2000))
	while [[ -n $(ss -Hltn "sport = :$PORT" 2>/dev/null) ]]; do
		PORT=$((31300 + RANDOM % 2000))
	done
	SRC=$TMP/src DST=$TMP/dst
	mkdir -p "$SRC" "$DST"
	mkfifo "$TMP/src.status" "$TMP/lp.status"
	log "relive dump -t $V_PID -D $SRC --lazy-pages --port $PORT"
	"$RELIVE" dump -t "$V_PID" -D "$SRC" -o dump.log -v4 --lazy-pages --address 127.0.0.1 \
		--port "$PORT" --status-fd 3 --lazy-timeout 60 3>"$TMP/src.status" \
		>"$SRC.dump.out" 2>&1 &
	SRC_PID=$!
	BG+=("$SRC_PID")
	LOGS=("$SRC.dump.out" "$SRC/dump.log")
	[[ $(timeout 60 head -c1 "$TMP/src.status" | wc -c) == 1 ]] ||
		{ show_failure "${LOGS[@]}"; die "no status byte from relive dump --lazy-pages"; }
	wait_gone "$V_PID" 30 || die "pid $V_PID still exists 30 s after the dump"
	cp -a "$SRC/." "$DST/"
	rm -f "$DST/dump.log"
	# Someone else takes the root's pid on the host.
	for ((i = 0; i < 50; i++)); do
		echo $((V_PID - 1)) >/proc/sys/kernel/ns_last_pid
		sleep 60 &
		if [[ $! == "$V_PID" ]]; then
			HOLDER=$!
			break
		fi
		kill -9 $! 2>/dev/null || true
		wait $! 2>/dev/null || true
	done
	[[ -n $HOLDER ]] || skip "could not take pid $V_PID for the test"
	log "pid $V_PID is taken on the host by 'sleep 60'"
	log "relive lazy-pages --port $PORT -D $DST"
	"$RELIVE" lazy-pages --address 127.0.0.1 --port "$PORT" -D "$DST" --status-fd 3 \
		-o lazy-pages.log -v4 --lazy-timeout 30 3>"$TMP/lp.status" >"$TMP/lp.out" 2>&1 &
	LP_PID=$!
	BG+=("$LP_PID")
	LOGS+=("$TMP/lp.out" "$DST/lazy-pages.log")
	[[ $(timeout 60 head -c1 "$TMP/lp.status" | wc -c) == 1 ]] ||
		{ show_failure "${LOGS[@]}"; die "no status byte from relive lazy-pages"; }
	restore_pidns "$DST" --lazy-pages
	check_ns
	for p in "$LP_PID" "$SRC_PID"; do
		for ((i = 0; i < 600; i++)); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		rc=0
		wait "$p" || rc=$?
		[[ $rc == 0 ]] || { show_failure "${LOGS[@]}"; die "relive process $p exited with $rc"; }
	done
	log "$(grep -m1 '^lazy-pages: .* pages in' "$TMP/lp.out")"
	finish "$R_PID" "$V_NONCE" "$c0"
	;;
*)
	die "unknown case '$CASE'"
	;;
esac
log "PASS: $CASE"
