#!/bin/bash
# Unix sockets connected outside the dumped tree (test/victims/part-unix.c,
# RELIVE_UNIX_EXT): a python3 peer owns a socket file in our directory and
# logs every message it gets, the victim's fd 70 is connected to it.
#
#   unix.sh RELIVE VICTIM CASE [VICTIM ARGS...]
#
# CASE ext-refused: datagram peer, no --ext-unix-sk: the dump fails naming the
#                   pid, fd 70 and the peer; the victim runs on and PASSes.
# CASE ext-dgram:   datagram peer, --ext-unix-sk: dump, restore, PASS, and the
#                   peer got the victim's message sent after the restore.
# CASE ext-stream:  stream peer, --ext-unix-sk: the dump still fails, saying
#                   that a stream connection cannot be re-established.
# CASE scm-refused: no outside peer; a message carrying a descriptor is queued
#                   in fd 73 (RELIVE_UNIX_SCM): the dump fails naming it and
#                   SCM_RIGHTS; the victim still has the message.
# CASE pending-refused: a listener (fd 74) with a connection not accepted yet
#                   (RELIVE_UNIX_PENDING): the dump fails naming it; the victim
#                   accepts the connection afterwards.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
driver_init 3 "RELIVE VICTIM CASE [VICTIM ARGS...]" "$@"
shift 3

# start_peer TYPE: a peer bound to $TMP/ext.sock, logging to $TMP/ext.log.
start_peer() {
	local i
	python3 - "$TMP/ext.sock" "$TMP/ext.log" "$1" >"$TMP/peer.out" 2>&1 <<'EOF' &
import socket, sys
path, logf, kind = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM if kind == "stream" else socket.SOCK_DGRAM)
s.bind(path)
if kind == "stream":
    s.listen(1)
    s, _ = s.accept()
while True:
    m = s.recv(4096)
    if not m:
        break
    with open(logf, "a") as f:
        f.write(m.decode() + "\n")
EOF
	VICTIM_PIDS+=("$!")
	disown "$!"
	for ((i = 0; i < 50; i++)); do
		[[ -S $TMP/ext.sock ]] && return 0
		sleep 0.1
	done
	die "the outside peer did not bind $TMP/ext.sock: $(cat "$TMP/peer.out")"
}

# refused WORDS...: the dump fails naming them; the victim runs on and PASSes.
refused() {
	local rc=0 c0
	c0=$(victim_counter "$V_PID" "$V_ADDR")
	mkdir -p "$TMP/img"
	run_relive "$TMP/dump.out" dump -t "$V_PID" -D "$TMP/img" -v4 "${EXTRA[@]}" || rc=$?
	expect_failure "$TMP/dump.out" "$rc" "pid $V_PID" "$@"
	[[ ! -e $TMP/img/inventory.img ]] || die "a refused dump wrote inventory.img"
	check_running "$V_PID" "$TMP/dump.out" "$V_DIR/victim.log"
	[[ $(proc_start "$V_PID") == "$V_START" ]] || die "pid $V_PID is not the original process"
	finish "$V_PID" "$V_NONCE" "$c0"
}

EXTRA=()
case $CASE in
ext-refused | ext-dgram) start_peer dgram ;;
ext-stream) start_peer stream ;;
scm-refused) export RELIVE_UNIX_SCM=1 ;;
pending-refused) export RELIVE_UNIX_PENDING=1 ;;
*) die "unknown case '$CASE'" ;;
esac
[[ $CASE == ext-* ]] && export RELIVE_UNIX_EXT=$TMP/ext.sock
[[ $CASE == ext-stream ]] && export RELIVE_UNIX_EXT_TYPE=stream
start_victim "$VICTIM" "$@"
sleep 0.3

case $CASE in
ext-refused)
	refused "fd 70" "outside the dumped tree" "--ext-unix-sk" "ext.sock"
	;;
ext-stream)
	EXTRA=(--ext-unix-sk)
	refused "fd 70" "stream" "cannot be re-established"
	;;
scm-refused)
	refused "fd 73" "SCM_RIGHTS"
	;;
pending-refused)
	refused "fd 74" "not accepted yet"
	;;
ext-dgram)
	c0=$(victim_counter "$V_PID" "$V_ADDR")
	dump "$V_PID" "$TMP/img" --ext-unix-sk
	wait_dead "$V_PID"
	restore "$TMP/img"
	check_running "$V_PID" "$TMP/img.restore.out" "$TMP/img/restore.log" "$V_DIR/victim.log"
	finish "$V_PID" "$V_NONCE" "$c0"
	for ((i = 0; i < 50; i++)); do
		grep -qx ext-check "$TMP/ext.log" 2>/dev/null && break
		sleep 0.1
	done
	grep -qx ext-check "$TMP/ext.log" ||
		die "the outside peer did not get the restored victim's message: $(cat "$TMP/ext.log")"
	;;
esac
log "PASS: $CASE $(basename "$VICTIM") $*"
