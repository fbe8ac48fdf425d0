#!/usr/bin/env bash
# Instructions per new connection and per keep-alive request of tls-load's rows (plain HTTP,
# HTTPS, mutual TLS), counted by valgrind's callgrind: user-space instructions do not move with
# other load on the machine, which the requests/s and CPU times of `tls-load` do.
#
#   bench/tls-callgrind.sh [ROW ...]        (default: plain tls mtls)
#
# Three runs of `tls-load` per row, one connection at a time (CONNECTIONS=1), no warm-up:
#   base: HANDSHAKES=$FEW new connections, no keep-alive load;
#   more: HANDSHAKES=$MANY, no keep-alive load;
#   load: HANDSHAKES=$FEW and $DURATION of keep-alive requests.
# Per new connection = (more - base) / the connections between them (tls-load also makes a
# tenth more, uncounted, before the timed ones); per request = (load - base) / the requests
# tls-load reports. Everything else the runs do (the PKI, starting the servers, the first
# connections) is the same in all three and cancels out. Each side is counted apart
# (`--separate-threads=yes`): a thread that ran the accept loop is the server's, one that ran
# the client's spawned tasks the client's; the main thread (setup) is left out.
# Prints one line per row: instructions per connection and per request, server and client.
# KEEP=DIR keeps the callgrind outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=("${@:-plain tls mtls}")
read -r -a ROWS <<<"${ROWS[*]}"
FEW=${FEW:-100}
MANY=${MANY:-300}
DURATION=${DURATION:-10s}

command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
cargo build --release -q -p mcp-gatekeeper-bench --bin tls-load
BINARY=${CARGO_TARGET_DIR:-target}/release/tls-load

WORK=${KEEP:-$(mktemp -d)}
mkdir -p "$WORK"
[[ -n ${KEEP:-} ]] || trap 'rm -rf "$WORK"' EXIT

# run NAME ROW HANDSHAKES DURATION: tls-load under callgrind; its stderr in $WORK/NAME.log.
run() {
    ROWS=$2 ROUNDS=1 CONNECTIONS=1 WARMUP=0s HANDSHAKES=$3 DURATION=$4 \
        valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$WORK/$1" \
        "$BINARY" >/dev/null 2>"$WORK/$1.log"
}

# side FILE-PREFIX SIDE: the instructions of the server's or the client's threads.
side() {
    local file total=0 n
    for file in "$1"-[0-9]*; do
        n=$(sed -n 's/^summary: //p' "$file")
        # The main thread builds the servers too: it is told apart by `tls_load::run`.
        if grep -q 'tls_load::run' "$file"; then
            continue
        elif grep -q 'mcp_gatekeeper::http::serve' "$file"; then
            [[ $2 == server ]] && total=$((total + n))
        elif grep -q 'tls_load::' "$file"; then
            [[ $2 == client ]] && total=$((total + n))
        fi
    done
    echo "$total"
}

per() { awk -v d="$1" -v n="$2" 'BEGIN { printf "%.0f", d / n }'; }

connections=$((MANY + MANY / 10 - FEW - FEW / 10))
printf '%-6s %22s %22s %22s %22s %9s\n' row "server instr/conn" "client instr/conn" \
    "server instr/request" "client instr/request" requests
for row in "${ROWS[@]}"; do
    run "base.$row" "$row" "$FEW" 0s
    run "more.$row" "$row" "$MANY" 0s
    run "load.$row" "$row" "$FEW" "$DURATION"
    requests=$(sed -n 's/.*keep-alive.*(\([0-9]*\) requests).*/\1/p' "$WORK/load.$row.log")
    [[ ${requests:-0} -gt 0 ]] || { echo "no requests in the $row load run:" >&2; cat "$WORK/load.$row.log" >&2; exit 1; }
    line=("$row")
    for s in server client; do
        line+=("$(per $(($(side "$WORK/more.$row" $s) - $(side "$WORK/base.$row" $s))) "$connections")")
    done
    for s in server client; do
        line+=("$(per $(($(side "$WORK/load.$row" $s) - $(side "$WORK/base.$row" $s))) "$requests")")
    done
    printf '%-6s %22s %22s %22s %22s %9s\n' "${line[@]}" "$requests"
done
