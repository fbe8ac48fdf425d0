#!/usr/bin/env bash
# What the audit trail costs on disk per million successful tool calls at each level of
# `Gatekeeper::audit_successes`: bench-server's apikey row (one API key, role guard, rate
# limit, JSON-lines audit file), driven by wrk for DURATION (default 15s) per level; the file's
# size divided by the calls wrk completed.
#
#   bench/audit-disk.sh [LEVEL ...]        LEVEL: all, none or N (one in N); default: all 100 none
#   BENCH_SERVER=path/to/bench-server bench/audit-disk.sh
#
# Prints one line per level: `LEVEL calls bytes bytes-per-call`; bytes per call are also MB
# (10^6 bytes) per million calls.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=$PWD/bench
LEVELS=("${@:-all 100 none}")
read -r -a LEVELS <<<"${LEVELS[*]}"
DURATION=${DURATION:-15s}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
if [[ -z ${BENCH_SERVER:-} ]]; then
    cargo build --release -q -p mcp-gatekeeper-bench --bin bench-server
    BENCH_SERVER=${CARGO_TARGET_DIR:-target}/release/bench-server
fi
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

port=18950
for level in "${LEVELS[@]}"; do
    port=$((port + 1))
    rm -f "$WORK/cred" "$WORK/audit.jsonl"
    "$BENCH_SERVER" --mode apikey --bind "127.0.0.1:$port" --credential-file "$WORK/cred" \
        --audit-file "$WORK/audit.jsonl" --audit-successes "$level" &
    pid=$!
    for _ in $(seq 300); do
        [[ -s $WORK/cred ]] && curl -s -o /dev/null "http://127.0.0.1:$port/mcp" && break
        sleep 0.1
    done
    result=$(BENCH_AUTH="$(cat "$WORK/cred")" wrk -t1 -c8 -d"$DURATION" -s "$BENCH/mcp.lua" \
        "http://127.0.0.1:$port/mcp" | grep '^RESULT')
    # The server flushes the file's last records when it stops.
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    calls=$(sed -n 's/.*good=\([0-9]*\).*/\1/p' <<<"$result")
    bytes=$(stat -c %s "$WORK/audit.jsonl" 2>/dev/null || echo 0)
    awk -v l="$level" -v c="$calls" -v b="$bytes" \
        'BEGIN { printf "%s %d %d %.1f\n", l, c, b, b / c }'
done
