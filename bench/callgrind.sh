#!/usr/bin/env bash
# Instructions per request of bench-server rows, counted by valgrind's callgrind: user-space
# instructions do not move with other load on the machine, so two builds (two commits) can be
# compared code to code in one run.
#
#   bench/callgrind.sh [ROW ...]                       rows of this tree's bench-server
#   SERVERS="old=/path/bench-server new=target/release/bench-server" bench/callgrind.sh apikey
#
# ROW is one of bare, apikey, hs256, es256, oidc (ES256 from an identity provider's JWKS),
# introspect (an opaque token, answered from the introspection cache) (default: bare apikey
# hs256), or hs256-cold, es256-cold, oidc-cold: the JWT rows with a new token on every request (`--fresh-tokens`, FRESH_TOKENS of
# them, default 40000; the warm-up sends the first quarter, the measured run the rest, and a
# warning says when the run needed more), so every request misses the verified-token cache and
# is verified in full; or apikey-redis: the apikey row with the tools' rate limits in Redis
# (`--redis-url`, REDIS_URL, default redis://127.0.0.1:6379), which counts the server's side of
# the Redis exchange only (Redis's own work is in another process). Each row is served by `bench-server --mode ROW` under callgrind; after a 3 s warm-up the counters are zeroed, then
# `wrk -t1 -c4` drives `tools/call echo` for DURATION (default 10 s); instructions are divided
# by the requests wrk completed. Without SERVERS, this tree's bench-server is built (release).
# Prints one line per server and row: `NAME ROW instructions/request requests`. KEEP=DIR keeps
# the callgrind outputs (`DIR/callgrind.NAME.ROW.1` is the measured part). A bench-server built
# with `--features otel` records the gatekeeper's OpenTelemetry spans when BENCH_OTEL=1 is set.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=$PWD/bench
ROWS=("${@:-bare apikey hs256}")
read -r -a ROWS <<<"${ROWS[*]}"
DURATION=${DURATION:-10s}
FRESH_TOKENS=${FRESH_TOKENS:-40000}

command -v valgrind >/dev/null && command -v wrk >/dev/null || {
    apt-get update -qq && apt-get install -y -qq valgrind wrk >/dev/null
}
if [[ -z ${SERVERS:-} ]]; then
    cargo build --release -q -p mcp-gatekeeper-bench --bin bench-server
    SERVERS="this=${CARGO_TARGET_DIR:-target}/release/bench-server"
fi

WORK=$(mktemp -d)
# KEEP=DIR keeps the callgrind outputs there (for callgrind_annotate).
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null |
    openssl pkcs8 -topk8 -nocrypt -out "$WORK/es256.key"
openssl ec -in "$WORK/es256.key" -pubout -out "$WORK/es256.pub" 2>/dev/null

port=18900
for server in $SERVERS; do
    name=${server%%=*} binary=${server#*=}
    for row in "${ROWS[@]}"; do
        port=$((port + 1))
        out="$WORK/callgrind.$name.$row"
        rm -f "$WORK/cred" "$WORK/audit.jsonl" "$WORK/tokens"
        flags=() warm_tokens=() measured_tokens=() mode=${row%-cold}
        if [[ $row == *-redis ]]; then
            mode=${row%-redis}
            flags=(--redis-url "${REDIS_URL:-redis://127.0.0.1:6379}")
        fi
        if [[ $row == *-cold ]]; then
            flags=(--fresh-tokens "$WORK/tokens" --fresh-token-count "$FRESH_TOKENS")
            warm_tokens=(BENCH_TOKENS="$WORK/tokens" BENCH_TOKENS_RANGE="0:$((FRESH_TOKENS / 4))")
            measured_tokens=(BENCH_TOKENS="$WORK/tokens" BENCH_TOKENS_RANGE="$((FRESH_TOKENS / 4)):$FRESH_TOKENS")
        fi
        valgrind --tool=callgrind --callgrind-out-file="$out" \
            "$binary" --mode "$mode" --bind "127.0.0.1:$port" --credential-file "$WORK/cred" \
            --audit-file "$WORK/audit.jsonl" "${flags[@]}" \
            --es256-private "$WORK/es256.key" --es256-public "$WORK/es256.pub" \
            2>>"$WORK/valgrind.log" &
        pid=$!
        # Minting the fresh tokens under valgrind takes a while.
        for _ in $(seq 3000); do
            [[ -s $WORK/cred || ($row == bare && -e $WORK/cred) ]] && curl -s -o /dev/null "http://127.0.0.1:$port/mcp" && break
            sleep 0.1
        done
        auth=$(cat "$WORK/cred")
        env BENCH_AUTH="$auth" "${warm_tokens[@]}" wrk -t1 -c4 -d3s -s "$BENCH/mcp.lua" "http://127.0.0.1:$port/mcp" >/dev/null
        callgrind_control -z "$pid" >/dev/null 2>&1
        result=$(env BENCH_AUTH="$auth" "${measured_tokens[@]}" wrk -t1 -c4 -d"$DURATION" -s "$BENCH/mcp.lua" "http://127.0.0.1:$port/mcp" | grep '^RESULT')
        callgrind_control -d "$pid" >/dev/null 2>&1
        kill -TERM "$pid"
        wait "$pid" 2>/dev/null || true
        requests=$(sed -n 's/.*good=\([0-9]*\).*/\1/p' <<<"$result")
        # The dump after zeroing is the measured part (callgrind writes it as OUT.1).
        instructions=$(sed -n 's/^summary: \([0-9]*\).*/\1/p' "$out.1" 2>/dev/null || true)
        [[ -n $instructions && $requests -gt 0 ]] || { echo "$name $row: no measurement ($result)" >&2; continue; }
        wrapped=$(sed -n 's/.*wrapped=\([0-9]*\).*/\1/p' <<<"$result")
        ((${wrapped:-0} == 0)) || echo "$name $row: $wrapped requests reused a token (raise FRESH_TOKENS)" >&2
        echo "$name $row $((instructions / requests)) $requests"
    done
done
if [[ -n ${KEEP:-} ]]; then
    mkdir -p "$KEEP"
    cp "$WORK"/callgrind.* "$KEEP"/
fi
