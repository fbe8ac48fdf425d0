-- wrk script for bench/run.sh: POSTs a JSON-RPC `tools/call` of `echo` and checks every reply.
--
-- Environment:
--   BENCH_AUTH      one header line sent with every request ("X-API-Key: ..."), or empty
--   BENCH_SESSIONS  space-separated Mcp-Session-Id values (stateful servers), or empty
--   BENCH_TOKENS    a file of bearer tokens, one per line (`bench-server --fresh-tokens`): each
--                   request carries the next one, so none is answered from the server's cache
--                   of verified tokens; or empty
--   BENCH_TOKENS_RANGE  "FROM:TO", the lines (0-based, TO excluded) this run may use, so that a
--                   warm-up and the measured run never send the same token (default: all)
--   BENCH_THREADS   wrk's -t, so that each thread takes its own lines of the range
--
-- A run that needs more tokens than its range holds starts over (cache hits): done() reports
-- how many requests did in `wrapped=`.
--
-- A reply counts as good when its status is 200 and its body holds a JSON-RPC result with the
-- echoed text and no `"isError":true`; otherwise it is counted as non-2xx or as a JSON-RPC
-- error. done() prints one machine-readable RESULT line.

local text = "hello"
local protocol = "2025-06-18"
local auth = os.getenv("BENCH_AUTH") or ""
local sessions = {}
for sid in (os.getenv("BENCH_SESSIONS") or ""):gmatch("%S+") do
  sessions[#sessions + 1] = sid
end

local function body_with_id(id)
  return '{"jsonrpc":"2.0","id":' .. id
    .. ',"method":"tools/call","params":{"name":"echo","arguments":{"text":"' .. text .. '"}}}'
end

wrk.method = "POST"
wrk.path = "/mcp"
wrk.body = body_with_id(1)
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = protocol
do
  local name, value = auth:match("^%s*([^:]+):%s*(.-)%s*$")
  if name then
    wrk.headers[name] = value
  end
end

-- Counters of this thread (read by done() through thread:get).
good, non2xx, rpc_errors, bad_sample, wrapped = 0, 0, 0, "", 0
thread_index = 0

local tokens_file = os.getenv("BENCH_TOKENS") or ""
local tokens = {}

-- Runs in each thread once its index is set: keeps this thread's share of the range.
function init(args)
  if tokens_file == "" then return end
  local from, to = (os.getenv("BENCH_TOKENS_RANGE") or ""):match("^(%d+):(%d+)$")
  from, to = tonumber(from) or 0, tonumber(to) or math.huge
  local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
  local line = 0
  for token in io.lines(tokens_file) do
    if line >= to then break end
    if line >= from and (line - from) % threads == thread_index - 1 then
      tokens[#tokens + 1] = token
    end
    line = line + 1
  end
  if #tokens == 0 then error("no tokens for thread " .. thread_index .. " in " .. tokens_file) end
end

local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
  thread:set("thread_index", #threads)
end

if #sessions > 0 or tokens_file ~= "" then
  -- Stateful: rotate over the sessions; request ids are unique per session and thread, as a
  -- session requires for requests in flight at the same time. Fresh tokens: the next one.
  local n = 0
  function request()
    n = n + 1
    if #tokens > 0 then
      if n > #tokens then wrapped = wrapped + 1 end
      wrk.headers["Authorization"] = "Bearer " .. tokens[(n - 1) % #tokens + 1]
    end
    if #sessions == 0 then
      return wrk.format(nil, nil, nil, nil)
    end
    wrk.headers["Mcp-Session-Id"] = sessions[n % #sessions + 1]
    return wrk.format(nil, nil, nil, body_with_id(thread_index * 1000000000 + n))
  end
end

local expected = '"text":"' .. text .. '"'
function response(status, headers, body)
  if status ~= 200 then
    non2xx = non2xx + 1
    if bad_sample == "" then bad_sample = status .. " " .. (body or "") end
  elseif body:find('"result"', 1, true) and body:find(expected, 1, true)
      and not body:find('"isError":true', 1, true) then
    good = good + 1
  else
    rpc_errors = rpc_errors + 1
    if bad_sample == "" then bad_sample = status .. " " .. body end
  end
end

function done(summary, latency, requests)
  local g, n, r, w, sample = 0, 0, 0, 0, ""
  for _, thread in ipairs(threads) do
    w = w + thread:get("wrapped")
    g = g + thread:get("good")
    n = n + thread:get("non2xx")
    r = r + thread:get("rpc_errors")
    if sample == "" then sample = thread:get("bad_sample") end
  end
  local e = summary.errors
  local socket_errors = e.connect + e.read + e.write + e.timeout
  io.write(string.format(
    "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d good=%d non2xx=%d rpc_errors=%d socket_errors=%d wrapped=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    g, n, r, socket_errors, w))
  if sample ~= "" then
    io.write("SAMPLE_BAD " .. sample:gsub("[\r\n]+", " "):sub(1, 300) .. "\n")
  end
end
