#!/bin/bash
# The relive demo: build, check the kernel, then migrate a running workload
# (a counter holding a few hundred MiB) from one network namespace to another
# on this host and show it carrying on from where it stopped. Cleans up after
# itself, also when interrupted.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
MIB=${MIB:-256}
bash scripts/deps.sh
[ -f build/build.ninja ] || meson setup build --buildtype=debugoptimized >/dev/null
ninja -C build >/dev/null
RELIVE=$ROOT/build/cli/relive
WORKLOAD=$ROOT/build/bench/relive-workload

SRC=relive-demo-src-$$
DST=relive-demo-dst-$$
WORK=$(mktemp -d /tmp/relive-demo.XXXXXX)
chmod 700 "$WORK"
WPID=

cleanup() {
	set +e
	[ -n "$WPID" ] && kill -9 "$WPID" 2>/dev/null
	ip netns del "$SRC" 2>/dev/null
	ip netns del "$DST" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "relive check"
"$RELIVE" check | tail -3

say "two hosts: network namespaces $SRC and $DST joined by a veth pair"
ip netns add "$SRC"
ip netns add "$DST"
ip link add "veth-s$$" netns "$SRC" type veth peer name "veth-d$$" netns "$DST"
ip -n "$SRC" addr add 10.231.0.1/24 dev "veth-s$$"
ip -n "$DST" addr add 10.231.0.2/24 dev "veth-d$$"
ip -n "$SRC" link set "veth-s$$" up
ip -n "$DST" link set "veth-d$$" up
ip -n "$SRC" link set lo up
ip -n "$DST" link set lo up
echo "source 10.231.0.1, destination 10.231.0.2"

say "start the workload ($MIB MiB, prints a counter every 100 ms) on the source"
(
	# hand the workload nothing but its stdio: no stray descriptors of ours
	for fd in /proc/self/fd/*; do
		fd=${fd##*/}
		[ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null
	done
	exec ip netns exec "$SRC" setsid "$WORKLOAD" -m "$MIB" >"$WORK/workload.log" 2>&1 </dev/null
) &
WPID=$!
for _ in $(seq 100); do grep -q counter= "$WORK/workload.log" 2>/dev/null && break; sleep 0.1; done
sleep 1
tail -3 "$WORK/workload.log"
before=$(grep -o 'counter=[0-9]*' "$WORK/workload.log" | tail -1 | cut -d= -f2)

say "checkpoint it on the source (relive dump)"
"$RELIVE" dump -t "$WPID" -D "$WORK/images"
{ wait "$WPID"; } 2>/dev/null || true # the dump killed it; reap it as its parent
du -sh "$WORK/images" | sed 's/^/image directory: /'

say "restore it on the destination (relive restore)"
t0=$(date +%s%N)
ip netns exec "$DST" "$RELIVE" restore -D "$WORK/images" -d --pidfile "$WORK/restored.pid" >/dev/null
t1=$(date +%s%N)
RPID=$(cat "$WORK/restored.pid")
WPID=$RPID
echo "restored as pid $RPID, now in network namespace $(ip netns identify "$RPID")"
sleep 1.5
tail -3 "$WORK/workload.log"
after=$(grep -o 'counter=[0-9]*' "$WORK/workload.log" | tail -1 | cut -d= -f2)
frozen=$("$RELIVE" show "$WORK/images/stats-dump.img" | python3 -c '
import json,sys; d=json.load(sys.stdin)["entries"][0]["dump"]; print(int(d["freeze_start_realtime_us"]))')
frozen=$(( (t1 / 1000 - frozen) / 1000 ))

say "result"
echo "counter before the dump: $before, after the restore: $after "
echo "frozen window (freeze on the source to running on the destination): ${frozen} ms"
if [ "$after" -gt "$before" ] && tail -1 "$WORK/workload.log" | grep -q 'ok=1'; then
	echo "the workload carries on where it stopped, its memory intact"
else
	echo "FAILED: the workload did not continue as expected" >&2
	exit 1
fi
