#!/bin/bash
# Descriptors the dump must refuse (test/victims/part-unsup.c):
#
#   fdkinds.sh RELIVE VICTIM refused FD WORD [VICTIM ARGS...]
#
# relive dump fails, naming fd FD and WORD (its kind); no inventory.img is
# written; the victim runs on untouched (not stopped, not traced, the same
# process) and its own check PASSes with its counter going on.
#
#   fdkinds.sh RELIVE VICTIM detects [VICTIM ARGS...]
#
# No relive: one byte in flight in the victim's FIFO (test/victims/part-pipes.c)
# is consumed from outside; the victim's check must FAIL naming the FIFO, or
# its PASS after a restore would mean nothing.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
driver_init 3 "RELIVE VICTIM CASE [ARGS...]" "$@"
shift 3

if [[ $CASE == detects ]]; then
	start_victim "$VICTIM" "$@"
	n=$(timeout 10 dd if="$V_DIR/fifo" iflag=nonblock bs=1 count=1 status=none | wc -c)
	[[ $n == 1 ]] || die "could not take a byte from $V_DIR/fifo"
	kill -USR2 "$V_PID"
	for ((i = 0; i < VICTIM_TIMEOUT * 10; i++)); do
		[[ -e $V_DIR/verdict ]] && break
		sleep 0.1
	done
	v=$(cat "$V_DIR/verdict" 2>/dev/null) || die "pid $V_PID gave no verdict"
	[[ $v == *FAIL*FIFO* ]] || die "the victim did not notice the lost FIFO byte: $v"
	log "PASS: the victim noticed: $v"
	exit 0
fi
[[ $CASE == refused ]] || die "unknown case '$CASE'"
[[ $# -ge 2 ]] || die "refused needs FD WORD"
FD=$1
WORD=$2
shift 2
start_victim "$VICTIM" "$@"
sleep 0.3
c0=$(victim_counter "$V_PID" "$V_ADDR")
mkdir -p "$TMP/img"
rc=0
run_relive "$TMP/dump.out" dump -t "$V_PID" -D "$TMP/img" -v4 || rc=$?
expect_failure "$TMP/dump.out" "$rc" "fd $FD" "$WORD" "$V_PID"
[[ ! -e $TMP/img/inventory.img ]] || die "a refused dump wrote inventory.img"
check_running "$V_PID" "$TMP/dump.out" "$V_DIR/victim.log"
[[ $(proc_start "$V_PID") == "$V_START" ]] || die "pid $V_PID is not the original process"
c1=$(victim_counter "$V_PID" "$V_ADDR")
sleep 0.3
c2=$(victim_counter "$V_PID" "$V_ADDR")
((c2 > c1)) || die "pid $V_PID stopped counting after the refused dump ($c1 -> $c2)"
finish "$V_PID" "$V_NONCE" "$c0"
log "PASS: $CASE fd $FD ($WORD) $(basename "$VICTIM")"
