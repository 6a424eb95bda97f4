-- wrk script: POST /api/alert with the integration token from $ALERT_TOKEN.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("ALERT_TOKEN")
wrk.body = '{"message":"CPU 93% on web-1 (bench)"}'

-- BENCH_DELAY_MS paces each connection (pause after each response): with C connections the
-- offered rate is about C / (delay + latency), so a fixed rate can be measured instead of the
-- saturation point. wrk's latency figures exclude the pause. The pause is drawn uniformly from
-- 0.5x to 1.5x (whole ms) so connections do not fall into lockstep bursts: a server that
-- answers a batch at once would otherwise see all C requests arrive together every cycle.
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if pause then
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  delay = function() return math.random(math.floor(pause / 2), math.ceil(pause * 3 / 2)) end
end

local codes = {}
response = function(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_s=%.2f rps=%.0f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f errors=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
