#!/bin/sh
# Fail if a blob ELF has undefined symbols or dynamic relocations other than
# R_X86_64_RELATIVE: a freestanding blob must run wherever it is copied.
set -eu
elf="$1"
undef=$(nm -u "$elf" || true)
if [ -n "$undef" ]; then
	echo "FAIL: $elf has undefined symbols:"; echo "$undef"; exit 1
fi
bad=$(readelf -rW "$elf" | awk '/R_X86_64_/ && $3 != "R_X86_64_RELATIVE" {print}')
if [ -n "$bad" ]; then
	echo "FAIL: $elf has relocations other than RELATIVE:"; echo "$bad"; exit 1
fi
echo "PASS: $elf: no undefined symbols, only RELATIVE relocations"
