-- wrk script: POST /api/v1/messages with the API key from $API_KEY to channel $CHANNEL_ID, each
-- request to a chat of its own (no chat's 1 s spacing holds deliveries back).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("API_KEY")
local channel = os.getenv("CHANNEL_ID")
local n = 0
local thread_base = math.random(1, 1000000) * 1000

request = function()
  n = n + 1
  local body = string.format('{"channel_id":"%s","to":"%d","text":"bench %d"}', channel, thread_base + n, n)
  return wrk.format("POST", "/api/v1/messages", nil, body)
end

dofile("bench/pace.lua") -- BENCH_DELAY_MS pacing (the scripts run from the repository root)

dofile("bench/result.lua")
