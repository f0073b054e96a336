-- Processes S and C of bench/outage_bench.sh: config/sandbox.lua without the
-- use-case units, split by OUTAGE_BENCH_PART:
--   sims: every simulator (no VeloCloud flapping) + bench/outage_seed.lua (customer_cache keys, OFFLINE edges),
--         HTTP server on AE_HTTP_LISTEN;
--   caps: every capability pointed at the simulators on AE_HTTP_LISTEN (customer-cache serving only: its keys
--         are seeded), HTTP server on an ephemeral port;
--   all:  both in one process.
-- OUTAGE_BENCH_REFRESH=1 lets customer-cache build the cache through the bridges, OUTAGE_BENCH_SEED=0 drops the
-- seed unit (bench/outage_seed_check.sh compares the two).
-- Environment: as config/sandbox.lua (AE_HTTP_LISTEN, SANDBOX_EDGES, NATS_SERVER1, REDIS_HOSTNAME) and
-- OUTAGE_BENCH_DOWN_MOD / OUTAGE_BENCH_DOWN (edge i goes OFFLINE when i % mod is one of the residues;
-- default 200 and "13,30,51,80": 2 %, one residue per host, 30 and 80 with DiGi links).
-- caps: the engine's own server listens on AE_HTTP_LISTEN (127.0.0.1:0), the simulators are at
-- OUTAGE_BENCH_SIMS_LISTEN; config/sandbox.lua builds its base URLs from AE_HTTP_LISTEN, so it reads that one
local part = os.getenv("OUTAGE_BENCH_PART") or "all"
local listen = part == "caps" and assert(os.getenv("OUTAGE_BENCH_SIMS_LISTEN"), "OUTAGE_BENCH_SIMS_LISTEN is needed")
  or os.getenv("AE_HTTP_LISTEN")
local getenv = os.getenv
os.getenv = function(name) -- luacheck: ignore 122
  if name == "AE_HTTP_LISTEN" then return listen end
  return getenv(name)
end
local okc, base_cfg = pcall(dofile, "config/sandbox.lua")
os.getenv = getenv -- luacheck: ignore 122
assert(okc, base_cfg)
local fleet = { edges = tonumber(os.getenv("SANDBOX_EDGES")) or 200, seed = tonumber(os.getenv("SANDBOX_SEED")) or 1,
  digi_every = 10 }
local down = {}
for r in (os.getenv("OUTAGE_BENCH_DOWN") or "13,30,51,80"):gmatch("%d+") do down[#down + 1] = tonumber(r) end

local want = { sims = part ~= "caps", caps = part ~= "sims" }
local units = {}
for _, u in ipairs(base_cfg.units) do
  local kind = u.script:find("^scripts/sandbox/") and "sims" or u.script:find("^scripts/capabilities/") and "caps"
  if want[kind] then
    if u.config.fleet then u.config.fleet = fleet end
    if u.name == "velocloud_sim" then u.config.flap_interval = 0 end
    if u.name == "customer_cache" then u.config.refresh = os.getenv("OUTAGE_BENCH_REFRESH") == "1" end
    units[#units + 1] = u
  end
end
if want.sims and os.getenv("OUTAGE_BENCH_SEED") ~= "0" then
  units[#units + 1] = { name = "outage_bench_seed", script = "bench/outage_seed.lua",
    config = { fleet = fleet, down = down, down_mod = tonumber(os.getenv("OUTAGE_BENCH_DOWN_MOD")) or 200,
      base = "http://" .. listen } }
end
if part == "caps" then base_cfg.http = { listen = getenv("AE_HTTP_LISTEN") or "127.0.0.1:0" } end
base_cfg.units = units
-- OUTAGE_BENCH_SEND_ASAP=0: nats.c batches publishes (send_asap = false, docs/api/nats.md)
if os.getenv("OUTAGE_BENCH_SEND_ASAP") == "0" then base_cfg.nats = { send_asap = false } end
return base_cfg
