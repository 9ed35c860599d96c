#!/usr/bin/env bash
# Side-by-side run of haipbench and a peer real-time server's load tool (a
# Centrifuge-based server and load tool kept outside this repository,
# given by its directory), on this machine, scenario by scenario,
# alternating ours / peer / ours / peer, then one table with both columns,
# their ratio and raw JetStream from the same runs.
#
#   cmd/haipbench/sidebyside.sh PEER_DIR [ROUNDS]
#
# PEER_DIR must hold the peer's Go module with ./server and ./load (see
# docs/BENCHMARKS.md, "How to run the side-by-side"). ROUNDS (default 2)
# is how many times each pair runs; the table gives the median and the
# range over the rounds. Settings (environment): CONNS idle connections
# (default 5000), PORT the peer's loopback port (default 18000), OUT the
# directory for binaries, logs and JSON (default a new temporary one),
# REPORT_ONLY=1 to print the table again from the JSON already in OUT.
# Every step is bounded by timeout; nothing listens beyond 127.0.0.1.
set -euo pipefail

if [ $# -lt 1 ] || [ ! -d "$1/server" ] || [ ! -d "$1/load" ]; then
	echo "usage: $0 PEER_DIR [ROUNDS]  (PEER_DIR holds the peer's ./server and ./load)" >&2
	exit 2
fi
PEER=$(cd "$1" && pwd)
ROUNDS=${2:-2}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$(mktemp -d -t haip-sidebyside.XXXXXX)}
CONNS=${CONNS:-5000}
PORT=${PORT:-18000}
ADDR=127.0.0.1:$PORT
BIN=$OUT/bin
mkdir -p "$BIN"
command -v jq >/dev/null || {
	echo "jq is needed to read the results" >&2
	exit 1
}

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "== results in $OUT"

# ours NAME ROUND haipbench-args...: one haipbench run, its JSON kept.
ours() {
	local name=$1 round=$2
	shift 2
	echo "-- ours $name (round $round)"
	if ! timeout 900 "$BIN/haipbench" "$@" -json "$OUT/ours-$name-$round.json" >"$OUT/ours-$name-$round.txt" 2>&1; then
		# A failed run gives no figure (the table says how many runs it has).
		echo "haipbench $name failed (round $round): $(tail -1 "$OUT/ours-$name-$round.txt")" | tee -a "$OUT/failures.txt" >&2
		rm -f "$OUT/ours-$name-$round.json"
	fi
}

SPID=
stop_peer() {
	if [ -n "$SPID" ]; then
		kill "$SPID" 2>/dev/null || true
		wait "$SPID" 2>/dev/null || true
		SPID=
	fi
}
trap stop_peer EXIT

# peer NAME ROUND load-args...: a fresh peer server, one load run, its
# JSON kept.
peer() {
	local name=$1 round=$2
	shift 2
	echo "-- peer $name (round $round)"
	"$BIN/peer-server" -addr "$ADDR" >"$OUT/peer-server-$name-$round.log" 2>&1 &
	SPID=$!
	for _ in $(seq 1 100); do
		curl -fsS "http://$ADDR/api/info" >/dev/null 2>&1 && break
		sleep 0.1
	done
	curl -fsS "http://$ADDR/api/info" >/dev/null || { echo "peer server did not start" >&2; exit 1; }
	if ! timeout 600 "$BIN/peer-load" "$@" -url "ws://$ADDR/connection/websocket" -api "http://$ADDR" -pid "$SPID" \
		-out "$OUT/peer-$name-$round.json" >"$OUT/peer-$name-$round.txt" 2>&1; then
		echo "peer $name failed (round $round): $(tail -1 "$OUT/peer-$name-$round.txt")" | tee -a "$OUT/failures.txt" >&2
		rm -f "$OUT/peer-$name-$round.json"
	fi
	stop_peer
}

if [ "${REPORT_ONLY:-0}" != 1 ]; then
	echo "== build"
	(cd "$ROOT" && go build -o "$BIN/haipbench" ./cmd/haipbench)
	(cd "$PEER" && go build -o "$BIN/peer-server" ./server && go build -o "$BIN/peer-load" ./load)

	for round in $(seq 1 "$ROUNDS"); do
		ours fanout "$round" -scenario fanout -sessions 100 -messages 1000 -writers 100 -size 256
		peer fanout "$round" fanout -channels 100 -duration 10s -workers 2 -size 256
		ours latency "$round" -scenario latency -sessions 100 -rate 10000 -messages 100000 -size 256
		peer latency "$round" latency -channels 100 -rate 10000 -duration 10s -size 256
		ours resume "$round" -scenario resume -messages 1000 -clients 100 -size 256
		peer resume "$round" recovery -trials 5 -concurrent 100 -missed 1000 -size 256
		ours conns "$round" -scenario conns -spawn -conns "$CONNS"
		peer conns "$round" idle -k "$CONNS"
	done
fi

# values SIDE NAME JQ: the figure JQ selects from every round's JSON.
values() {
	local side=$1 name=$2 q=$3 f
	for f in "$OUT/$side-$name"-*.json; do
		[ -e "$f" ] && jq -r "$q" "$f"
	done
	return 0
}
# ourRow SCENARIO METRIC: jq for a haipbench row.
ourRow() { echo ".[] | select(.scenario==\"$1\") | .rows[] | select(.metric==\"$2\") | .value"; }
# stat: "median (min–max, n runs)" of the numbers on stdin (the median
# of an even count is the mean of the middle two).
stat() {
	jq -rs 'def r: if . >= 100 then round else . * 100 | round / 100 end;
		sort | if length == 0 then "—" else
		"\((.[(length-1)/2|floor] + .[length/2|floor]) / 2 | r) (\(.[0] | r)–\(.[-1] | r), \(length))" end'
}
med() { jq -rs 'sort | if length == 0 then "null" else (.[(length-1)/2|floor] + .[length/2|floor]) / 2 end'; }

# row LABEL UNIT "ours values" "peer values" "raw values"
row() {
	local label=$1 unit=$2 o=$3 p=$4 raw=$5 ratio
	ratio=$(jq -rn --argjson o "$(echo "$o" | med)" --argjson p "$(echo "$p" | med)" \
		'if $o == null or $p == null or $p == 0 then "—" else ($o / $p * 100 | round / 100 | tostring) end')
	printf '| %s | %s | %s | %s | %s | %s |\n' "$label" "$unit" "$(echo "$o" | stat)" "$(echo "$p" | stat)" "$ratio" \
		"$(if [ -n "$raw" ]; then echo "$raw" | stat; else echo "—"; fi)"
}

echo
echo "== side by side ($ROUNDS rounds; median (min–max, runs); ours ÷ peer of the medians; $(nproc) CPUs, $(date -u +%FT%TZ))"
echo
echo "| figure | unit | ours | peer | ours ÷ peer | raw JetStream, same runs |"
echo "|---|---|---|---|---|---|"
row "fan-out 100×1, 256 B, delivered" "msg/s" \
	"$(values ours fanout "$(ourRow fanout 'delivered to clients')")" \
	"$(values peer fanout '.metrics.delivered_msgs_per_s')" \
	"$(values ours fanout "$(ourRow baseline 'raw JetStream async publish')")"
row "latency at 10k msg/s, p50" "ms" \
	"$(values ours latency "$(ourRow latency 'latency p50')")" \
	"$(values peer latency '.metrics.latency.p50_ms')" \
	"$(values ours latency "$(ourRow latency 'raw JetStream latency p50')")"
row "latency at 10k msg/s, p99" "ms" \
	"$(values ours latency "$(ourRow latency 'latency p99')")" \
	"$(values peer latency '.metrics.latency.p99_ms')" \
	"$(values ours latency "$(ourRow latency 'raw JetStream latency p99')")"
row "100 clients resuming 1,000 missed each" "msg/s" \
	"$(values ours resume "$(ourRow resume 'catch-up delivered (total)')")" \
	"$(values peer resume '.metrics.concurrent.msgs_per_s')" \
	"$(values ours resume "$(ourRow baseline 'raw JetStream ordered-consumer read')")"
row "idle WebSocket, server RSS per connection ($CONNS)" "KiB" \
	"$(values ours conns "$(ourRow conns 'edge RSS growth per connection')")" \
	"$(values peer conns '.metrics.server_rss_per_conn_bytes / 1024')" \
	""
row "… plus nats-server RSS per connection" "KiB" \
	"$(values ours conns "$(ourRow conns 'nats-server RSS growth per connection')")" \
	"" ""
echo
echo "raw JetStream: async publish (fan-out row) and ordered-consumer read (resume row) of the same"
echo "message size, and synchronous publish latency at the same rate (latency rows), from haipbench's"
echo "own baseline in each of its runs. Ours resumes one session's 1,000 messages in 100 clients at"
echo "once; the peer's 100 clients each recover their own channel."
if [ -s "$OUT/failures.txt" ]; then
	echo
	echo "failed runs (no figure):"
	cat "$OUT/failures.txt"
fi
