#!/bin/bash
# Install dependencies, build relive, and run the whole test suite: the unit
# and integration suites on a normal build, then the unit suite and the fuzz
# regression inputs (fuzz-regress) again under AddressSanitizer +
# UndefinedBehaviorSanitizer; and builds the libFuzzer targets with clang so
# that scripts/fuzz.sh keeps working (it is run by hand, for minutes).
set -euo pipefail

cd "$(dirname "$0")/.."
bash scripts/deps.sh

BUILD=${BUILD:-build}
ASAN_BUILD=${ASAN_BUILD:-build-asan}

if [ ! -f "$BUILD/build.ninja" ]; then
	meson setup "$BUILD" --buildtype=debugoptimized -Dwerror=true
fi
ninja -C "$BUILD"

echo "== unit and integration suites"
meson test -C "$BUILD" --print-errorlogs --num-processes 2 --suite unit
meson test -C "$BUILD" --print-errorlogs --num-processes 2 --no-suite unit

echo "== unit and fuzz-regress suites under ASan+UBSan"
if [ ! -f "$ASAN_BUILD/build.ninja" ]; then
	meson setup "$ASAN_BUILD" --buildtype=debug -Dwerror=true \
		-Db_sanitize=address,undefined -Db_lundef=false
fi
ninja -C "$ASAN_BUILD"
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
	meson test -C "$ASAN_BUILD" --print-errorlogs --num-processes 2 --suite unit --suite fuzz-regress
# The page server under the sanitizers, good and hostile clients (the
# restore side cannot run instrumented: its helper becomes the process).
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
	meson test -C "$ASAN_BUILD" --print-errorlogs lazy-src-serve lazy-src-timeout

echo "== libFuzzer targets build (clang); scripts/fuzz.sh MINUTES runs them"
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
if [ ! -f "$FUZZ_BUILD/build.ninja" ]; then
	CC=clang meson setup "$FUZZ_BUILD" -Dfuzz=true >/dev/null
fi
ninja -C "$FUZZ_BUILD" fuzz/fuzz_img fuzz/fuzz_ps_proto fuzz/fuzz_rst_plan
