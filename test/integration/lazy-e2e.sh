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
# CASE kill-daemon: veth + tbf; kill -9 of `relive lazy-pages` (--lazy-timeout
#                   5) mid-stream while the victim (lazy-touch) faults: its
#                   guard (same descriptor table, so the uffd stays open)
#                   keeps the victim waiting on its faults for a successor
#                   (it is alive 2 s later, with no verdict), then, none
#                   having come within 5 s, kills it, names it in a "killed
#                   pid N" line, and leaves; the victim never wrote a verdict
#                   (no zero page was ever read); no relive process is left
#                   once the source is stopped.
# CASE takeover:    veth + tbf; kill -9 of `relive lazy-pages` mid-stream while
#                   the victim (lazy-touch) faults, then the same command is
#                   started again: it takes the uffd over from the dead
#                   daemon's guard, re-learns which pages are in, goes on
#                   with a new session on the source; the same once more
#                   (the successor killed in turn); the third daemon
#                   completes the stream, both sides exit 0; the victim PASSes.
# CASE takeover-pidns: takeover, the restore being `restore --pidns`: the
#                   victim runs under another host pid than its image pid
#                   (which is its pid inside the new namespace), and each
#                   successor must re-learn its pages through the host pid.
# CASE hostile:    veth + tbf; while the victim (lazy-touch) migrates, hostile
#                   peers hit the source all at once (E2E_PS_CLIENT: a wrong
#                   token, garbage, a run longer than the protocol allows, a
#                   run outside the lazy memory, a silent peer): each is cut
#                   off within 10 s (the silent one within 4 s, the source's
#                   idle limit being 2 s) with its reason in the source's
#                   log; the daemon's handover socket refuses a peer of
#                   another uid (EACCES; and with its permissions opened on
#                   purpose, by SO_PEERCRED, logged) and, by name, a root
#                   peer sending garbage; the daemon runs on, both sides exit 0 and the
#                   victim PASSes.
# CASE restore-fault: a fault injected in the restore right after the helper
#                   handed its uffd to the daemon (RELIVE_FAULT=
#                   restore-lazy-handover): the restore fails naming it, no
#                   process has the pid, the image files are unchanged, the
#                   daemon exits 1 without telling the source DONE, the source
#                   keeps serving; a new daemon and restore then PASS.
# CASE link-flap:   veth + tbf; the destination's veth goes down for 1 s
#                   mid-stream while the victim faults: both sides exit 0 and
#                   the victim PASSes.
# CASE bad-token:   a daemon on a copy of the images whose session token was
#                   altered is refused by the source (both say so) and exits
#                   1; no process runs from those images; the source stays
#                   up, and the real images then migrate and PASS.
# CASE redis:       VICTIM is redis-server (args: number of keys of ~2 KiB, default
#                   500 000: ~1.2 GiB) loaded in A; GET throughput
#                   by redis-benchmark; lazily migrated to B, where clients
#                   reconnect to the same address (127.0.0.1) while the pages
#                   stream in; afterwards DBSIZE and DEBUG DIGEST are the same
#                   and every key reads back its own value (a Lua check).
# CASE detects:     no relive: a word of the victim's lazy area is damaged
#                   through /proc/PID/mem; the victim must report FAIL.
#
# E2E_DUMP_ARGS: more arguments of the dump, split on spaces (inet.sh:
# --tcp-established).
# E2E_TBF_RATE (default 100mbit) sets the rate of the rate-limited cases
# (none: no limit, for experiments).
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
driver_init 3 "RELIVE VICTIM CASE [VICTIM ARGS...]" "$@"
shift 3
require_features "userfaultfd" "UFFDIO_API" "UFFDIO_COPY"

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
RESTORE_ARGS=()

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
	# shellcheck disable=SC2086 # E2E_DUMP_ARGS is split on purpose
	"${IN_A[@]}" "$RELIVE" dump -t "$V_PID" -D "$dir" -o dump.log -v4 --lazy-pages \
		--address "$SRC_ADDR" --port "$PORT" --status-fd 3 --lazy-timeout 60 \
		${E2E_DUMP_ARGS:-} 3>"$TMP/src.status" >"$dir.dump.out" 2>&1 &
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
		"${RESTORE_ARGS[@]}" -o restore.log -v4 >"$dir.restore.out" 2>&1 || rc=$?
	return "$rc"
}

# Victim started in A; SRC, DST: image directories of the source and the destination.
begin() {
	local prefix=()
	[[ -n $NS_A ]] && prefix=(ip netns exec "$NS_A")
	start_victim "${prefix[@]}" "$VICTIM" "$@"
	sleep 0.3	# let the main loop run before the freeze
	C0=$(victim_counter "$V_PID" "$V_ADDR")
	dump_source
}

# The source dumps V_PID into SRC and serves; the images are copied to DST.
dump_source() {
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

# The daemon on DST and the restore: the victim runs, its memory still on the
# source, as host pid R_PID (V_PID but with --pidns in RESTORE_ARGS).
go() {
	local nspid
	start_daemon "$DST" "$TMP/lp.out" --stats-json "$TMP/lp-stats.json" --lazy-timeout "$1"
	if ! restore_lazy "$DST"; then
		show_failure "$DST.restore.out" "$DST/restore.log" "$TMP/lp.out" \
			"$DST/lazy-pages.log" "$SRC.dump.out"
		die "relive restore --lazy-pages failed"
	fi
	R_PID=$V_PID
	if [[ " ${RESTORE_ARGS[*]} " == *" --pidns "* ]]; then
		R_PID=$(tail -1 "$DST.restore.out")
		[[ $R_PID =~ ^[0-9]+$ ]] || die "restore --pidns printed '$R_PID', not a pid"
		# Were they equal, /proc/<image pid> would be right by chance.
		[[ $R_PID != "$V_PID" ]] || die "the restored root has its image pid $V_PID on the host"
		read -ra nspid <<<"$(awk '$1 == "NSpid:" { $1 = ""; print }' "/proc/$R_PID/status")"
		[[ ${nspid[-1]} == "$V_PID" && ${#nspid[@]} -ge 2 ]] ||
			die "pid $R_PID is pid ${nspid[-1]} of its namespace, not $V_PID of a new one"
	else
		[[ $(proc_start "$V_PID") != "$V_START" ]] || die "pid $V_PID was not recreated"
	fi
	if [[ -n $NS_B && $(ip netns identify "$R_PID") != "$NS_B" ]]; then
		die "pid $R_PID runs in network namespace '$(ip netns identify "$R_PID")', not $NS_B"
	fi
	log "pid $V_PID restored (host pid $R_PID); its lazy pages are on their way"
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
	check_stats_json "$TMP/lp-stats.json" "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
	[[ -z $(keepers) ]] || die "keeper(s) $(keepers) still run after the session"
	# Under --pidns its parent is the namespace's init, not one of ours.
	[[ $R_PID != "$V_PID" ]] ||
		check_running "$V_PID" "$DST.restore.out" "$V_DIR/victim.log"
	finish "$R_PID" "$V_NONCE" "$C0"
}

# kill_midstream PID WHAT: kill -9 PID one second into the stream, which must still run.
kill_midstream() {
	sleep 1
	kill -0 "$LP_PID" 2>/dev/null || die "the stream ended before the $2 could be killed"
	kill -9 "$1"
	{ wait "$1"; } 2>/dev/null || true
	log "killed the $2 $1 mid-stream"
}

# The daemon's --stats-json FILE says what its summary line said (pages by
# fault and by stream), and its own figures are consistent: every page
# counted once, percentiles in order, the slow faults among the fetched ones.
check_stats_json() {
	python3 - "$@" <<-'PY' || die "bad --stats-json: $(cat "$1" 2>&1)"
	import json, sys
	s = json.load(open(sys.argv[1]))
	by_fault, by_stream = int(sys.argv[2]), int(sys.argv[3])
	lat = s["fault_latency_us"]
	order = [lat[k] for k in ("p50", "p90", "p99", "p999", "max")]
	checks = {
	    "pages by fault as in the summary": s["pages_fault"] == by_fault,
	    "pages by stream as in the summary": s["pages_stream"] == by_stream,
	    "pages = fault + stream": s["pages"] == s["pages_fault"] + s["pages_stream"],
	    "bytes hold the pages": s["bytes"] >= 4096 * s["pages"],
	    "percentiles in order": order == sorted(order),
	    "slow faults among the fetched": s["faults_over_1ms"] <= s["faults_fetched"],
	    "fetched faults among those read": s["faults_fetched"] <= s["faults"],
	    "slowest fault within the run": 0 <= s["slowest_fault_at_s"] <= s["seconds"] + 1,
	}
	bad = [k for k, ok in checks.items() if not ok]
	if bad:
	    sys.exit("--stats-json: " + "; ".join(bad))
	PY
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

# redis (CASE redis): every value is derived from its key, so each key can be
# checked on its own; values are ~2 KiB, 500 000 keys make ~1.2 GiB.
REDIS_LOAD="for i=0,ARGV[1]-1 do redis.call('SET', string.format('key:%012d', i),
	string.rep(string.format('v%011d', i), 170)) end return redis.call('DBSIZE')"
REDIS_CHECK="local bad=0 for i=0,ARGV[1]-1 do
	if redis.call('GET', string.format('key:%012d', i)) ~=
	   string.rep(string.format('v%011d', i), 170) then bad=bad+1 end end return bad"
redis_in() {
	local ns=$1
	shift
	ip netns exec "$ns" timeout 120 redis-cli -p "$RPORT" "$@"
}
# redis_get_rps NS SECONDS: GETs of random existing keys per second, measured
# by redis-benchmark runs of 50 000 requests for SECONDS.
redis_get_rps() {
	local ns=$1 secs=$2 t0 t1 n=0
	t0=$(date +%s%N)
	t1=$((t0 + secs * 1000000000))
	while (($(date +%s%N) < t1)); do
		ip netns exec "$ns" timeout 60 redis-benchmark -p "$RPORT" -n 50000 -c 20 \
			-r "$KEYS" --csv GET 'key:__rand_int__' >/dev/null ||
			die "redis-benchmark failed in $ns"
		n=$((n + 50000))
	done
	echo $((n * 1000000000 / ($(date +%s%N) - t0)))
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
	kill_midstream "$SRC_PID" source
	t0=$SECONDS
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
	go 5
	grep -q "guard [0-9]* holds" "$DST/lazy-pages.log" || die "the daemon started no guard"
	kill_midstream "$LP_PID" daemon
	# Were it let run on zero pages, it would now write a verdict (or crash).
	kill -USR2 "$V_PID" 2>/dev/null || true
	sleep 2
	[[ $(proc_state "$V_PID") != [ZX] ]] ||
		die "pid $V_PID was killed at once; no successor could have taken over"
	grep -q "wait up to 5 s for a new" "$TMP/lp.out" ||
		die "the guard does not wait for a successor: $(tail -3 "$TMP/lp.out")"
	[[ ! -e $V_DIR/verdict ]] || die "the victim ran without its memory: $(cat "$V_DIR/verdict")"
	wait_gone "$V_PID" 15 || [[ $(proc_state "$V_PID") == [ZX] ]] ||
		die "pid $V_PID still runs 15 s after its daemon died"
	line=$(grep -m1 "no successor took over: killed pid $V_PID (" "$TMP/lp.out") ||
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
takeover | takeover-pidns)
	[[ $CASE == takeover-pidns ]] && RESTORE_ARGS=(--pidns)
	net_up
	net_slow
	begin "$@"
	go 30
	# Twice: the successor's own guard must hand over again.
	for round in 1 2; do
		kill_midstream "$LP_PID" daemon
		sleep 1
		[[ $(proc_state "$R_PID") != [ZX] ]] || die "pid $R_PID died with its daemon"
		[[ ! -e $V_DIR/verdict ]] ||
			die "the victim ran without its memory: $(cat "$V_DIR/verdict")"
		mv "$TMP/lp.out" "$TMP/lp-dead$round.out"
		mv "$DST/lazy-pages.log" "$DST/lazy-pages-dead$round.log"
		start_daemon "$DST" "$TMP/lp.out" --stats-json "$TMP/lp-stats.json" --lazy-timeout 30
		grep -q "took over 1 process" "$DST/lazy-pages.log" || {
			show_failure "$TMP/lp.out" "$DST/lazy-pages.log" "$TMP/lp-dead$round.out"
			die "the new daemon did not take over (round $round)"
		}
		line=$(grep -m1 "pid $R_PID .* taken over by lazy-pages pid" "$TMP/lp-dead$round.out") ||
			die "the guard did not hand pid $R_PID over: $(tail -3 "$TMP/lp-dead$round.out")"
		log "guard: ${line#*: }"
		log "$(grep -m1 "takeover: pid $V_PID:" "$DST/lazy-pages.log")"
	done
	end_ok
	lazy_stats require
	;;
hostile)
	[[ -x ${E2E_PS_CLIENT:-} ]] || die "E2E_PS_CLIENT does not name the ps-client program"
	export RELIVE_PS_IDLE_TIMEOUT_MS=2000
	net_up
	net_slow
	begin "$@"
	go 30
	kill -0 "$LP_PID" 2>/dev/null || die "the stream ended before the hostile peers came"
	t0=$SECONDS
	hp=()
	for m in badtoken garbage hugerun outofrange "silent 4000"; do
		# shellcheck disable=SC2086  # "silent 4000" is the mode and its bound
		timeout 10 "${IN_B[@]}" "$E2E_PS_CLIENT" "$DST" "$SRC_ADDR" "$PORT" $m \
			>"$TMP/peer-${m% *}.out" 2>&1 &
		hp+=($!)
	done
	i=0
	for m in badtoken garbage hugerun outofrange silent; do
		rc=0
		wait "${hp[i]}" || rc=$?
		i=$((i + 1))
		[[ $rc == 0 ]] || die "hostile peer '$m' (rc $rc): $(cat "$TMP/peer-$m.out")"
		log "peer $m: $(tail -1 "$TMP/peer-$m.out")"
	done
	log "every hostile peer was cut off within $((SECONDS - t0)) s"
	for why in "wrong session token" "refused (Protocol error)" "malformed request" \
		"is outside the lazy runs" "no valid hello within"; do
		grep -q "$why" "$SRC/dump.log" || die "the source's log does not say '$why'"
	done
	# The daemon's handover socket: another uid cannot connect (0600); with the
	# permissions opened on purpose, the daemon still refuses it (SO_PEERCRED).
	nobody=(setpriv --reuid 65534 --regid 65534 --clear-groups /usr/bin/python3 -c
		'import socket,sys
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])
try:
    s.sendall(b"x" * 16); sys.exit(0 if s.recv(1) == b"" else 3)
except (BrokenPipeError, ConnectionResetError):
    sys.exit(0)')
	if "${nobody[@]}" "$DST/lazy-pages.sock" 2>"$TMP/nobody.out"; then
		die "uid 65534 connected to the daemon's handover socket"
	fi
	grep -q PermissionError "$TMP/nobody.out" || die "uid 65534: $(tail -1 "$TMP/nobody.out")"
	chmod o+x "$TMP" "$DST"
	chmod 0666 "$DST/lazy-pages.sock"
	rc=0
	"${nobody[@]}" "$DST/lazy-pages.sock" 2>"$TMP/nobody.out" || rc=$?
	chmod o-x "$TMP" "$DST"
	chmod 0600 "$DST/lazy-pages.sock"
	[[ $rc == 0 ]] || die "uid 65534 was not cut off by the daemon (rc $rc): $(tail -1 "$TMP/nobody.out")"
	grep -q "handover: refused a connection from pid [0-9]* uid 65534" "$TMP/lp.out" \
		"$DST/lazy-pages.log" || die "the daemon's log does not name the refused uid 65534"
	# ... and a root peer sending garbage is refused by name.
	python3 - "$DST/lazy-pages.sock" <<-'PY' || die "the daemon did not close a garbage handover"
		import socket, sys
		s = socket.socket(socket.AF_UNIX)
		s.settimeout(5)
		s.connect(sys.argv[1])
		s.sendall(b"\xa5" * 16)
		sys.exit(0 if s.recv(1) == b"" else 1)
	PY
	grep -q "handover from pid [0-9]*: bad magic" "$DST/lazy-pages.log" ||
		die "the daemon's log does not name the garbage handover"
	kill -0 "$LP_PID" 2>/dev/null || die "the daemon died under the hostile peers"
	end_ok
	lazy_stats
	;;
restore-fault)
	begin "$@"
	sum0=$(cd "$DST" && sha256sum -- *.img)
	start_daemon "$DST" "$TMP/lp.out" --lazy-timeout 30
	rc=0
	RELIVE_FAULT=restore-lazy-handover restore_lazy "$DST" || rc=$?
	[[ $rc != 0 ]] || die "the restore succeeded despite the injected fault"
	grep -q "fault injected at restore-lazy-handover" "$DST.restore.out" ||
		die "the restore does not name the fault: $(tail -3 "$DST.restore.out")"
	wait_gone "$V_PID" 10 || die "pid $V_PID is left after the failed restore"
	rc=0
	wait_bg "$LP_PID" 20 || rc=$?
	[[ $rc != 124 ]] || die "the daemon still runs 20 s after the restore failed"
	expect_failure "$TMP/lp.out" "$rc" "not told DONE"
	kill -0 "$SRC_PID" 2>/dev/null || die "the source exited: the memory is lost for a retry"
	[[ $(cd "$DST" && sha256sum -- *.img) == "$sum0" ]] || die "the failed restore changed images"
	log "restore failed as asked; the source still serves; retrying"
	mv "$TMP/lp.out" "$TMP/lp-failed.out"
	go 30
	end_ok
	lazy_stats
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
redis)
	# VICTIM is redis-server; a port of its own in A (and later in B).
	command -v redis-cli >/dev/null && command -v redis-benchmark >/dev/null ||
		die "redis-cli and redis-benchmark are needed (scripts/deps.sh installs redis-tools)"
	net_up
	KEYS=${1:-500000}
	RPORT=$((PORT + 1))
	RDIR=$TMP/redis
	mkdir -p "$RDIR"
	"${IN_A[@]}" setsid -f "$VICTIM" --port "$RPORT" --bind 127.0.0.1 --save '' \
		--appendonly no --set-proc-title no --enable-debug-command yes --dir "$RDIR" \
		--logfile "$RDIR/redis.log" </dev/null >/dev/null 2>&1
	for ((i = 0; i < 100; i++)); do
		redis_in "$NS_A" PING 2>/dev/null | grep -q PONG && break
		sleep 0.1
	done
	V_PID=$(redis_in "$NS_A" INFO server | tr -d '\r' | awk -F: '$1 == "process_id" { print $2 }')
	[[ -n $V_PID ]] || die "redis-server did not start: $(tail -5 "$RDIR/redis.log")"
	VICTIM_PIDS+=("$V_PID")
	V_START=$(proc_start "$V_PID")
	log "redis-server pid $V_PID on 127.0.0.1:$RPORT in $NS_A; loading $KEYS keys"
	n=$(redis_in "$NS_A" EVAL "$REDIS_LOAD" 0 "$KEYS")
	[[ $n == "$KEYS" ]] || die "redis holds $n keys after the load, expected $KEYS"
	log "loaded: $(redis_in "$NS_A" INFO memory | tr -d '\r' | grep -m1 '^used_memory_human:')"
	digest=$(redis_in "$NS_A" DEBUG DIGEST)
	rps_before=$(redis_get_rps "$NS_A" 10)
	log "GET throughput before the dump: $rps_before requests/s"
	dump_source
	go 60
	# Clients reconnect to the same address, now in B, while pages stream in.
	rps_after=$(redis_get_rps "$NS_B" 10)
	log "GET throughput in the first 10 s after the restore: $rps_after requests/s"
	rc=0
	wait_bg "$LP_PID" 90 || rc=$?
	[[ $rc == 0 ]] || { show_failure "$TMP/lp.out" "$DST/lazy-pages.log"; die "relive lazy-pages exited with $rc"; }
	wait_bg "$SRC_PID" 30 || { show_failure "$SRC.dump.out"; die "the source did not exit 0"; }
	log "$(grep -m1 '^lazy-pages: .* pages in' "$TMP/lp.out")"
	[[ $(redis_in "$NS_B" DBSIZE) == "$KEYS" ]] || die "redis holds $(redis_in "$NS_B" DBSIZE) keys after the migration, expected $KEYS"
	[[ $(redis_in "$NS_B" DEBUG DIGEST) == "$digest" ]] || die "the dataset digest changed across the migration"
	bad=$(redis_in "$NS_B" EVAL "$REDIS_CHECK" 0 "$KEYS")
	[[ $bad == 0 ]] || die "$bad keys do not read back their value after the migration"
	rps_later=$(redis_get_rps "$NS_B" 5)
	log "redis: $KEYS keys intact; GET requests/s before the dump $rps_before," \
		"first 10 s after the restore $rps_after, once complete $rps_later"
	redis_in "$NS_B" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
	wait_gone "$V_PID" 10 || [[ $(proc_state "$V_PID") == [ZX] ]] || die "redis-server did not shut down"
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
