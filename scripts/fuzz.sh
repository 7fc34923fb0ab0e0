#!/bin/bash
# Run every fuzz target (fuzz/meson.build) for MINUTES each, one after the
# other, from the committed seeds (fuzz/corpus/) and regression inputs:
#
#   scripts/fuzz.sh MINUTES [TARGET...]      e.g. scripts/fuzz.sh 5 fuzz_rst_plan
#
# Sets up the clang build itself (FUZZ_BUILD, default build-fuzz). The
# growing corpus, logs and crash inputs go to FUZZ_WORK (default
# /tmp/relive-fuzz). Prints each target's executions, coverage and corpus
# (libFuzzer's -print_final_stats) and exits 1 if any target crashed,
# leaked or broke a property: the input is then in FUZZ_WORK/artifacts/.
# docs/testing.md says what to do with it.
set -euo pipefail

cd "$(dirname "$0")/.."
[[ $# -ge 1 && $1 =~ ^[0-9]+$ && $1 -gt 0 ]] || {
	echo "usage: $0 MINUTES [TARGET...]" >&2
	exit 2
}
MINUTES=$1
shift
ALL=(fuzz_img fuzz_ps_proto fuzz_rst_plan)
TARGETS=("${@:-${ALL[@]}}")
BUILD=${FUZZ_BUILD:-build-fuzz}
WORK=${FUZZ_WORK:-/tmp/relive-fuzz}

if [[ ! -f $BUILD/build.ninja ]]; then
	CC=clang meson setup "$BUILD" -Dfuzz=true
fi
ninja -C "$BUILD" "${TARGETS[@]/#/fuzz/}"

# seed_dirs TARGET: the committed inputs a target starts from.
seed_dirs() {
	case $1 in
	fuzz_img) echo fuzz/corpus/img test/unit/images/regress ;;
	*) echo "fuzz/corpus/${1#fuzz_} fuzz/regress/${1#fuzz_}" ;;
	esac
}

# Per-target libFuzzer options: input size, and the planner's error lines
# (one per refused input) kept off the terminal.
target_opts() {
	case $1 in
	fuzz_img) echo -max_len=8192 ;;
	fuzz_ps_proto) echo -max_len=64 ;;
	fuzz_rst_plan) echo -max_len=65536 -close_fd_mask=2 ;;
	*) echo "unknown target $1" >&2; exit 2 ;;
	esac
}

failed=()
for t in "${TARGETS[@]}"; do
	corpus=$WORK/corpus/$t
	art=$WORK/artifacts/$t
	mkdir -p "$corpus" "$art"
	for d in $(seed_dirs "$t"); do
		[[ -d $d ]] || continue
		find "$d" -maxdepth 1 -type f ! -name README -exec cp -n {} "$corpus/" \;
	done
	log=$WORK/$t.log
	echo "== $t: $MINUTES min, corpus $corpus, log $log"
	rc=0
	# shellcheck disable=SC2046  # the options are words on purpose
	"$BUILD/fuzz/$t" $(target_opts "$t") -max_total_time=$((MINUTES * 60)) \
		-print_final_stats=1 -artifact_prefix="$art/" "$corpus" >"$log" 2>&1 || rc=$?
	grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$log" || true
	grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' \
		"$log" || true
	if [[ $rc != 0 ]]; then
		echo "!! $t exited with $rc:"
		grep -E 'ERROR:|SUMMARY:|property broken|Test unit written' "$log" | head -10
		failed+=("$t")
	fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
	echo "FAILED: ${failed[*]} (inputs in $WORK/artifacts/)"
	exit 1
fi
echo "no crash, no leak, no broken property in: ${TARGETS[*]}"
