-- wrk script: TrustGate's benchmark request (POST /v1/chat/completions) with a gateway key.
--
--   API_KEY=<key> wrk -t2 -c50 -d10s -s scripts/wrk/chat.lua http://127.0.0.1:8081/v1/chat/completions
--
-- Env: API_KEY (sent as "Authorization: Bearer <key>"; omitted when empty),
--      STREAM=1 (adds "stream": true to the body), ORIGIN (sent as "Origin" when set),
--      VARY=<run id> (every request's message differs: "Hi <run id>-<thread>-<n>", so a
--      response cache never hits; the run id keeps runs against one gateway apart),
--      CACHE_CONTROL (sent as "Cache-Control" when set, e.g. no-store).
-- done() prints one machine-readable line, parsed by scripts/lib.sh (rg_parse_wrk):
--   RGWRK requests=N duration_us=N rps=X p50_us=N p95_us=N p99_us=N errors=N non2xx=N ...
-- errors = connect + read + write + timeout + HTTP status > 399 (wrk's own counters).

local body = '{"model":"gpt-3.5-turbo","messages":[{"role":"user","content":"Hi"}]}'
if os.getenv("STREAM") == "1" then
  body = '{"model":"gpt-3.5-turbo","stream":true,"messages":[{"role":"user","content":"Hi"}]}'
end

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("API_KEY")
if key ~= nil and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

local origin = os.getenv("ORIGIN")
if origin ~= nil and origin ~= "" then
  wrk.headers["Origin"] = origin
end

local cache_control = os.getenv("CACHE_CONTROL")
if cache_control ~= nil and cache_control ~= "" then
  wrk.headers["Cache-Control"] = cache_control
end

local vary = os.getenv("VARY")
if vary ~= nil and vary ~= "" then
  local threads = 0
  function setup(thread)
    threads = threads + 1
    thread:set("tid", threads)
  end
  local n = 0
  function request()
    n = n + 1
    local b = string.format(
      '{"model":"gpt-3.5-turbo","messages":[{"role":"user","content":"Hi %s-%d-%d"}]}',
      vary, tid or 0, n)
    return wrk.format(nil, nil, nil, b)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout + e.status
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RGWRK requests=%d duration_us=%d rps=%.2f p50_us=%d p95_us=%d p99_us=%d max_us=%d mean_us=%.1f errors=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, summary.requests / secs,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean, errors, e.status, e.connect, e.read, e.write, e.timeout))
end
