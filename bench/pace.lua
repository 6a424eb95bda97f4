-- Loaded by the wrk scripts: BENCH_DELAY_MS paces each connection (a pause after each answer):
-- with C connections the offered rate is about C / (delay + latency), so latency can be measured
-- at a fixed rate instead of at saturation. wrk's latency figures exclude the pause. The pause is
-- drawn uniformly from 0.5x to 1.5x (whole ms) so connections do not fall into lockstep bursts:
-- a server that answers a batch at once would otherwise see all C requests arrive together.
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if pause then
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  delay = function() return math.random(math.floor(pause / 2), math.ceil(pause * 3 / 2)) end
end
