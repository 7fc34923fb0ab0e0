# shellcheck shell=bash disable=SC2034  # V_* and CR_FEATURES are for the drivers
# Shared helpers of the integration drivers (sourced, never run). They start
# victims outside the driver's process tree (setsid -f: init reaps them, as in
# real use), run relive with a bounded timeout, check the state of a
# restored or dumped process through /proc, and collect the victim's own
# verdict (protocol: test/victims/victim.c). The EXIT trap kills whatever a
# driver started (by pid, after checking it is ours), unmounts what it
# mounted and removes its temporary directory.

# RELIVE_TEST_KEEP=1 keeps the temporary directory (images, logs) for a post-mortem.
# Seconds allowed to each relive invocation and to a victim's setup/check.
RELIVE_TIMEOUT=${RELIVE_TIMEOUT:-90}
VICTIM_TIMEOUT=${VICTIM_TIMEOUT:-60}

TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/relive-it.XXXXXX")
VICTIM_PIDS=()
MOUNTS=()
V_SEQ=0

log() { echo "[$(date +%T.%N | cut -c1-12)] $*"; }
die() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

# A process is ours if its command line names our temporary directory or
# the relive binary with our directory in its arguments.
is_ours() {
	local cmd
	cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline") || return 1
	[[ $cmd == *"$TMP"* ]]
}

cleanup() {
	local rc=$? pid p m
	set +e
	for pid in "${VICTIM_PIDS[@]}"; do
		is_ours "$pid" && kill -9 "$pid" 2>/dev/null
	done
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
		if [[ $(readlink "$p/exe" 2>/dev/null) == "$(readlink -f "$RELIVE")" ]] &&
		   is_ours "$pid"; then
			kill -9 "$pid" 2>/dev/null
		fi
	done
	for m in "${MOUNTS[@]}"; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
	if [[ -n ${RELIVE_TEST_KEEP:-} ]]; then
		echo "kept $TMP" >&2
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP

require_root() {
	[[ $(id -u) == 0 ]] || skip "needs root (ptrace, clone3 set_tid, mounts)"
}

# require_features NAME...: skip (77) when `relive check` reports one of these
# kernel features as missing; its line is the reason. Features it does not
# list are not assumed missing.
require_features() {
	local out f line
	out=$(timeout 30 "$RELIVE" check 2>&1) || true
	for f in "$@"; do
		line=$(grep -m1 -F "$f:" <<<"$out") || continue
		[[ $line == "$f: ok"* ]] || skip "relive check: $line"
	done
}
CR_FEATURES=("ptrace seize" "clone3 set_tid" "PR_SET_MM_MAP" "vdso/vvar layout" "NT_X86_XSTATE size")

# driver_init N USAGE ARGS...: the start of every driver: at least N
# arguments (else the usage line and exit 2), RELIVE VICTIM CASE taken from
# the first three, root and the checkpoint/restore features required. The
# driver then shifts its N arguments away.
driver_init() {
	local n=$1 usage=$2
	shift 2
	(($# >= n)) || { echo "usage: $0 $usage" >&2; exit 2; }
	RELIVE=$1
	VICTIM=$2
	CASE=$3
	require_root
	require_features "${CR_FEATURES[@]}"
}

# tree_pids DIR: the pids of DIR/pstree.img, parents first.
tree_pids() {
	"$RELIVE" show "$1/pstree.img" |
		python3 -c 'import json,sys; print(" ".join(str(e["pid"]) for e in json.load(sys.stdin)["entries"]))'
}

# Field N (1-based, after the comm) of /proc/PID/stat; 1 is the state.
stat_field() {
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	s=${s##*) }
	echo "$s" | awk -v n="$2" '{ print $n }'
}
proc_state() { stat_field "$1" 1; }
proc_start() { stat_field "$1" 20; }
status_field() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }

# start_victim BIN [ARGS...]: sets V_PID V_NONCE V_ADDR V_DIR V_START
start_victim() {
	local bin=$1 line i
	shift
	V_SEQ=$((V_SEQ + 1))
	V_DIR=$TMP/victim$V_SEQ
	mkdir -p "$V_DIR"
	# Only stdio is passed on: whatever else the driver inherited stays here.
	(
		for fd in "/proc/$BASHPID/fd"/*; do
			fd=${fd##*/}
			((fd > 2)) && eval "exec $fd>&-"
		done
		exec setsid -f "$bin" "$@" --workdir "$V_DIR" --ready "$V_DIR/ready" \
			--verdict "$V_DIR/verdict" >"$V_DIR/victim.log" 2>&1 </dev/null
	)
	for ((i = 0; i < VICTIM_TIMEOUT * 10; i++)); do
		[[ -e $V_DIR/ready ]] && break
		sleep 0.1
	done
	[[ -e $V_DIR/ready ]] || die "$(basename "$bin") did not get ready in ${VICTIM_TIMEOUT}s:" \
		"$(cat "$V_DIR/victim.log")"
	line=$(cat "$V_DIR/ready")
	[[ $line == SKIP* ]] && skip "$(basename "$bin"): ${line#SKIP }"
	read -r _ V_PID V_NONCE V_ADDR <<<"$line"
	VICTIM_PIDS+=("$V_PID")
	V_START=$(proc_start "$V_PID")
	log "started $(basename "$bin") $* as pid $V_PID"
}

# The victim's counter, read from its memory.
victim_counter() {
	dd if="/proc/$1/mem" iflag=skip_bytes,count_bytes skip=$(($2)) count=8 status=none |
		od -An -tu8 | tr -d ' '
}

# run_relive OUTFILE ARGS...: relive with a timeout; stdout+stderr to OUTFILE; returns its status.
run_relive() {
	local out=$1 rc=0
	shift
	timeout -k 5 "$RELIVE_TIMEOUT" "$RELIVE" "$@" >"$out" 2>&1 || rc=$?
	[[ $rc == 124 || $rc == 137 ]] && die "relive $1 timed out after ${RELIVE_TIMEOUT}s: $(tail -20 "$out")"
	return "$rc"
}

show_failure() {
	local f
	for f in "$@"; do
		if [[ -s $f ]]; then
			echo "--- $f"
			tail -40 "$f"
		fi
	done >&2
	return 0
}

# "exited with N" / "killed by signal N" for a zombie, from its exit_code in /proc/PID/stat.
zombie_status() {
	local code
	code=$(stat_field "$1" 50) || { echo "gone"; return 0; }
	if ((code & 0x7f)); then
		echo "killed by signal $((code & 0x7f))"
	else
		echo "exited with $((code >> 8))"
	fi
}

# dump PID DIR [EXTRA...]: must succeed.
dump() {
	local pid=$1 dir=$2 rc=0
	shift 2
	mkdir -p "$dir"
	log "relive dump -t $pid -D $dir $*"
	run_relive "$dir.dump.out" dump -t "$pid" -D "$dir" -o dump.log -v4 "$@" || rc=$?
	if [[ $rc != 0 ]]; then
		show_failure "$dir.dump.out" "$dir/dump.log"
		die "relive dump of pid $pid exited with $rc"
	fi
}

# restore DIR: must succeed (detached).
restore() {
	local dir=$1 rc=0
	log "relive restore -D $dir -d"
	run_relive "$dir.restore.out" restore -D "$dir" -d -o restore.log -v4 || rc=$?
	if [[ $rc != 0 ]]; then
		show_failure "$dir.restore.out" "$dir/restore.log"
		die "relive restore from $dir exited with $rc"
	fi
}

# wait_dead PID: the process is gone or a zombie (init reaps late) within 10 s.
wait_dead() {
	local i st
	for ((i = 0; i < 100; i++)); do
		st=$(proc_state "$1") || return 0
		[[ $st == Z || $st == X ]] && return 0
		sleep 0.1
	done
	die "pid $1 still runs (state $st) after it was dumped"
}

# wait_gone PID SECONDS: no process at all with PID within SECONDS.
wait_gone() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		[[ -e /proc/$1 ]] || return 0
		sleep 0.1
	done
	return 1
}

ancestors() {
	local p=$$
	while [[ $p -gt 1 ]]; do
		echo "$p"
		p=$(status_field "$p" PPid) || break
	done
	echo 1
}

# check_running PID [LOGS...]: alive, not stopped, not traced, child of init (or of a
# subreaper above us). The logs are shown when it is not.
check_running() {
	local pid=$1 st tracer ppid i
	shift
	st=$(proc_state "$pid") || { show_failure "$@"; die "pid $pid does not exist"; }
	if [[ $st == Z ]]; then
		show_failure "$@"
		die "pid $pid is a zombie ($(zombie_status "$pid")), expected running or sleeping"
	fi
	[[ $st == [RSD] ]] || { show_failure "$@"; die "pid $pid is in state $st, expected running or sleeping"; }
	for ((i = 0; i < 20; i++)); do
		tracer=$(status_field "$pid" TracerPid)
		[[ $tracer == 0 ]] && break
		sleep 0.1
	done
	[[ $tracer == 0 ]] || die "pid $pid is still traced by $tracer"
	ppid=$(status_field "$pid" PPid)
	ancestors | grep -qx "$ppid" ||
		die "pid $pid has parent $ppid, expected 1 or a subreaper above the driver"
}

# finish PID NONCE MIN_COUNTER: trigger the check, require PASS from this very process.
finish() {
	local pid=$1 nonce=$2 min=$3 dir=${4:-$V_DIR} i v st counter
	log "signalling pid $pid to check itself"
	kill -USR2 "$pid" || die "pid $pid is gone before the check"
	for ((i = 0; i < VICTIM_TIMEOUT * 10; i++)); do
		[[ -e $dir/verdict ]] && break
		if ! st=$(proc_state "$pid") || [[ $st == Z ]]; then
			sleep 0.2
			[[ -e $dir/verdict ]] && break
			show_failure "$dir/victim.log"
			die "pid $pid died without a verdict"
		fi
		sleep 0.1
	done
	[[ -e $dir/verdict ]] || die "pid $pid gave no verdict in ${VICTIM_TIMEOUT}s"
	v=$(cat "$dir/verdict")
	log "verdict of pid $pid: $v"
	[[ $v == PASS* ]] || { show_failure "$dir/victim.log"; die "pid $pid: $v"; }
	[[ $v == *"nonce=$nonce "* ]] || die "pid $pid is not the process that was dumped" \
		"(nonce in '$v', expected $nonce): restarted rather than restored"
	counter=${v##*counter=}
	((counter > min)) || die "pid $pid: counter $counter did not continue from $min"
	wait_gone "$pid" 10 || [[ $(proc_state "$pid") == Z ]] ||
		die "pid $pid did not exit after its verdict"
}

# expect_failure OUTFILE RC WORDS...: relive failed (RC != 0) and its output names each word.
expect_failure() {
	local out=$1 rc=$2 w
	shift 2
	[[ $rc != 0 ]] || die "relive succeeded, expected a failure: $(tail -5 "$out")"
	[[ -s $out ]] || die "relive failed (exit $rc) without a word on stdout/stderr"
	for w in "$@"; do
		# A number must appear as a word: pid 12 is not named by "pid 123".
		if [[ $w =~ ^[0-9]+$ ]]; then
			grep -qwF -- "$w" "$out" && continue
		else
			grep -qiF -- "$w" "$out" && continue
		fi
		die "the error does not name '$w': $(tail -5 "$out")"
	done
	log "relive failed as expected (exit $rc): $(grep -i -m1 -F -- "$1" "$out" || tail -1 "$out")"
}
