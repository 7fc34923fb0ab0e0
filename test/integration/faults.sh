#!/bin/bash
# Faults injected on purpose (RELIVE_FAULT, common/fault.h) at each step of
# a dump or a restore, one site per meson test:
#
#   faults.sh RELIVE VICTIM dump|restore SITE [VICTIM ARGS...]
#
# dump SITE:    relive dump fails at SITE (exit 1, "fault injected at SITE",
#               "keeps running"); the victim is the same process, running,
#               untraced, with the same maps, descriptors and signal state
#               as before the dump (the parasite is gone), it keeps
#               counting, and it PASSes its own check (memory intact).
# restore SITE: relive restore of good images fails at SITE (exit 1, naming
#               the site); no process with any pid of pstree.img is left,
#               no relive process either; the image directory is unchanged
#               (names, modes, sizes, mtimes, SHA-256); then the same images
#               restore without the fault and the tree PASSes.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
driver_init 4 "RELIVE VICTIM dump|restore SITE [ARGS...]" "$@"
WHAT=$3
SITE=$4
shift 4

OUT=$TMP/relive.out

# What a dump must not change: mappings, descriptors, signal dispositions and masks
# (not the pending set: the victim's interval timer fires on its own).
snapshot() {
	cat "/proc/$1/maps"
	local fd
	for fd in "/proc/$1/fd"/*; do
		echo "${fd##*/} -> $(readlink "$fd")"
	done
	grep -E '^(State|SigBlk|SigIgn|SigCgt|Threads|TracerPid):' "/proc/$1/status"
}

# Every file of the directory: name, mode, size, mtime, SHA-256.
dir_sum() {
	(cd "$1" && find . -type f -printf '%p %m %s %T@\n' | sort &&
		find . -type f -print0 | sort -z | xargs -0 sha256sum)
}

case $WHAT in
dump)
	start_victim "$VICTIM" "$@"
	sleep 0.3
	before=$(snapshot "$V_PID")
	c0=$(victim_counter "$V_PID" "$V_ADDR")
	rc=0
	RELIVE_FAULT=$SITE run_relive "$OUT" dump -t "$V_PID" -D "$TMP/img" -v4 -o dump.log || rc=$?
	expect_failure "$OUT" "$rc" "fault injected at $SITE" "pid $V_PID" "keeps running"
	check_running "$V_PID" "$OUT" "$TMP/img/dump.log"
	[[ $(proc_start "$V_PID") == "$V_START" ]] || die "pid $V_PID was replaced by another process"
	after=$(snapshot "$V_PID")
	if [[ $before != "$after" ]]; then
		diff <(echo "$before") <(echo "$after") >&2 || true
		die "pid $V_PID changed under a failed dump (above: before, after)"
	fi
	c1=$(victim_counter "$V_PID" "$V_ADDR")
	sleep 0.3
	c2=$(victim_counter "$V_PID" "$V_ADDR")
	((c2 > c1)) || die "pid $V_PID stopped counting after the failed dump ($c1 -> $c2)"
	[[ ! -e $TMP/img/inventory.img ]] || die "a failed dump left inventory.img behind"
	log "dump failed at $SITE as asked; pid $V_PID runs on, unchanged"
	finish "$V_PID" "$V_NONCE" "$c0"
	;;
restore)
	start_victim "$VICTIM" "$@"
	sleep 0.3
	c0=$(victim_counter "$V_PID" "$V_ADDR")
	dump "$V_PID" "$TMP/img"
	wait_dead "$V_PID"
	read -r -a pids <<<"$(tree_pids "$TMP/img")"
	((${#pids[@]} > 0)) || die "no pid in $TMP/img/pstree.img"
	for p in "${pids[@]}"; do
		wait_gone "$p" 30 || die "pid $p is still held 30 s after the dump"
	done
	sum0=$(dir_sum "$TMP/img")
	rc=0
	RELIVE_FAULT=$SITE run_relive "$OUT" restore -D "$TMP/img" -d -v4 || rc=$?
	expect_failure "$OUT" "$rc" "fault injected at $SITE"
	for p in "${pids[@]}"; do
		wait_gone "$p" 10 || die "pid $p ($(cat "/proc/$p/comm" 2>/dev/null)) is left after" \
			"the restore failed at $SITE: state $(proc_state "$p")"
	done
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[[ $(cat "/proc/$p/comm" 2>/dev/null) == relive ]] && is_ours "$p" &&
			[[ $(proc_state "$p") != [ZX] ]] && die "relive process $p is left"
	done
	sum1=$(dir_sum "$TMP/img")
	if [[ $sum0 != "$sum1" ]]; then
		diff <(echo "$sum0") <(echo "$sum1") >&2 || true
		die "the failed restore changed the image directory (above)"
	fi
	log "restore failed at $SITE as asked: none of pids ${pids[*]} is left, $TMP/img unchanged"
	restore "$TMP/img"
	check_running "$V_PID" "$TMP/img.restore.out" "$TMP/img/restore.log"
	finish "$V_PID" "$V_NONCE" "$c0"
	;;
*)
	die "unknown '$WHAT'"
	;;
esac
log "PASS: $WHAT fault at $SITE"
