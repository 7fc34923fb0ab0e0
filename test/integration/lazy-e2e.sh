#!/bin/bash
# Lazy migration end to end, with the three real commands: the source
# `relive dump --lazy-pages` (stays up as the page server), the destination
# daemon `relive lazy-pages`, and `relive restore --lazy-pages -d`:
#
#   lazy-e2e.sh RELIVE VICTIM CASE [VICTIM ARGS...]
#
# The images are copied to a destination directory once the source has
# written them; the daemon and the restore only use that copy. Every case
# checks the exit codes of the three and the victim's own verdict (after the
# daemon exited, i.e. after the stream completed), and that no process of
# the test (victim, keeper, relive) is left.
#
# CASE loop:        on loopback.
# CASE veth:        source in network namespace A, daemon and restore in B,
#                   joined by a veth pair this test creates (10.231.N.0/24,
#                   N from the test's pid, never demo.sh's 0) and removes.
# CASE action:      veth with the link rate-limited (tbf, 100 mbit) so the
#                   stream lasts seconds; SIGUSR1 right after the restore
#                   (lazy-fork forks, lazy-remap moves/drops/unmaps) and the
#                   victim's counts (DIR/lazy-stats) must show that it touched
#                   pages still missing: the lazy phase was really exercised.
# CASE kill-source: veth + tbf; kill -9 of `relive dump` mid-stream: the
#                   daemon (--lazy-timeout 5) exits 1 in time naming the pid
#                   whose pages never arrived, the victim (lazy-touch: it
#                   faults all the time, and is sent SIGUSR2 too) is killed
#                   and never writes a verdict, the keeper is gone.
# CASE kill-daemon: veth + tbf; kill -9 of `relive lazy-pages` mid-stream
#                   while the victim (lazy-touch) faults: its guard (same
#                   descriptor table, so the uffd stays open) kills the victim,
#                   which never writes a verdict (no zero page was ever read),
#                   names it in a "lazy-pages died: killed pid N" line, and
#                   leaves; no relive process is left once the source is
#                   stopped.
# CASE link-flap:   veth + tbf; the destination's veth goes down for 1 s
#                   mid-stream while the victim faults: both sides exit 0 and
#                   the victim PASSes.
# CASE bad-token:   a daemon on a copy of the images whose session token was
#                   altered is refused by the source (both say so) and exits
#                   1; no process runs from those images; the source stays
#                   up, and the real images then migrate and PASS.
# CASE detects:     no relive: a word of the victim's lazy area is damaged
#                   through /proc/PID/mem; the victim must report FAIL.
#
# E2E_TBF_RATE (default 100mbit) sets the rate of the rate-limited cases
# (none: no limit, for experiments).
set -euo pipefail

[[ $# -ge 3 ]] || { echo "usage: $0 RELIVE VICTIM CASE [VICTIM ARGS...]" >&2; exit 2; }
RELIVE=$1
VICTIM=$2
CASE=$3
shift 3
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_root
require_features "${CR_FEATURES[@]}" "userfaultfd" "UFFDIO_API" "UFFDIO_COPY"

# A port nobody listens on (in the namespaces, all are free).
PORT=$((29300 + $$ % 2000))
while [[ -n $(ss -Hltn "sport = :$PORT" 2>/dev/null) ]]; do
	PORT=$((29300 + RANDOM % 2000))
done
TBF_RATE=${E2E_TBF_RATE:-100mbit}
NS_A='' NS_B='' VETH_A='' VETH_B=''
IN_A=()
IN_B=()
SRC_ADDR=127.0.0.1
BG_PIDS=()
SRC_PID='' LP_PID=''

# Every process whose command line names our directory (victims, their
# children, keepers, relive) dies; then the veth and the namespaces go.
e2e_cleanup() {
	local p pid
	set +e
	for pid in "${BG_PIDS[@]}"; do
		kill -9 "$pid" 2>/dev/null
	done
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
		is_ours "$pid" && kill -9 "$pid" 2>/dev/null
	done
	net_down
}
trap 'rc=$?; e2e_cleanup; (exit $rc); cleanup' EXIT

net_down() {
	[[ -n $NS_A ]] || return 0
	ip -n "$NS_A" link del "$VETH_A" 2>/dev/null
	ip netns del "$NS_A" 2>/dev/null
	ip netns del "$NS_B" 2>/dev/null
	return 0
}

# Two namespaces joined by a veth pair; the source listens on A's address.
net_up() {
	local n=$(($$ % 254 + 1))
	NS_A=relive-e2e-a-$$
	NS_B=relive-e2e-b-$$
	VETH_A=rle2ea$$
	VETH_B=rle2eb$$
	ip netns add "$NS_A"
	ip netns add "$NS_B"
	ip link add "$VETH_A" netns "$NS_A" type veth peer name "$VETH_B" netns "$NS_B"
	ip -n "$NS_A" addr add "10.231.$n.1/24" dev "$VETH_A"
	ip -n "$NS_B" addr add "10.231.$n.2/24" dev "$VETH_B"
	for ns in "$NS_A" "$NS_B"; do
		ip -n "$ns" link set lo up
	done
	ip -n "$NS_A" link set "$VETH_A" up
	ip -n "$NS_B" link set "$VETH_B" up
	IN_A=(ip netns exec "$NS_A")
	IN_B=(ip netns exec "$NS_B")
	SRC_ADDR=10.231.$n.1
	log "namespaces $NS_A ($SRC_ADDR, $VETH_A) and $NS_B (10.231.$n.2, $VETH_B)"
}

# The source's egress (the pages) limited to TBF_RATE.
net_slow() {
	[[ $TBF_RATE == none ]] && return 0
	ip netns exec "$NS_A" tc qdisc add dev "$VETH_A" root tbf rate "$TBF_RATE" \
		burst 32kbit latency 50ms
	log "$VETH_A limited to $TBF_RATE"
}

# Nothing of ours is left: no process naming our directory, no namespace, no veth.
check_clean() {
	local p pid left=()
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
		is_ours "$pid" || continue
		[[ $(proc_state "$pid") == [ZX] ]] && continue
		left+=("$pid ($(cat "$p/comm" 2>/dev/null))")
	done
	((${#left[@]} == 0)) || die "processes left after the migration: ${left[*]}"
	if [[ -n $NS_A ]]; then
		net_down
		ip netns list | grep -q -e "$NS_A" -e "$NS_B" && die "namespaces left: $(ip netns list)"
		ip link show "$VETH_A" >/dev/null 2>&1 && die "veth $VETH_A left"
		ip link show "$VETH_B" >/dev/null 2>&1 && die "veth $VETH_B left"
		NS_A=
	fi
	return 0
}

# wait_bg PID SECONDS: the exit status of a background job, 124 if it still runs.
wait_bg() {
	local i rc=0
	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$1" 2>/dev/null && return 124
	wait "$1" || rc=$?
	return "$rc"
}

# read_status FIFO WHAT OUTFILES...: the one status byte of a background relive.
read_status() {
	local fifo=$1 what=$2 n
	shift 2
	n=$(timeout 60 head -c1 "$fifo" | wc -c) || true
	if [[ $n != 1 ]]; then
		show_failure "$@"
		die "no status byte from $what"
	fi
}

keepers() {
	local p
	for p in /proc/[0-9]*; do
		[[ $(cat "$p/comm" 2>/dev/null) == relive-keeper ]] && is_ours "${p#/proc/}" &&
			[[ $(proc_state "${p#/proc/}") != [ZX] ]] && echo "${p#/proc/}"
	done
	return 0
}

# start_source DIR: relive dump --lazy-pages of the victim, in A; returns at its status byte.
start_source() {
	local dir=$1
	mkdir -p "$dir"
	mkfifo "$TMP/src.status"
	log "${IN_A[*]} relive dump -t $V_PID -D $dir --lazy-pages --address $SRC_ADDR --port $PORT"
	"${IN_A[@]}" "$RELIVE" dump -t "$V_PID" -D "$dir" -o dump.log -v4 --lazy-pages \
		--address "$SRC_ADDR" --port "$PORT" --status-fd 3 --lazy-timeout 60 \
		3>"$TMP/src.status" >"$dir.dump.out" 2>&1 &
	SRC_PID=$!
	BG_PIDS+=("$SRC_PID")
	read_status "$TMP/src.status" "relive dump --lazy-pages" "$dir.dump.out" "$dir/dump.log"
	log "source $SRC_PID: images complete, serving on $SRC_ADDR:$PORT"
}

# start_daemon DIR OUT EXTRA...: relive lazy-pages in B; returns once its socket listens.
start_daemon() {
	local dir=$1 out=$2
	shift 2
	rm -f "$TMP/lp.status"
	mkfifo "$TMP/lp.status"
	log "${IN_B[*]} relive lazy-pages --address $SRC_ADDR --port $PORT -D $dir $*"
	"${IN_B[@]}" "$RELIVE" lazy-pages --address "$SRC_ADDR" --port "$PORT" -D "$dir" \
		--status-fd 3 -o lazy-pages.log -v4 "$@" 3>"$TMP/lp.status" >"$out" 2>&1 &
	LP_PID=$!
	BG_PIDS+=("$LP_PID")
	read_status "$TMP/lp.status" "relive lazy-pages" "$out" "$dir/lazy-pages.log"
}

# restore_lazy DIR: relive restore --lazy-pages -d in B; returns its status.
restore_lazy() {
	local dir=$1 rc=0
	log "${IN_B[*]} relive restore -D $dir --lazy-pages -d"
	timeout -k 5 "$RELIVE_TIMEOUT" "${IN_B[@]}" "$RELIVE" restore -D "$dir" --lazy-pages -d \
		-o restore.log -v4 >"$dir.restore.out" 2>&1 || rc=$?
	return "$rc"
}

# Victim started in A; SRC, DST: image directories of the source and the destination.
begin() {
	local prefix=()
	[[ -n $NS_A ]] && prefix=(ip netns exec "$NS_A")
	start_victim "${prefix[@]}" "$VICTIM" "$@"
	sleep 0.3	# let the main loop run before the freeze
	C0=$(victim_counter "$V_PID" "$V_ADDR")
	SRC=$TMP/src
	DST=$TMP/dst
	start_source "$SRC"
	wait_dead "$V_PID"
	mkdir -p "$DST"
	cp -a "$SRC/." "$DST/"
	rm -f "$DST/dump.log"
	# The dumped process's zombie holds the pid until init reaps it.
	wait_gone "$V_PID" 30 || die "pid $V_PID is still held 30 s after the dump"
}

# The daemon on DST and the restore: the victim runs, its memory still on the source.
go() {
	start_daemon "$DST" "$TMP/lp.out" --stats-json "$TMP/lp-stats.json" --lazy-timeout "$1"
	if ! restore_lazy "$DST"; then
		show_failure "$DST.restore.out" "$DST/restore.log" "$TMP/lp.out" \
			"$DST/lazy-pages.log" "$SRC.dump.out"
		die "relive restore --lazy-pages failed"
	fi
	[[ $(proc_start "$V_PID") != "$V_START" ]] || die "pid $V_PID was not recreated"
	if [[ -n $NS_B && $(ip netns identify "$V_PID") != "$NS_B" ]]; then
		die "pid $V_PID runs in network namespace '$(ip netns identify "$V_PID")', not $NS_B"
	fi
	log "pid $V_PID restored; its lazy pages are on their way"
}

# Both sides exit 0, the summary is there, no keeper is left; the victim PASSes.
end_ok() {
	local rc=0
	wait_bg "$LP_PID" 90 || rc=$?
	if [[ $rc != 0 ]]; then
		show_failure "$TMP/lp.out" "$DST/lazy-pages.log" "$SRC.dump.out" "$SRC/dump.log"
		die "relive lazy-pages exited with $rc"
	fi
	wait_bg "$SRC_PID" 30 || rc=$?
	if [[ $rc != 0 ]]; then
		show_failure "$SRC.dump.out" "$SRC/dump.log"
		die "relive dump --lazy-pages exited with $rc after the daemon's DONE"
	fi
	SUMMARY=$(grep -m1 '^lazy-pages: .* pages in' "$TMP/lp.out") ||
		die "no summary line from the daemon: $(tail -3 "$TMP/lp.out")"
	log "$SUMMARY"
	[[ $SUMMARY =~ \(([0-9]+)\ by\ fault,\ ([0-9]+)\ by\ stream ]] ||
		die "cannot read the summary"
	((BASH_REMATCH[1] + BASH_REMATCH[2] > 0)) || die "the daemon brought no page"
	[[ -z $(keepers) ]] || die "keeper(s) $(keepers) still run after the session"
	check_running "$V_PID" "$DST.restore.out" "$V_DIR/victim.log"
	finish "$V_PID" "$V_NONCE" "$C0"
}

# A lazy-* victim's counts; with "require", it must have touched pages that
# were still missing (the rate-limited cases, where the stream lasts seconds).
lazy_stats() {
	[[ $(basename "$VICTIM") == lazy-* ]] || return 0
	stats=$(cat "$V_DIR/lazy-stats") || die "the victim wrote no lazy-stats"
	log "victim: $stats"
	[[ ${1:-} == require ]] || return 0
	if ! [[ $stats =~ touches_missing=([0-9]+) ]] || ((BASH_REMATCH[1] == 0)); then
		die "the victim never touched a missing page: the lazy phase was not exercised"
	fi
}

case $CASE in
loop | veth)
	[[ $CASE == veth ]] && net_up
	begin "$@"
	go 30
	end_ok
	lazy_stats
	;;
action)
	net_up
	net_slow
	begin "$@"
	go 30
	kill -USR1 "$V_PID"
	log "SIGUSR1 sent to pid $V_PID"
	end_ok
	lazy_stats require
	if [[ $(basename "$VICTIM") != lazy-touch ]]; then
		if ! [[ $stats =~ action_missing=([0-9]+) ]] || ((BASH_REMATCH[1] == 0)); then
			die "nothing was missing at the victim's action: too late to test it"
		fi
	fi
	if [[ $(basename "$VICTIM") == lazy-fork ]]; then
		cv=$(cat "$V_DIR/child-verdict" 2>/dev/null) || die "the child wrote no verdict"
		log "child: $cv"
		[[ $cv == PASS* ]] || die "the child of pid $V_PID: $cv"
		grep -q "pid $V_PID forked" "$DST/lazy-pages.log" ||
			die "the daemon did not see the fork"
	fi
	;;
kill-source)
	net_up
	net_slow
	begin "$@"
	go 5
	sleep 1
	kill -0 "$LP_PID" 2>/dev/null || die "the stream ended before the source could be killed"
	kill -9 "$SRC_PID"
	t0=$SECONDS
	{ wait "$SRC_PID"; } 2>/dev/null || true
	log "killed the source $SRC_PID mid-stream"
	# Were it let run on zero pages, it would now write a verdict.
	kill -USR2 "$V_PID" 2>/dev/null || true
	rc=0
	wait_bg "$LP_PID" 30 || rc=$?
	[[ $rc != 124 ]] || die "the daemon still runs 30 s after the source died"
	((SECONDS - t0 <= 12)) || die "the daemon took $((SECONDS - t0)) s to give up (bound 5 s)"
	expect_failure "$TMP/lp.out" "$rc" "$V_PID" "never arrived" "killed"
	log "daemon gave up after $((SECONDS - t0)) s: $(grep -m1 -w "$V_PID" "$TMP/lp.out")"
	wait_gone "$V_PID" 10 || [[ $(proc_state "$V_PID") == [ZX] ]] ||
		die "pid $V_PID still runs after the daemon gave up"
	sleep 0.5
	[[ ! -e $V_DIR/verdict ]] || die "the victim ran without its memory: $(cat "$V_DIR/verdict")"
	[[ -z $(keepers) ]] || die "keeper(s) $(keepers) outlived the source"
	;;
kill-daemon)
	net_up
	net_slow
	begin "$@"
	go 30
	sleep 1
	kill -0 "$LP_PID" 2>/dev/null || die "the stream ended before the daemon could be killed"
	grep -q "guard [0-9]* holds" "$DST/lazy-pages.log" || die "the daemon started no guard"
	kill -9 "$LP_PID"
	{ wait "$LP_PID"; } 2>/dev/null || true
	log "killed the daemon $LP_PID mid-stream"
	# Were it let run on zero pages, it would now write a verdict (or crash).
	kill -USR2 "$V_PID" 2>/dev/null || true
	wait_gone "$V_PID" 10 || [[ $(proc_state "$V_PID") == [ZX] ]] ||
		die "pid $V_PID still runs after its daemon died"
	line=$(grep -m1 "lazy-pages died: killed pid $V_PID (" "$TMP/lp.out") ||
		die "no line names pid $V_PID: $(tail -5 "$TMP/lp.out")"
	log "guard: ${line#*: }"
	[[ $line =~ \ ([0-9]+)\ pages\ never\ arrived ]] && ((BASH_REMATCH[1] > 0)) ||
		die "the line does not count the missing pages: $line"
	sleep 0.5
	[[ ! -e $V_DIR/verdict ]] || die "the victim ran without its memory: $(cat "$V_DIR/verdict")"
	for ((i = 0; i < 50; i++)); do
		guards=()
		for g in $(pgrep -x relive-lpguard); do
			is_ours "$g" && [[ $(proc_state "$g") != [ZX] ]] && guards+=("$g")
		done
		((${#guards[@]} == 0)) && break
		sleep 0.1
	done
	((${#guards[@]} == 0)) || die "the guard ${guards[*]} outlived the victim"
	# The source waits for a daemon that will not come back: stop it.
	kill -9 "$SRC_PID"
	{ wait "$SRC_PID"; } 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		[[ -z $(keepers) ]] && break
		sleep 0.1
	done
	;;
link-flap)
	net_up
	net_slow
	begin "$@"
	go 30
	sleep 0.5
	kill -0 "$LP_PID" 2>/dev/null || die "the stream ended before the link went down"
	ip -n "$NS_B" link set "$VETH_B" down
	log "$VETH_B down"
	sleep 1
	ip -n "$NS_B" link set "$VETH_B" up
	log "$VETH_B up"
	kill -0 "$LP_PID" 2>/dev/null || die "the daemon ended while the link was down"
	end_ok
	lazy_stats require
	;;
bad-token)
	begin "$@"
	BAD=$TMP/bad
	cp -a "$DST/." "$BAD/"
	python3 - "$BAD/inventory.img" "$("$RELIVE" show "$DST/inventory.img")" <<-'EOF'
		import json, sys
		path, shown = sys.argv[1], json.loads(sys.argv[2])
		tok = bytes.fromhex(shown["entries"][0]["session_token"])
		data = open(path, "rb").read()
		assert data.count(tok) == 1, "token not found once in inventory.img"
		bad = bytes([tok[0] ^ 0xff]) + tok[1:]
		open(path, "wb").write(data.replace(tok, bad))
	EOF
	[[ $("$RELIVE" show "$BAD/inventory.img") != $("$RELIVE" show "$DST/inventory.img") ]] ||
		die "the token was not altered"
	start_daemon "$BAD" "$TMP/bad.out" --lazy-timeout 10
	rc=0
	restore_lazy "$BAD" || rc=$?
	log "restore from the altered images exited with $rc: $(tail -1 "$BAD.restore.out")"
	rc=0
	wait_bg "$LP_PID" 30 || rc=$?
	[[ $rc != 124 ]] || die "the daemon with the wrong token still runs after 30 s"
	expect_failure "$TMP/bad.out" "$rc" "wrong session token"
	grep -q "wrong session token" "$SRC/dump.log" || die "the source did not log the wrong token"
	wait_gone "$V_PID" 10 || [[ $(proc_state "$V_PID") == [ZX] ]] ||
		die "pid $V_PID runs on although its daemon was refused"
	[[ ! -e $V_DIR/verdict ]] || die "the victim ran without its memory: $(cat "$V_DIR/verdict")"
	wait_gone "$V_PID" 30 || die "pid $V_PID is still held 30 s after it was killed"
	kill -0 "$SRC_PID" 2>/dev/null || die "the source exited after refusing a client"
	log "refused; the source still serves"
	go 30
	end_ok
	;;
detects)
	start_victim "$VICTIM" "$@"
	read -r _ _ lazy_addr < <(grep -m1 '^lazy: ' "$V_DIR/victim.log" | sed 's/ pages at / /')
	[[ -n $lazy_addr ]] || die "no lazy area in $(cat "$V_DIR/victim.log")"
	off=$((lazy_addr + 4096 * 100 + 8 * 17))
	printf 'XXXXXXXX' | dd of="/proc/$V_PID/mem" bs=1 seek="$off" conv=notrunc status=none
	log "damaged the word at $(printf %#x "$off") of pid $V_PID"
	kill -USR1 "$V_PID"
	kill -USR2 "$V_PID"
	for ((i = 0; i < 100; i++)); do
		[[ -e $V_DIR/verdict ]] && break
		sleep 0.1
	done
	v=$(cat "$V_DIR/verdict" 2>/dev/null) || die "pid $V_PID gave no verdict"
	[[ $v == FAIL* ]] || die "the victim did not notice the damage: $v"
	log "the victim noticed: $v"
	;;
*)
	die "unknown case '$CASE'"
	;;
esac
check_clean
log "PASS: lazy $CASE $(basename "$VICTIM") $*"
