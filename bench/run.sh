#!/usr/bin/env bash
# Side-by-side load benchmark: secured mcp-gatekeeper calls against a bare rmcp 3.11 server and
# the seed's TypeScript and Python servers. One command, from anywhere:
#
#   bench/run.sh
#
# It installs what is missing (wrk from Debian, the TypeScript server's npm packages, a Python
# venv in bench/.venv), builds bench-server in release mode, then for each of ROUNDS rounds
# starts every server in turn on loopback, drives `tools/call echo` with wrk (same settings for
# all: THREADS threads, CONNECTIONS connections, WARMUP warm-up then DURATION measured), checks
# every reply (status 200 and a JSON-RPC result with the echoed text), stops the server, and
# finally prints one table (bench/results/ keeps it with the raw wrk output).
#
# Two self-contained load binaries of the same crate measure what wrk cannot drive:
#   cargo run --release -p mcp-gatekeeper-bench --bin tls-load      (HTTPS and mTLS against
#     plain HTTP; src/tls_load.rs)
#   cargo run --release -p mcp-gatekeeper-bench --bin refresh-load  (OAuth refresh grants/s,
#     SqliteStore against PostgresStore on DATABASE_URL, N rotating chains; src/refresh_load.rs)
#
# Settings (environment): DURATION=5s WARMUP=2s CONNECTIONS=32 THREADS=2 ROUNDS=6
#   (many short rounds rather than a few long ones: this machine's speed drifts by 10-20 % over
#   seconds, and the median of per-round ratios is printed with the ratio of means)
#   ROWS="bare apikey hs256 es256 ts py bare-stateful apikey-stateful" (a subset for quick runs)
#   (diagnostic rows, not in the default set: apikey-noaudit = API key without the JSON-lines
#   audit file, records on tracing only; bare-anyhost = bare with rmcp's Host check off)
#   (shared-state row, not in the default set: apikey-redis = the apikey row with the tools' rate
#   limits in Redis, `bench-server --redis-url $REDIS_URL`, as replicas behind one load balancer
#   would keep them: every tools/call runs the limiter's GCRA script in Redis (EVALSHA) before
#   the tool, the rate still never triggers, the keys go under a prefix new on every start; with
#   redis-cli installed, each round also prints Redis's EVALSHA/EVAL calls and its CPU time per
#   request, from INFO commandstats / INFO cpu before and after the measured run, and the
#   targets set it against apikey; REDIS_URL=redis://127.0.0.1:6379)
#   (cache-miss rows, not in the default set: hs256-cold, es256-cold = the JWT rows with a new
#   token on every request, so each one is verified in full instead of found in the cache of
#   verified tokens; FRESH_TOKENS_HS256=400000 / FRESH_TOKENS_ES256=160000 tokens are minted by
#   the server at start, the warm-up sends the first quarter, the measured run the rest; a run
#   that needed more prints a warning)
#   BEFORE=/path/to/another/bench-server: a row written ROW@before (e.g. ROWS="bare apikey
#   apikey@before") runs ROW with that binary, interleaved with this tree's rows in the same
#   run, for before/after comparisons (build the other commit in a worktree with its own
#   CARGO_TARGET_DIR)
#   SESSIONS=32 (stateful rows: sessions opened before the run, requests rotate over them)
#   BASE_PORT=18800
#   TCP_NODELAY=1 (diagnostic: every Rust server sets TCP_NODELAY on accepted connections;
#   by default bare rmcp on axum::serve never does, and Gatekeeper::bind only in stateful mode)

set -euo pipefail

DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-6}
ROWS=${ROWS:-"bare apikey hs256 es256 ts py bare-stateful apikey-stateful"}
SESSIONS=${SESSIONS:-32}
BASE_PORT=${BASE_PORT:-18800}
FRESH_TOKENS_HS256=${FRESH_TOKENS_HS256:-400000}
FRESH_TOKENS_ES256=${FRESH_TOKENS_ES256:-160000}
BEFORE=${BEFORE:-}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
RUST_FLAGS=()
[ "${TCP_NODELAY:-0}" = 1 ] && RUST_FLAGS+=(--tcp-nodelay)
PROTOCOL=2025-06-18

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
TS_KEY="seed-ts-key-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

say() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

# ---------------------------------------------------------------- setup
need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
command -v curl >/dev/null || need_apt+=(curl)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v node >/dev/null || need_apt+=(nodejs npm)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if ((${#need_apt[@]})); then
  say "installing ${need_apt[*]} (apt-get)"
  if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

say "building bench-server (cargo build --release -p mcp-gatekeeper-bench)"
(cd "$ROOT" && cargo build --release -q -p mcp-gatekeeper-bench)
TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
SERVER="$TARGET_DIR/release/bench-server"

if [[ " $ROWS " == *" ts "* ]]; then
  if [ ! -d "$BENCH/seed-ts/node_modules" ] || [ "$BENCH/seed-ts/package-lock.json" -nt "$BENCH/seed-ts/node_modules/.package-lock.json" ]; then
    say "installing the TypeScript seed's packages (npm ci)"
    (cd "$BENCH/seed-ts" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
fi
if [[ " $ROWS " == *" py "* ]]; then
  VENV="$BENCH/.venv"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating the Python venv ($VENV)"
    python3 -m venv "$VENV"
  fi
  if ! cmp -s "$BENCH/seed-py/requirements.txt" "$VENV/.installed-requirements.txt"; then
    say "installing the Python seed's packages (pip install -r seed-py/requirements.txt)"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$BENCH/seed-py/requirements.txt"
    cp "$BENCH/seed-py/requirements.txt" "$VENV/.installed-requirements.txt"
  fi
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mcp-bench.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 0.5
  for pid in "${PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/es256.key" 2>/dev/null
openssl pkey -in "$WORK/es256.key" -pubout -out "$WORK/es256.pub" 2>/dev/null

RESULTS="$BENCH/results"
mkdir -p "$RESULTS"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW="$RESULTS/run-$STAMP.raw.txt"
TABLE="$RESULTS/run-$STAMP.txt"
: >"$RAW"

# ---------------------------------------------------------------- rows
label() {
  if [[ $1 == *@before ]]; then
    echo "$(label "${1%@before}") [before]"
    return
  fi
  case $1 in
    bare) echo "bare rmcp 3.11 (stateless JSON, no auth)" ;;
    apikey) echo "mcp-gatekeeper API key (stateless)" ;;
    hs256) echo "mcp-gatekeeper HS256 JWT (stateless)" ;;
    es256) echo "mcp-gatekeeper ES256 JWT (stateless)" ;;
    hs256-cold) echo "gatekeeper HS256, new token per request" ;;
    es256-cold) echo "gatekeeper ES256, new token per request" ;;
    ts) echo "seed TypeScript (Express + SDK 1.32.2)" ;;
    py) echo "seed Python (FastMCP, mcp 1.30.0)" ;;
    bare-stateful) echo "bare rmcp 3.11 (stateful sessions, SSE)" ;;
    apikey-stateful) echo "mcp-gatekeeper API key (stateful)" ;;
    apikey-noaudit) echo "gatekeeper API key, no audit file (diag.)" ;;
    apikey-redis) echo "gatekeeper API key, rate limit in Redis" ;;
    bare-anyhost) echo "bare rmcp, its Host check off (diag.)" ;;
    *) echo "$1" ;;
  esac
}

# start_server ROW PORT: starts the row's server in the background, sets SERVER_PID and AUTH
# (and TOKENS_FILE, TOKENS_COUNT for the cache-miss rows).
start_server() {
  local row=${1%@before} port=$2 cred="$WORK/cred.$1" binary=$SERVER
  if [[ $1 == *@before ]]; then
    [ -n "$BEFORE" ] || { echo "row $1 needs BEFORE=/path/to/bench-server" >&2; exit 2; }
    binary=$BEFORE
  fi
  rm -f "$cred.tmp"
  TOKENS_FILE="" TOKENS_COUNT=0
  case $row in
    bare | apikey | hs256 | es256 | bare-stateful | apikey-stateful | apikey-noaudit | bare-anyhost | hs256-cold | es256-cold | apikey-redis)
      local mode=${row%-*} flags=() audit=(--audit-file "$WORK/audit.jsonl")
      [[ $row == *-stateful ]] && flags=(--stateful)
      [[ $row == *-anyhost ]] && flags=(--any-host)
      [[ $row == *-noaudit ]] && audit=(--no-audit-file)
      [[ $row == *-redis ]] && flags=(--redis-url "$REDIS_URL")
      if [[ $row == *-cold ]]; then
        TOKENS_FILE="$WORK/tokens"
        TOKENS_COUNT=$FRESH_TOKENS_HS256
        [[ $row == es256-* ]] && TOKENS_COUNT=$FRESH_TOKENS_ES256
        flags=(--fresh-tokens "$TOKENS_FILE" --fresh-token-count "$TOKENS_COUNT")
        rm -f "$TOKENS_FILE"
      fi
      rm -f "$WORK/audit.jsonl"
      "$binary" --mode "$mode" "${flags[@]}" "${RUST_FLAGS[@]}" --bind "127.0.0.1:$port" \
        --credential-file "$cred.tmp" "${audit[@]}" \
        --es256-private "$WORK/es256.key" --es256-public "$WORK/es256.pub" \
        2>>"$WORK/server.log" &
      SERVER_PID=$!
      ;;
    ts)
      MCP_API_KEYS="$TS_KEY" HOST=127.0.0.1 PORT=$port node "$BENCH/seed-ts/server.mjs" 2>>"$WORK/server.log" &
      SERVER_PID=$!
      echo "X-API-Key: $TS_KEY" >"$cred.tmp"
      ;;
    py)
      MCP_API_KEYS="$TS_KEY" HOST=127.0.0.1 PORT=$port "$BENCH/.venv/bin/python" "$BENCH/seed-py/server.py" 2>>"$WORK/server.log" &
      SERVER_PID=$!
      echo "X-API-Key: $TS_KEY" >"$cred.tmp"
      ;;
    *) echo "unknown row $row" >&2; exit 2 ;;
  esac
  PIDS+=("$SERVER_PID")
  # Ready when a real tools/call succeeds (at most 60 s).
  local body='{"jsonrpc":"2.0","id":0,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}'
  local deadline=$((SECONDS + 60)) reply=""
  while ((SECONDS < deadline)); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "server for $row exited; log:" >&2; tail -20 "$WORK/server.log" >&2; exit 1
    fi
    if [ -s "$cred.tmp" ] || [[ $row == bare* ]]; then
      AUTH=$(cat "$cred.tmp" 2>/dev/null || true)
      local hdr=(-H "Content-Type: application/json" -H "Accept: application/json, text/event-stream" -H "MCP-Protocol-Version: $PROTOCOL")
      [ -n "$AUTH" ] && hdr+=(-H "$AUTH")
      if [[ $row == *-stateful ]]; then
        # Stateful servers need a session: check that initialize works.
        reply=$(curl -s -m 2 "${hdr[@]}" "http://127.0.0.1:$port/mcp" \
          -d '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"'$PROTOCOL'","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}' || true)
      else
        reply=$(curl -s -m 2 "${hdr[@]}" "http://127.0.0.1:$port/mcp" -d "$body" || true)
      fi
      if [[ $reply == *'"result"'* ]]; then
        return 0
      fi
    fi
    sleep 0.2
  done
  echo "server for $row did not answer in 60 s (last reply: ${reply:0:200})" >&2
  exit 1
}

stop_server() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# open_sessions PORT N: prints N session ids (initialize + notifications/initialized each).
open_sessions() {
  local port=$1 n=$2 i sid ids=()
  local hdr=(-H "Content-Type: application/json" -H "Accept: application/json, text/event-stream")
  [ -n "$AUTH" ] && hdr+=(-H "$AUTH")
  for i in $(seq 1 "$n"); do
    sid=$(curl -s -m 5 -D - -o /dev/null "${hdr[@]}" -H "MCP-Protocol-Version: $PROTOCOL" "http://127.0.0.1:$port/mcp" \
      -d '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"'$PROTOCOL'","capabilities":{},"clientInfo":{"name":"bench-'$i'","version":"0"}}}' |
      awk 'tolower($1) == "mcp-session-id:" { print $2 }' | tr -d '\r')
    [ -n "$sid" ] || { echo "initialize returned no Mcp-Session-Id" >&2; exit 1; }
    curl -s -m 5 -o /dev/null "${hdr[@]}" -H "Mcp-Session-Id: $sid" -H "MCP-Protocol-Version: $PROTOCOL" \
      "http://127.0.0.1:$port/mcp" -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'
    ids+=("$sid")
  done
  echo "${ids[*]}"
}

# run_wrk PORT DURATION [FROM:TO]: runs wrk with the shared settings (the cache-miss rows
# send the tokens of lines FROM to TO), prints its RESULT line.
run_wrk() {
  local out
  out=$(BENCH_AUTH="$AUTH" BENCH_SESSIONS="$SESSION_IDS" BENCH_TOKENS="$TOKENS_FILE" \
    BENCH_TOKENS_RANGE="${3:-}" BENCH_THREADS="$THREADS" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$2" --timeout 5s --latency -s "$BENCH/mcp.lua" "http://127.0.0.1:$1/mcp")
  printf '%s\n' "$out" >>"$RAW"
  grep '^SAMPLE_BAD' <<<"$out" >&2 || true
  if [[ $out =~ wrapped=([1-9][0-9]*) ]]; then
    echo "warning: ${BASH_REMATCH[1]} requests reused a token; raise FRESH_TOKENS_*" >&2
  fi
  grep '^RESULT' <<<"$out"
}

# redis_stats: "EVALSHA+EVAL calls, Redis CPU seconds (user + system)" of the Redis at
# REDIS_URL, from INFO (whole-server counters: anything else using that Redis meanwhile counts
# too); empty without redis-cli.
redis_stats() {
  command -v redis-cli >/dev/null || return 0
  redis-cli -u "$REDIS_URL" INFO all 2>/dev/null | tr -d '\r' | awk -F'[:,=]' '
    $1 == "cmdstat_evalsha" || $1 == "cmdstat_eval" { calls += $3 }
    $1 == "used_cpu_sys" || $1 == "used_cpu_user" { cpu += $2 }
    END { printf "%d %.6f\n", calls, cpu }'
}

# Server CPU time (user + system, all threads) in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# ---------------------------------------------------------------- measure
declare -A R
say "client: wrk, $THREADS threads, $CONNECTIONS connections, $WARMUP warm-up + $DURATION measured, $ROUNDS rounds"
# Each round starts one row later than the previous one: the load of other tenants on a shared
# machine drifts over minutes, and no row should always run first or last.
read -r -a ROW_LIST <<<"$ROWS"
for round in $(seq 1 "$ROUNDS"); do
  index=0
  for offset in "${!ROW_LIST[@]}"; do
    row=${ROW_LIST[$(((offset + round - 1) % ${#ROW_LIST[@]}))]}
    index=$((index + 1))
    port=$((BASE_PORT + 10 * round + index))
    say "round $round: $(label "$row")"
    AUTH=""
    SESSION_IDS=""
    start_server "$row" "$port"
    if [[ ${row%@before} == *-stateful ]]; then
      SESSION_IDS=$(open_sessions "$port" "$SESSIONS")
    fi
    echo "### round $round row $row warm-up" >>"$RAW"
    run_wrk "$port" "$WARMUP" "0:$((TOKENS_COUNT / 4))" >/dev/null
    echo "### round $round row $row measured" >>"$RAW"
    redis0="" redis1=""
    [[ ${row%@before} == *-redis ]] && redis0=$(redis_stats)
    ticks0=$(cpu_ticks "$SERVER_PID")
    line=$(run_wrk "$port" "$DURATION" "$((TOKENS_COUNT / 4)):$TOKENS_COUNT")
    ticks1=$(cpu_ticks "$SERVER_PID")
    [[ ${row%@before} == *-redis ]] && redis1=$(redis_stats)
    cpu=$(awk -v t="$((ticks1 - ticks0))" -v hz="$CLK_TCK" -v n="$(field requests "$line")" 'BEGIN { printf "%.0f", (n > 0) ? t * 1e6 / hz / n : 0 }')
    line="$line cpu_us=$cpu"
    if [ -n "$redis0" ] && [ -n "$redis1" ]; then
      # Script calls and Redis CPU per request of the measured run.
      line="$line $(awk -v a="$redis0" -v b="$redis1" -v n="$(field requests "$line")" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        printf "redis_calls=%.3f redis_cpu_us=%.1f", (n > 0) ? (y[1] - x[1]) / n : 0, (n > 0) ? (y[2] - x[2]) * 1e6 / n : 0 }')"
      printf '   Redis: %s EVALSHA/EVAL calls per request, %s us of Redis CPU per request\n' \
        "$(field redis_calls "$line")" "$(field redis_cpu_us "$line")" >&2
    fi
    R[$row,$round]=$line
    printf '   %s req/s, p50 %s us, p99 %s us, server CPU %s us/req, non-2xx %s, JSON-RPC errors %s, socket errors %s\n' \
      "$(field rps "$line")" "$(field p50_us "$line")" "$(field p99_us "$line")" "$cpu" \
      "$(field non2xx "$line")" "$(field rpc_errors "$line")" "$(field socket_errors "$line")" >&2
    stop_server "$SERVER_PID"
    PIDS=()
  done
done
grep -h 'audit records dropped' "$WORK/server.log" | sort | uniq -c >>"$RAW" || true

# ---------------------------------------------------------------- report
# Per row: mean req/s, mean p50/p99 over the rounds, summed errors.
declare -A RPS P50 P99 ERR SPREAD CPU
for row in $ROWS; do
  sum_rps=0 sum50=0 sum99=0 sumcpu=0 errs=0 spread=""
  for round in $(seq 1 "$ROUNDS"); do
    line=${R[$row,$round]}
    rps=$(field rps "$line")
    sum_rps=$(awk -v a="$sum_rps" -v b="$rps" 'BEGIN { print a + b }')
    sum50=$((sum50 + $(field p50_us "$line")))
    sum99=$((sum99 + $(field p99_us "$line")))
    sumcpu=$((sumcpu + $(field cpu_us "$line")))
    errs=$((errs + $(field non2xx "$line") + $(field rpc_errors "$line") + $(field socket_errors "$line")))
    spread+="${spread:+ / }$(printf '%.0f' "$rps")"
  done
  RPS[$row]=$(awk -v s="$sum_rps" -v n="$ROUNDS" 'BEGIN { printf "%.0f", s / n }')
  P50[$row]=$((sum50 / ROUNDS))
  P99[$row]=$((sum99 / ROUNDS))
  CPU[$row]=$((sumcpu / ROUNDS))
  ERR[$row]=$errs
  SPREAD[$row]=$spread
done

ms() { awk -v us="$1" 'BEGIN { printf "%.2f ms", us / 1000 }'; }
ratio() { # ratio ROW BASE
  if [ -n "${RPS[$2]:-}" ] && [ "${RPS[$2]}" != 0 ]; then
    awk -v a="${RPS[$1]}" -v b="${RPS[$2]}" 'BEGIN { printf "%.2fx", a / b }'
  else
    echo "-"
  fi
}

{
  echo "mcp-gatekeeper side-by-side benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores"
  echo "client: wrk $THREADS threads, $CONNECTIONS connections, $WARMUP warm-up + $DURATION measured per row, $ROUNDS rounds (req/s and latencies: mean of the rounds; errors: sum)"
  ((${#RUST_FLAGS[@]})) && echo "DIAGNOSTIC RUN: Rust servers with ${RUST_FLAGS[*]}"
  echo "tool: tools/call echo {\"text\":\"hello\"}, protocol $PROTOCOL; every reply checked for status 200 + JSON-RPC result"
  echo "errors: non-2xx + JSON-RPC errors + socket errors; server CPU: the server process's user+system time per request (less sensitive to other load than req/s)"
  echo
  printf '| %-42s | %9s | %-17s | %9s | %10s | %6s | %-19s | %12s |\n' "server" "req/s" "req/s per round" "p50" "p99" "errors" "req/s vs bare" "server CPU"
  printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..44})" "$(printf -- '-%.0s' {1..11})" \
    "$(printf -- '-%.0s' {1..19})" "$(printf -- '-%.0s' {1..11})" "$(printf -- '-%.0s' {1..12})" \
    "$(printf -- '-%.0s' {1..8})" "$(printf -- '-%.0s' {1..21})" "$(printf -- '-%.0s' {1..14})"
  for row in $ROWS; do
    if [[ ${row%@before} == *-stateful ]]; then base=bare-stateful; else base=bare; fi
    vs=$(ratio "$row" "$base")
    [ "$row" != "$base" ] && [ "$vs" != "-" ] && vs="$vs $base"
    [ "$row" = "$base" ] && vs="1.00x"
    printf '| %-42s | %9s | %-17s | %9s | %10s | %6s | %-19s | %12s |\n' "$(label "$row")" "${RPS[$row]}" \
      "${SPREAD[$row]}" "$(ms "${P50[$row]}")" "$(ms "${P99[$row]}")" "${ERR[$row]}" "$vs" "${CPU[$row]} us/req"
  done
  echo
  echo "targets (from the issue):"
  check() { # check DESCRIPTION VALUE OP LIMIT
    local verdict
    verdict=$(awk -v v="$2" -v l="$4" -v op="$3" 'BEGIN { ok = (op == ">=") ? (v >= l) : (v <= l); print ok ? "met" : "MISSED" }')
    printf '  %-58s %8s (target %s %s): %s\n' "$1" "$2" "$3" "$4" "$verdict"
  }
  r() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
  # The median over the rounds of (row req/s / bare req/s in the same round): a row and bare
  # run seconds apart within a round, so slow drifts of the machine's speed cancel out.
  paired() { # paired ROW BASE
    local round ratios=()
    for round in $(seq 1 "$ROUNDS"); do
      ratios+=("$(r "$(field rps "${R[$1,$round]}")" "$(field rps "${R[$2,$round]}")")")
    done
    printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
  }
  for row in apikey hs256 apikey-noaudit; do
    if [ -n "${RPS[$row]:-}" ] && [ -n "${RPS[bare]:-}" ]; then
      check "$(label "$row"): req/s vs bare" "$(r "${RPS[$row]}" "${RPS[bare]}")" ">=" 0.90
      check "$(label "$row"): req/s vs bare, median of rounds" "$(paired "$row" bare)" ">=" 0.90
      check "$(label "$row"): p99 vs bare" "$(r "${P99[$row]}" "${P99[bare]}")" "<=" 1.2
      check "$(label "$row"): server CPU per request vs bare (info)" "$(r "${CPU[$row]}" "${CPU[bare]}")" "<=" 1.11
    fi
  done
  if [ -n "${RPS[apikey-redis]:-}" ] && [ -n "${RPS[apikey]:-}" ]; then
    check "$(label apikey-redis): req/s vs apikey" "$(r "${RPS[apikey-redis]}" "${RPS[apikey]}")" ">=" 0.70
    check "$(label apikey-redis): req/s vs apikey, median of rounds" "$(paired apikey-redis apikey)" ">=" 0.70
    check "$(label apikey-redis): p99 vs apikey (info)" "$(r "${P99[apikey-redis]}" "${P99[apikey]}")" "<=" 1.5
    check "$(label apikey-redis): server CPU per request vs apikey (info)" "$(r "${CPU[apikey-redis]}" "${CPU[apikey]}")" "<=" 1.5
    calls=$(for round in $(seq 1 "$ROUNDS"); do field redis_calls "${R[apikey-redis,$round]}"; done | awk 'NF { s += $1; n++ } END { if (n) printf "%.3f", s / n }')
    rcpu=$(for round in $(seq 1 "$ROUNDS"); do field redis_cpu_us "${R[apikey-redis,$round]}"; done | awk 'NF { s += $1; n++ } END { if (n) printf "%.1f", s / n }')
    [ -n "$calls" ] && printf '  %-58s %8s (EVALSHA + EVAL per request, mean of rounds; Redis CPU %s us/req)\n' \
      "$(label apikey-redis): Redis script calls" "$calls" "$rcpu"
  fi
  for row in apikey hs256; do
    [ -n "${RPS[$row]:-}" ] && [ -n "${RPS[ts]:-}" ] && check "$(label "$row"): req/s vs TypeScript seed" "$(r "${RPS[$row]}" "${RPS[ts]}")" ">=" 20
    [ -n "${RPS[$row]:-}" ] && [ -n "${RPS[py]:-}" ] && check "$(label "$row"): req/s vs Python seed" "$(r "${RPS[$row]}" "${RPS[py]}")" ">=" 40
  done
  true
} | tee "$TABLE"
echo "(table: $TABLE; raw wrk output: $RAW)" >&2
