#!/bin/bash
# Bad input to dump and restore, one case per meson test:
#
#   errors.sh RELIVE VICTIM CASE [VICTIM ARGS...]
#
# Every case checks that relive exits non-zero, that its message names the
# object (pid, path, image file) and, where a victim is involved, that the
# victim is left exactly as it was: still the same running, untraced process
# after a failed dump (and it still PASSes), no process at all with its pid
# after a failed restore.
#
# no-such-pid, kernel-thread, self: dump of a pid that cannot be dumped.
# readonly-dir, full-fs:  dump into a read-only tmpfs / a 1 MiB tmpfs.
# truncated-image:        each image file cut by one byte, and emptied.
# corrupted-image:        each image's magic, version and first entry length
#                         overwritten; page data flipped (then either restore
#                         fails or the restored victim must report FAIL).
# pid-in-use:             restore while the original still runs.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
driver_init 3 "RELIVE VICTIM CASE [VICTIM ARGS...]" "$@"
shift 3

OUT=$TMP/relive.out

# A failed dump must leave the victim running as before: then it must PASS.
victim_survived() {
	local c0=$1
	check_running "$V_PID"
	[[ $(proc_start "$V_PID") == "$V_START" ]] || die "pid $V_PID was replaced by another process"
	finish "$V_PID" "$V_NONCE" "$c0"
}

mount_tmpfs() {
	local dir=$1 opts=$2
	mkdir -p "$dir"
	mount -t tmpfs -o "$opts" relive-test "$dir" || skip "cannot mount a tmpfs ($opts) on $dir"
	MOUNTS+=("$dir")
}

# Image files a restore must read. stats-*.img only records numbers: skipped.
image_files() {
	local f
	for f in "$1"/*.img; do
		[[ -f $f ]] || continue
		[[ $(basename "$f") == stats-* ]] && continue
		echo "$f"
	done
}

# The bytes are printf escapes (\xNN), on purpose in the format.
# shellcheck disable=SC2059
put_bytes() {
	printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# restore_bad DIR FILE WHAT: the restore from DIR must fail, naming FILE, leaving no process.
restore_bad() {
	local dir=$1 file=$2 what=$3 rc=0
	run_relive "$OUT" restore -D "$dir" -d || rc=$?
	if [[ $rc == 0 ]]; then
		die "restore succeeded with $(basename "$file") $what"
	fi
	expect_failure "$OUT" "$rc" "$(basename "$file")"
	wait_gone "$V_PID" 5 || die "pid $V_PID exists after a failed restore" \
		"($(basename "$file") $what): state $(proc_state "$V_PID")"
}

# A restored victim that ran appended to its log: cut it back to its size at the
# dump, or the next restore rightly refuses a file that changed.
reset_victim_log() {
	truncate -s "$log_size" "$V_DIR/victim.log"
	rm -f "$V_DIR/verdict"
}

# corrupted_pages FILE OFFSET: restore from $TMP/bad fails naming FILE, or the victim FAILs.
corrupted_pages() {
	local rc=0 i v
	reset_victim_log
	run_relive "$OUT" restore -D "$TMP/bad" -d || rc=$?
	if [[ $rc != 0 ]]; then
		expect_failure "$OUT" "$rc" "$1"
		wait_gone "$V_PID" 5 || die "pid $V_PID exists after a failed restore"
		return
	fi
	kill -USR2 "$V_PID" 2>/dev/null || true	# it may have failed and exited already
	for ((i = 0; i < VICTIM_TIMEOUT * 10; i++)); do
		[[ -e $V_DIR/verdict ]] && break
		sleep 0.1
	done
	v=$(cat "$V_DIR/verdict" 2>/dev/null || echo "no verdict")
	[[ $v == FAIL* ]] || die "victim restored with 8 bytes changed at offset $2 of $1:" \
		"'$v', expected FAIL"
	log "victim with 8 bytes changed at offset $2 of $1 reported: $v"
	rm -f "$V_DIR/verdict"
	wait_gone "$V_PID" 15 || die "pid $V_PID did not exit after its verdict"
}

fresh_copy() {
	rm -rf "$TMP/bad"
	cp -a "$TMP/good" "$TMP/bad"
	echo "$TMP/bad/$(basename "$1")"
}

case $CASE in
no-such-pid)
	pid=$(($(cat /proc/sys/kernel/pid_max) - 1))
	while [[ -e /proc/$pid ]]; do pid=$((pid - 1)); done
	rc=0
	run_relive "$OUT" dump -t "$pid" -D "$TMP/img" || rc=$?
	expect_failure "$OUT" "$rc" "$pid"
	;;
kernel-thread)
	pid=2
	if [[ $(cat /proc/2/comm 2>/dev/null) != kthreadd ]]; then
		pid=
		for p in /proc/[0-9]*; do
			flags=$(stat_field "${p#/proc/}" 7) || continue
			((flags & 0x200000)) && { pid=${p#/proc/}; break; }	# PF_KTHREAD
		done
		[[ -n $pid ]] || skip "no kernel thread visible in /proc"
	fi
	rc=0
	run_relive "$OUT" dump -t "$pid" -D "$TMP/img" || rc=$?
	expect_failure "$OUT" "$rc" "$pid"
	[[ $(proc_state "$pid") != [tT] ]] || die "kernel thread $pid was left stopped"
	;;
self)
	# relive asked to dump its own process: sh writes its pid and execs relive.
	rc=0
	# shellcheck disable=SC2016  # $$ is the inner shell's pid, expanded there
	timeout -k 5 "$RELIVE_TIMEOUT" sh -c 'echo $$ >"$2/self.pid"; exec "$0" dump -t $$ -D "$2/img"' \
		"$RELIVE" "$TMP" >"$OUT" 2>&1 || rc=$?
	[[ $rc != 124 && $rc != 137 ]] || die "relive dump of itself hung: $(tail -5 "$OUT")"
	expect_failure "$OUT" "$rc" "$(cat "$TMP/self.pid")"
	;;
readonly-dir | full-fs)
	start_victim "$VICTIM" "$@"
	if [[ $CASE == readonly-dir ]]; then
		mount_tmpfs "$TMP/mnt" ro,size=1m
		errtext="Read-only file system"
	else
		mount_tmpfs "$TMP/mnt" size=1m
		errtext="No space left on device"
	fi
	c0=$(victim_counter "$V_PID" "$V_ADDR")
	rc=0
	run_relive "$OUT" dump -t "$V_PID" -D "$TMP/mnt" || rc=$?
	expect_failure "$OUT" "$rc" "$errtext"
	victim_survived "$c0"
	grep -qE "$TMP/mnt|\.img" "$OUT" || die "the error names neither $TMP/mnt nor an image file:" \
		"$(tail -5 "$OUT")"
	;;
truncated-image | corrupted-image)
	start_victim "$VICTIM" "$@"
	c0=$(victim_counter "$V_PID" "$V_ADDR")
	dump "$V_PID" "$TMP/good"
	wait_dead "$V_PID"
	log_size=$(stat -c %s "$V_DIR/victim.log")
	mapfile -t files < <(image_files "$TMP/good")
	[[ ${#files[@]} -gt 0 ]] || die "the dump in $TMP/good holds no *.img file"
	for f in "${files[@]}"; do
		size=$(stat -c %s "$f")
		if [[ $CASE == truncated-image ]]; then
			b=$(fresh_copy "$f")
			truncate -s $((size - 1)) "$b"
			restore_bad "$TMP/bad" "$b" "cut to $((size - 1)) bytes"
			b=$(fresh_copy "$f")
			: >"$b"
			restore_bad "$TMP/bad" "$b" "emptied"
			continue
		fi
		b=$(fresh_copy "$f")
		put_bytes "$b" 0 'XXXX'
		restore_bad "$TMP/bad" "$b" "with a wrong magic"
		b=$(fresh_copy "$f")
		put_bytes "$b" 4 '\x63\x00\x00\x00'
		restore_bad "$TMP/bad" "$b" "with version 99"
		if [[ $(basename "$f") != pages-* ]] && ((size > 12)); then
			b=$(fresh_copy "$f")
			put_bytes "$b" 8 '\xff\xff\xff\x7f'
			restore_bad "$TMP/bad" "$b" "with a huge entry length"
		fi
	done
	if [[ $CASE == corrupted-image ]]; then
		# Page data carries no checksum: a restore may succeed, but the victim must notice
		# a wrong counter (its register copy disagrees) and a wrong word in its memory.
		for where in "$V_ADDR" --largest; do
			read -r pf off < <(python3 "$(dirname "$0")/pageoff.py" "$TMP/good" "$where") ||
				die "cannot find the page data of $where in $TMP/good"
			b=$(fresh_copy "$TMP/good/$pf")
			put_bytes "$b" "$off" '\x01\x02\x03\x04\x05\x06\x07\x08'
			corrupted_pages "$pf" "$off"
		done
	fi
	# The untouched image still restores, after all those failed attempts.
	reset_victim_log
	restore "$TMP/good"
	check_running "$V_PID"
	finish "$V_PID" "$V_NONCE" "$c0"
	;;
pid-in-use)
	start_victim "$VICTIM" "$@"
	c0=$(victim_counter "$V_PID" "$V_ADDR")
	dump "$V_PID" "$TMP/img" --leave-running
	rc=0
	run_relive "$OUT" restore -D "$TMP/img" -d || rc=$?
	expect_failure "$OUT" "$rc" "$V_PID" "in use"
	victim_survived "$c0"
	;;
*)
	die "unknown case '$CASE'"
	;;
esac
log "PASS: $CASE"
