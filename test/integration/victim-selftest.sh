#!/bin/bash
# The victims' own checks must be able to fail, or every PASS above means
# nothing. Without relive, this damages a running victim the way a broken
# restore would, and requires a FAIL naming the damage:
#
#   victim-selftest.sh RELIVE VICTIM CASE [VICTIM ARGS...]
#
# CASE untouched: no damage, PASS (the baseline).
# CASE memory:    8 bytes changed in the largest anonymous private mapping.
# CASE counter:   the in-memory counter changed behind its register copy.
# CASE registers: r13, ymm9, zmm20 and k3 changed through ptrace (regpoke, next
#                 to the victim; zmm and k only on AVX-512 machines).
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
driver_init 3 "RELIVE VICTIM CASE [VICTIM ARGS...]" "$@"
shift 3

poke() {
	printf '\x01\x02\x03\x04\x05\x06\x07\x08' |
		dd of="/proc/$1/mem" bs=8 seek=$(($2)) oflag=seek_bytes conv=notrunc status=none
}

verdict_after_trigger() {
	local i
	kill -USR2 "$V_PID" 2>/dev/null || true
	for ((i = 0; i < VICTIM_TIMEOUT * 10; i++)); do
		[[ -e $V_DIR/verdict ]] && break
		sleep 0.1
	done
	cat "$V_DIR/verdict" 2>/dev/null || echo "no verdict"
}

# expect_fail PATTERN: trigger the check and require a FAIL matching PATTERN.
expect_fail() {
	local v
	v=$(verdict_after_trigger)
	[[ $v == FAIL* && $v =~ $1 ]] || die "damaged victim reported '$v', expected FAIL: ~ $1"
	log "damaged victim reported: $v"
}

REGPOKE=$(dirname "$VICTIM")/regpoke
if [[ $CASE != registers ]]; then
	start_victim "$VICTIM" "$@"
	sleep 0.3
fi
case $CASE in
untouched)
	finish "$V_PID" "$V_NONCE" 0
	;;
memory)
	lo=0 hi=0
	while read -r range perms _ _ _ path; do
		[[ $perms == rw-p && -z $path ]] || continue
		s=$((16#${range%-*})) e=$((16#${range#*-}))
		((e - s > hi - lo)) && { lo=$s; hi=$e; }
	done <"/proc/$V_PID/maps"
	((hi > lo)) || die "no anonymous private mapping in pid $V_PID"
	poke "$V_PID" $(((lo + (hi - lo) / 2) / 8 * 8))
	expect_fail "wrong word"
	;;
counter)
	# The victim's own store can land right after ours and hide it (the asm loop
	# of victim-all stores its counter all the time): a miss PASSes; three in a
	# row do not.
	for try in 1 2 3; do
		((try == 1)) || { start_victim "$VICTIM" "$@"; sleep 0.3; }
		poke "$V_PID" "$V_ADDR"
		v=$(verdict_after_trigger)
		[[ $v == PASS* ]] || break
		log "try $try: the change of the counter was overwritten before the check: $v"
	done
	[[ $v == FAIL* && $v =~ counter ]] || die "damaged victim reported '$v', expected FAIL: ~ counter"
	log "damaged victim reported: $v"
	;;
registers)
	regs=(r13 ymm9)
	grep -qw avx512bw /proc/cpuinfo && regs+=(zmm20 k3)
	for reg in "${regs[@]}"; do
		# A stop that lands in the SIGALRM handler (victim-all) changes the handler's
		# copy, which sigreturn then discards: such a miss PASSes; three in a row do not.
		for try in 1 2 3; do
			start_victim "$VICTIM" "$@"
			sleep 0.3
			"$REGPOKE" "$V_PID" "$reg" || die "regpoke could not change $reg in pid $V_PID"
			v=$(verdict_after_trigger)
			[[ $v == PASS* ]] || break
			log "try $try: the change of $reg was not seen (stopped in a handler?): $v"
		done
		[[ $v == FAIL*"register ${reg//[a-z]/} lost"* ]] ||
			die "damaged victim reported '$v', expected FAIL: register ${reg//[a-z]/} lost"
		log "damaged victim reported: $v"
	done
	;;
*)
	die "unknown case '$CASE'"
	;;
esac
log "PASS: $CASE"
