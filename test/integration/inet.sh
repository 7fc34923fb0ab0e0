#!/bin/bash
# Inet sockets (test/victims/victim-inet.c) through a dump, with the peer of
# its established TCP connection (inet-peer.py) outside the dumped tree:
#
#   inet.sh RELIVE VICTIM CASE 4|6
#
# 4|6 is the family of the established connection (the victim always has
# IPv4 and IPv6 listeners and UDP sockets).
# CASE restore:       the peer stops reading (the victim's send queue fills
#                     up); dump --tcp-established -> the victim is gone ->
#                     restore, the peer reads again:
#                     the victim PASSes (its listeners accept, its UDP
#                     sockets receive, numbers kept coming after the frozen
#                     window) and so does the peer (no number skipped, the
#                     connection never closed or reset).
# CASE leave-running: dump --tcp-established --leave-running: the original
#                     runs on; both PASS.
# CASE lazy:          lazy-e2e.sh loop (loopback: the address of the
#                     connection must exist where it is restored) with
#                     --tcp-established; both PASS.
# CASE refused:       dump without --tcp-established fails naming the pid,
#                     the fd, the connection and the option; the victim runs
#                     on untouched; both PASS.
# CASE dump-fails:    the victim also holds a userfaultfd (fd 50), which the
#                     dump refuses after it has locked the connection: the
#                     dump fails naming it, the lock is gone, the connection
#                     is out of repair mode; the victim runs on; both PASS.
# CASE restore-fails: after the dump, another socket takes the port of the
#                     victim's listener: the restore fails naming the bind,
#                     and removes the lock all the same (the peer then sees
#                     its connection reset: its verdict is not asked).
# Every case requires that no nftables table of the network lock is left at
# the end; the trap kills the peer and removes such tables on any exit.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
driver_init 4 "RELIVE VICTIM CASE 4|6" "$@"
FAM=$4
command -v nft >/dev/null || skip "nft (package nftables) is not installed"
command -v python3 >/dev/null || skip "python3 is not installed"

lock_tables() {
	nft list tables 2>/dev/null | awk '$2 == "inet" && $3 ~ /^relive_lock_/ { print $3 }'
}
OLD_TABLES=$(lock_tables | tr '\n' ' ')
PEER_PID=

# Tables of the lock made during this test (not those of another run).
new_tables() {
	local t
	for t in $(lock_tables); do
		[[ " $OLD_TABLES " == *" $t "* ]] || echo "$t"
	done
	return 0
}

inet_cleanup() {
	local rc=$? t
	set +e
	[[ -n $PEER_PID ]] && kill -9 "$PEER_PID" 2>/dev/null
	for t in $(new_tables); do
		nft delete table inet "$t" 2>/dev/null
	done
	(exit "$rc")
	cleanup
}
trap inet_cleanup EXIT

start_peer() {
	local i
	python3 "$(dirname "$0")/inet-peer.py" "$FAM" "$TMP/peer.port" "$TMP/peer.verdict" 100 \
		"$TMP" >"$TMP/peer.log" 2>&1 &
	PEER_PID=$!
	for ((i = 0; i < 100; i++)); do
		[[ -e $TMP/peer.port ]] && break
		sleep 0.1
	done
	[[ -e $TMP/peer.port ]] || die "the peer did not start: $(cat "$TMP/peer.log")"
	PEER_PORT=$(cat "$TMP/peer.port")
	export RELIVE_INET_PEER="$FAM $PEER_PORT"
	log "peer $PEER_PID listens on port $PEER_PORT (IPv$FAM)"
}

# The peer's verdict, once the victim said BYE.
peer_verdict() {
	local i v
	for ((i = 0; i < 100; i++)); do
		[[ -e $TMP/peer.verdict ]] && break
		sleep 0.1
	done
	[[ -e $TMP/peer.verdict ]] || die "the peer gave no verdict: $(tail -3 "$TMP/peer.log")"
	v=$(cat "$TMP/peer.verdict")
	log "peer: $v"
	[[ $v == PASS* ]] || die "peer: $v"
	wait "$PEER_PID" 2>/dev/null || true
	PEER_PID=
}

no_lock_left() {
	local t
	t=$(new_tables | tr '\n' ' ')
	[[ -z ${t// /} ]] || die "the network lock is still there: nft table(s) $t"
}

start_peer
case $CASE in
restore)
	start_victim "$VICTIM"
	sleep 0.5
	# The peer stops reading: the victim's echoes wait in its send queue.
	kill -USR1 "$PEER_PID"
	sleep 0.5
	c0=$(victim_counter "$V_PID" "$V_ADDR")
	dump "$V_PID" "$TMP/img" --tcp-established
	wait_dead "$V_PID"
	[[ -n $(new_tables) ]] || die "no network lock between the dump and the restore"
	q=$(grep -o "send queue [0-9]* bytes ([0-9]* unsent) .* receive queue [0-9]*" \
		"$TMP/img/dump.log") || die "the dump log shows no established connection"
	log "dumped: $q"
	if ! [[ $q =~ ^send\ queue\ ([0-9]+).*receive\ queue\ ([0-9]+)$ ]] ||
		((BASH_REMATCH[1] == 0 || BASH_REMATCH[2] == 0)); then
		die "a queue of the connection was empty at the dump: nothing was tested ($q)"
	fi
	restore "$TMP/img"
	kill -USR1 "$PEER_PID"
	check_running "$V_PID" "$TMP/img.restore.out" "$TMP/img/restore.log"
	no_lock_left
	sleep 1	# numbers must keep coming after the restore
	finish "$V_PID" "$V_NONCE" "$c0"
	;;
leave-running)
	start_victim "$VICTIM"
	sleep 0.5
	c0=$(victim_counter "$V_PID" "$V_ADDR")
	dump "$V_PID" "$TMP/img" --tcp-established --leave-running
	check_running "$V_PID"
	[[ $(proc_start "$V_PID") == "$V_START" ]] || die "pid $V_PID is not the original process"
	no_lock_left
	sleep 1
	finish "$V_PID" "$V_NONCE" "$c0"
	;;
lazy)
	E2E_DUMP_ARGS=--tcp-established bash "$(dirname "$0")/lazy-e2e.sh" "$RELIVE" "$VICTIM" \
		loop || die "lazy-e2e.sh loop failed"
	no_lock_left
	;;
refused)
	start_victim "$VICTIM"
	sleep 0.5
	c0=$(victim_counter "$V_PID" "$V_ADDR")
	rc=0
	mkdir -p "$TMP/img"
	run_relive "$TMP/img.dump.out" dump -t "$V_PID" -D "$TMP/img" -v4 || rc=$?
	addr=127.0.0.1
	[[ $FAM == 6 ]] && addr="[::1]"
	expect_failure "$TMP/img.dump.out" "$rc" "pid $V_PID" "fd " "$addr:$PEER_PORT" \
		"--tcp-established"
	check_running "$V_PID"
	no_lock_left
	sleep 0.5
	finish "$V_PID" "$V_NONCE" "$c0"
	;;
dump-fails)
	RELIVE_INET_UNSUP=1 start_victim "$VICTIM"
	sleep 0.5
	c0=$(victim_counter "$V_PID" "$V_ADDR")
	rc=0
	mkdir -p "$TMP/img"
	run_relive "$TMP/img.dump.out" dump -t "$V_PID" -D "$TMP/img" -v4 --tcp-established ||
		rc=$?
	expect_failure "$TMP/img.dump.out" "$rc" "pid $V_PID" "fd 50" "userfaultfd"
	grep -q "network lock relive_lock_$V_PID:" "$TMP/img.dump.out" ||
		die "the dump failed before it locked the connection: nothing was tested"
	check_running "$V_PID"
	no_lock_left
	sleep 0.5
	finish "$V_PID" "$V_NONCE" "$c0"
	;;
restore-fails)
	start_victim "$VICTIM"
	sleep 0.5
	dump "$V_PID" "$TMP/img" --tcp-established
	wait_dead "$V_PID"
	wait_gone "$V_PID" 30 || die "pid $V_PID is still held 30 s after the dump"
	port=$(sed -n 's/.*fd 3: TCP 127\.0\.0\.1:\([0-9]*\) LISTEN.*/\1/p' "$TMP/img/dump.log")
	[[ -n $port ]] || die "no listener on fd 3 in the dump log"
	python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1); open(sys.argv[2], "w").close()
time.sleep(60)' "$port" "$TMP/squatter.ready" &
	SQUATTER=$!
	for ((i = 0; i < 50; i++)); do
		[[ -e $TMP/squatter.ready ]] && break
		sleep 0.1
	done
	[[ -e $TMP/squatter.ready ]] || die "the squatter did not take port $port"
	rc=0
	run_relive "$TMP/img.restore.out" restore -D "$TMP/img" -d -o restore.log -v4 || rc=$?
	kill -9 "$SQUATTER"
	expect_failure "$TMP/img.restore.out" "$rc" "fd 3" "bind" "address already in use"
	no_lock_left
	kill -9 "$PEER_PID"
	PEER_PID=
	log "PASS: $CASE IPv$FAM"
	exit 0
	;;
*)
	die "unknown case '$CASE'"
	;;
esac
peer_verdict
no_lock_left
log "PASS: $CASE IPv$FAM"
