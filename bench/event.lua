-- wrk script: POST /events with one event (BENCH_BATCH=1, default) or an array of BENCH_BATCH,
-- as the API key in BENCH_KEY.
-- Prints one RESULT line: requests and events per second, latency percentiles, and how many
-- requests were acknowledged (202) or refused (429/503) across all threads.
local batch = tonumber(os.getenv("BENCH_BATCH") or "1")
local stamp = os.getenv("BENCH_TIMESTAMP")

local function event(i)
  return string.format(
    '{"timestamp":"%s","service":"bench","message":"order %d paid by card","metadata":{"level":"info","region":"eu","amount":%d}}',
    stamp, i, i * 7)
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_KEY")
if key and key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
if batch == 1 then
  wrk.body = event(1)
else
  local parts = {}
  for i = 1, batch do parts[i] = event(i) end
  wrk.body = "[" .. table.concat(parts, ",") .. "]"
end

dofile("bench/pace.lua") -- BENCH_DELAY_MS pacing (the scripts run from the repository root)

local threads = {}
function setup(thread) table.insert(threads, thread) end

accepted, refused, other = 0, 0, 0
function response(status, headers, body)
  if status == 202 then accepted = accepted + 1
  elseif status == 429 or status == 503 then refused = refused + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local a, r, o = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted"); r = r + t:get("refused"); o = o + t:get("other")
  end
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d rps=%.0f events_per_s=%.0f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f accepted=%d refused=%d other=%d socket_errors=%d\n",
    summary.requests, summary.requests / secs, a * batch / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, a, r, o,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
