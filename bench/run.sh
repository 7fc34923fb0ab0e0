#!/bin/bash
# The migration benchmark: builds relive for measuring (-O2, its own build
# directory build-bench), then runs bench/bench.py, which migrates the
# benchmark workload between two network namespaces eager and lazy over
# several link profiles, writes bench/results/<date>-<host>.json, and
# bench/report.py, which prints the Markdown table and draws the PNG plots.
#
#   bench/run.sh [--quick] [--runs N] [--sizes 64,512,...] [--profiles plain,1gbit,...]
#   CRIU=/path/to/criu bench/run.sh ...   also migrate with criu
#
# BENCH_BUILD=DIR picks another build directory. See docs/benchmarks.md.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BENCH_BUILD:-$ROOT/build-bench}
if [ "$(id -u)" != 0 ]; then
	echo "bench: must run as root (network namespaces, dump, restore)" >&2
	exit 1
fi
command -v gnuplot >/dev/null || echo "bench: gnuplot not found (apt-get install gnuplot-nox): no plots" >&2
if [ ! -f "$BUILD/build.ninja" ]; then
	meson setup "$BUILD" --buildtype=release -Doptimization=2 >/dev/null
fi
ninja -C "$BUILD" cli/relive bench/relive-workload >/dev/null
json=$(python3 "$ROOT/bench/bench.py" --build "$BUILD" "$@" | tail -1)
python3 "$ROOT/bench/report.py" "$json"
