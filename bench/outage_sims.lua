-- Process A of bench/outage_bench.sh: config/sandbox.lua (every simulator
-- and capability) without the use-case units, no VeloCloud flapping, the
-- customer-cache serving only (its keys are seeded by bench/outage_seed.lua),
-- plus the seed unit. Environment: as config/sandbox.lua (AE_HTTP_LISTEN,
-- SANDBOX_EDGES, NATS_SERVER1, REDIS_HOSTNAME) and OUTAGE_BENCH_DOWN_MOD /
-- OUTAGE_BENCH_DOWN (residues, comma-separated; default 100 and "10,55": 2 %).
local base_cfg = dofile("config/sandbox.lua")
local listen = os.getenv("AE_HTTP_LISTEN")
local fleet = { edges = tonumber(os.getenv("SANDBOX_EDGES")) or 200, seed = tonumber(os.getenv("SANDBOX_SEED")) or 1,
  digi_every = 10 }
local down = {}
for r in (os.getenv("OUTAGE_BENCH_DOWN") or "10,55"):gmatch("%d+") do down[#down + 1] = tonumber(r) end

local units = {}
for _, u in ipairs(base_cfg.units) do
  if not u.script:find("^scripts/usecases/") then
    if u.config.fleet then u.config.fleet = fleet end
    if u.name == "velocloud_sim" then u.config.flap_interval = 0 end
    if u.name == "customer_cache" then u.config.refresh = false end
    units[#units + 1] = u
  end
end
units[#units + 1] = { name = "outage_bench_seed", script = "bench/outage_seed.lua",
  config = { fleet = fleet, down = down, down_mod = tonumber(os.getenv("OUTAGE_BENCH_DOWN_MOD")) or 100,
    base = "http://" .. listen } }
base_cfg.units = units
return base_cfg
