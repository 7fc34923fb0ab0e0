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
#             nsinit-lazy: dump --lazy-pages of it (its init cannot die
#             before serving: the keepers of its memory would die with the
#             namespace), then lazy-pages and restore --pidns --lazy-pages on
#             loopback. While the pages are served every process of the old
#             namespace is either a tree task ptrace-stopped by the source
#             (SIGCONT does not wake it, its counter stands still) or its
#             keeper; the restored tree PASSes, the daemon and the source
#             exit 0 and nothing of the old namespace is left.
#             nsinit-lazy-timeout: the daemon never comes: the dump gives up
#             after --lazy-timeout, exits non-zero, and the old namespace
#             (tree and keepers) is gone.
#             nsinit-lazy-sigkill: the source is SIGKILLed while serving: the
#             kernel kills the tree it traced (PTRACE_O_EXITKILL), rather
#             than let it run on, and the old namespace is gone.
#             nsinit-lazy-fault: the lazy dump fails before the images are
#             complete (RELIVE_FAULT=dump-before-inventory): the tree runs on
#             with no keeper left (each reaped by its namespace pid) and PASSes.
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

# ns_procs NS: the pids of every process in the pid namespace NS (an ns link).
ns_procs() {
	local p
	for p in /proc/[0-9]*; do
		[[ $(readlink "$p/ns/pid" 2>/dev/null) == "$1" ]] && echo "${p#/proc/}"
	done
	return 0
}

# wait_ns_gone NS: no process is left in NS within 10 s, else fail naming them.
wait_ns_gone() {
	local i left
	for ((i = 0; i < 100; i++)); do
		left=$(ns_procs "$1")
		[[ -z $left ]] && return 0
		sleep 0.1
	done
	die "processes of the old pid namespace $1 are left:" \
		"$(for p in $left; do echo "$p ($(cat "/proc/$p/comm" 2>/dev/null))"; done)"
}

# start_lazy_dump TIMEOUT: dump --lazy-pages of V_PID into SRC in the background,
# until its status byte; sets PORT, SRC, DST, SRC_PID.
start_lazy_dump() {
	PORT=$((31300 + $$ % 2000))
	while [[ -n $(ss -Hltn "sport = :$PORT" 2>/dev/null) ]]; do
		PORT=$((31300 + RANDOM % 2000))
	done
	SRC=$TMP/src DST=$TMP/dst
	mkdir -p "$SRC" "$DST"
	mkfifo "$TMP/src.status" "$TMP/lp.status"
	log "relive dump -t $V_PID -D $SRC --lazy-pages --port $PORT --lazy-timeout $1"
	"$RELIVE" dump -t "$V_PID" -D "$SRC" -o dump.log -v4 --lazy-pages --address 127.0.0.1 \
		--port "$PORT" --status-fd 3 --lazy-timeout "$1" 3>"$TMP/src.status" \
		>"$SRC.dump.out" 2>&1 &
	SRC_PID=$!
	BG+=("$SRC_PID")
	LOGS=("$SRC.dump.out" "$SRC/dump.log")
	[[ $(timeout 60 head -c1 "$TMP/src.status" | wc -c) == 1 ]] ||
		{ show_failure "${LOGS[@]}"; die "no status byte from relive dump --lazy-pages"; }
}

# lazy_restore: lazy-pages on DST (a copy of SRC), restore --pidns --lazy-pages;
# the daemon and the source exit 0.
lazy_restore() {
	local p i rc
	cp -a "$SRC/." "$DST/"
	rm -f "$DST/dump.log"
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
}

# check_held NS: while serving, every process of NS is a zombie of the tree
# or is traced by the source: ptrace-stopped (a tree task) or a keeper, one
# per task; a SIGCONT does not wake the tree and its counter stands still.
check_held() {
	local p st n_t=0 n_k=0 c1 c2
	for p in $(ns_procs "$1"); do
		st=$(proc_state "$p") || continue
		# A zombie of the tree has neither memory nor keeper.
		[[ $st == Z ]] && continue
		[[ $(status_field "$p" TracerPid) == "$SRC_PID" ]] ||
			die "pid $p ($st) of the old namespace is not traced by the source $SRC_PID"
		case $st in
		t) n_t=$((n_t + 1)) ;;
		S) n_k=$((n_k + 1)) ;;
		*) die "pid $p of the old namespace is in state $st while the pages are served" ;;
		esac
	done
	((n_t > 0 && n_k == n_t)) ||
		die "old namespace: $n_t stopped tasks, $n_k keepers (expected one per task)"
	c1=$(victim_counter "$V_PID" "$V_ADDR")
	for p in $(ns_procs "$1"); do
		[[ $(proc_state "$p") == t ]] && kill -CONT "$p"
	done
	sleep 0.5
	for p in $(ns_procs "$1"); do
		st=$(proc_state "$p") || continue
		[[ $st == [tSZ] ]] || die "pid $p of the old namespace is in state $st after SIGCONT"
	done
	c2=$(victim_counter "$V_PID" "$V_ADDR")
	[[ $c1 == "$c2" ]] || die "the old init ran on while the pages are served ($c1 -> $c2)"
	log "old namespace held: $n_t tasks ptrace-stopped (also after SIGCONT), $n_k keepers"
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
	require_features "userfaultfd" "UFFDIO_API" "UFFDIO_COPY"
	OLD_NS=$(readlink "/proc/$V_PID/ns/pid")
	start_lazy_dump 60
	check_held "$OLD_NS"
	lazy_restore
	wait_ns_gone "$OLD_NS"
	log "nothing of the old pid namespace $OLD_NS is left"
	finish "$R_PID" "$V_NONCE" "$c0"
	;;
nsinit-lazy-timeout)
	OLD_NS=$(readlink "/proc/$V_PID/ns/pid")
	start_lazy_dump 3
	check_held "$OLD_NS"
	rc=0
	for ((i = 0; i < 300; i++)); do
		kill -0 "$SRC_PID" 2>/dev/null || break
		sleep 0.1
	done
	wait "$SRC_PID" || rc=$?
	expect_failure "$SRC.dump.out" "$rc" "lazy-timeout"
	wait_ns_gone "$OLD_NS"
	log "nothing of the old pid namespace $OLD_NS is left"
	;;
nsinit-lazy-sigkill)
	OLD_NS=$(readlink "/proc/$V_PID/ns/pid")
	start_lazy_dump 60
	check_held "$OLD_NS"
	kill -9 "$SRC_PID"
	wait "$SRC_PID" || true
	wait_ns_gone "$OLD_NS"
	log "source killed while serving: nothing of the old pid namespace $OLD_NS is left"
	;;
nsinit-lazy-fault)
	OLD_NS=$(readlink "/proc/$V_PID/ns/pid")
	n0=$(ns_procs "$OLD_NS" | wc -l)
	mkdir -p "$TMP/src"
	rc=0
	RELIVE_FAULT=dump-before-inventory run_relive "$TMP/src.dump.out" dump -t "$V_PID" \
		-D "$TMP/src" --lazy-pages --address 127.0.0.1 --port $((31300 + $$ % 2000)) ||
		rc=$?
	expect_failure "$TMP/src.dump.out" "$rc" "$V_PID" "keeps running"
	grep -i "reaping keeper" "$TMP/src.dump.out" && die "a keeper was not reaped in its victim"
	n1=$(ns_procs "$OLD_NS" | wc -l)
	[[ $n1 == "$n0" ]] || die "old namespace: $n0 processes before the dump, $n1 after (keepers left?)"
	for p in $(ns_procs "$OLD_NS"); do
		[[ $(status_field "$p" TracerPid) == 0 ]] || die "pid $p is still traced after the failure"
	done
	[[ $(proc_state "$V_PID") == [RS] ]] || die "pid $V_PID is not running after the failure"
	finish "$V_PID" "$V_NONCE" "$c0"
	;;
lazy)
	require_features "userfaultfd" "UFFDIO_API" "UFFDIO_COPY"
	start_lazy_dump 60
	wait_gone "$V_PID" 30 || die "pid $V_PID still exists 30 s after the dump"
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
	lazy_restore
	finish "$R_PID" "$V_NONCE" "$c0"
	;;
*)
	die "unknown case '$CASE'"
	;;
esac
log "PASS: $CASE"
