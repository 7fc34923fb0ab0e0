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
SRCPID=
LPPID=

cleanup() {
	set +e
	for p in $WPID $SRCPID $LPPID; do kill -9 "$p" 2>/dev/null; done
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
	# this subshell is the workload's parent: it reaps it the moment the dump kills it
	ip netns exec "$SRC" setsid "$WORKLOAD" -m "$MIB" -g 5000 >"$WORK/workload.log" 2>&1 </dev/null &
	echo $! >"$WORK/workload.pid"
	exec 2>/dev/null # no "Killed" notice: being killed by the dump is the plan
	wait
) &
for _ in $(seq 100); do [ -s "$WORK/workload.pid" ] && break; sleep 0.05; done
WPID=$(cat "$WORK/workload.pid")
for _ in $(seq 100); do grep -q counter= "$WORK/workload.log" 2>/dev/null && break; sleep 0.1; done
sleep 1
tail -3 "$WORK/workload.log"
before=$(grep -o 'counter=[0-9]*' "$WORK/workload.log" | tail -1 | cut -d= -f2)

say "checkpoint it on the source: relive dump --lazy-pages (stays up as the page server)"
mkfifo "$WORK/src.status" "$WORK/lp.status"
ip netns exec "$SRC" "$RELIVE" dump -t "$WPID" -D "$WORK/images" --lazy-pages \
	--address 10.231.0.1 --port 27000 --status-fd 3 -o dump.log 3>"$WORK/src.status" &
SRCPID=$!
head -c1 "$WORK/src.status" >/dev/null # images complete, page server listening
WPID=
du -sh "$WORK/images" | sed 's/^/image directory (no anonymous memory in it): /'

say "on the destination: relive lazy-pages, then relive restore --lazy-pages"
ip netns exec "$DST" "$RELIVE" lazy-pages --address 10.231.0.1 --port 27000 -D "$WORK/images" \
	--status-fd 3 --stats-json "$WORK/lazy.json" -o lazy-pages.log 3>"$WORK/lp.status" &
LPPID=$!
head -c1 "$WORK/lp.status" >/dev/null
ip netns exec "$DST" "$RELIVE" restore -D "$WORK/images" --lazy-pages -d \
	--pidfile "$WORK/restored.pid" >/dev/null
RPID=$(cat "$WORK/restored.pid")
WPID=$RPID
echo "restored as pid $RPID, now in network namespace $(ip netns identify "$RPID")"
echo "it runs while its memory streams in behind it"
wait "$LPPID" || { echo "FAILED: lazy-pages exited with an error" >&2; exit 1; }
wait "$SRCPID" || { echo "FAILED: the page server exited with an error" >&2; exit 1; }
LPPID= SRCPID=
sleep 1
tail -3 "$WORK/workload.log"
after=$(grep -o 'counter=[0-9]*' "$WORK/workload.log" | tail -1 | cut -d= -f2)
summary=$("$RELIVE" show "$WORK/images/stats-restore.img" | python3 -c '
import json, sys
r = json.load(sys.stdin)["entries"][0]["restore"]
s = json.load(open(sys.argv[1]))
print("frozen window (freeze on the source to running on the destination): %.1f ms"
      % (int(r["frozen_window_us"]) / 1000))
print("lazy-pages: " + ", ".join("%s=%s" % (k, v) for k, v in s.items()
                                 if not isinstance(v, (dict, list))))' "$WORK/lazy.json")

# The workload logs every pause of its own longer than 5 ms ("gap ... len=NS"):
# the migration is the longest. The counter lines around it are the last one
# printed on the source and the first one printed on the destination.
read -r pause gap_end < <(awk -F'[= ]' '/^gap / && $7 > len { len = $7; end = $5 }
	END { printf "%.1f %.0f\n", len / 1e6, end / 1000 }' "$WORK/workload.log")
read -r last first < <(awk -F'[= ]' -v e="$gap_end" '/^t=/ {
	if ($2 < e) a = $4; else if (b == "") b = $4 } END { print a, b }' "$WORK/workload.log")

say "result"
echo "last counter on the source: $last; first on the destination: $first"
echo "the workload's own clock: its longest pause was $pause ms"
echo "counter when the demo started the dump: $before; now: $after"
echo "$summary"
if [ "$first" = "$((last + 1))" ] && [ "$after" -gt "$before" ] &&
	! grep -q 'ok=0' "$WORK/workload.log"; then
	echo "the workload carries on where it stopped, its memory intact"
else
	echo "FAILED: the workload did not continue as expected" >&2
	exit 1
fi
