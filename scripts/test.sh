#!/bin/bash
# Install dependencies, build relive, and run the whole test suite: the unit
# and integration suites on a normal build, then the unit suite and the fuzz
# regression inputs (fuzz-regress) again under AddressSanitizer +
# UndefinedBehaviorSanitizer.
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
meson test -C "$BUILD" --print-errorlogs --num-processes 1 --no-suite unit

echo "== unit and fuzz-regress suites under ASan+UBSan"
if [ ! -f "$ASAN_BUILD/build.ninja" ]; then
	meson setup "$ASAN_BUILD" --buildtype=debug -Dwerror=true \
		-Db_sanitize=address,undefined -Db_lundef=false
fi
ninja -C "$ASAN_BUILD"
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
	meson test -C "$ASAN_BUILD" --print-errorlogs --num-processes 2 --suite unit --suite fuzz-regress
