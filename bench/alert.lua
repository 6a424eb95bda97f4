-- wrk script: POST /api/alert with the integration token from $ALERT_TOKEN.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("ALERT_TOKEN")
wrk.body = '{"message":"CPU 93% on web-1 (bench)"}'

dofile("bench/pace.lua") -- BENCH_DELAY_MS pacing (the scripts run from the repository root)

local codes = {}
response = function(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end

dofile("bench/result.lua")
