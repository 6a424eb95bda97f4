-- wrk script: POST /webhook/u/$SIGNAL_TOKEN[?chart=$SIGNAL_CHART] with the seed's alert text,
-- a different one per request (the same text twice within the dedup window is one signal).
local token = os.getenv("SIGNAL_TOKEN")
local chart = os.getenv("SIGNAL_CHART") or ""
local path = "/webhook/u/" .. token
if chart ~= "" then path = path .. "?chart=" .. chart end
local headers = { ["Content-Type"] = "text/plain" }
local n = 0
local run = tostring(os.time()) .. "-" .. tostring(math.floor(os.clock() * 1e6))

request = function()
  n = n + 1
  local body = string.format(
    "🪙 Ticker: BINANCE:BTCUSDT\n💰 Precio: $%d.%02d\n📈 Señal: Divergencia Alcista\n📊 Indicador: ADX DEF [APIDEVS]\n⏰ Temporalidad: 15\nref %s-%d",
    60000 + n % 10000, n % 100, run, n)
  return wrk.format("POST", path, headers, body)
end

dofile("bench/pace.lua") -- BENCH_DELAY_MS pacing (the scripts run from the repository root)

local codes = {}
response = function(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end

dofile("bench/result.lua")
