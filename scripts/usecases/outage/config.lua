--- usecases.outage.config: the configuration of service-outage-monitor
-- (spec §1). Every value comes from the unit's config table first, then from
-- an environment variable (the original's names where it had one), then the
-- original's default. The table below is the whole list; docs/usecases/
-- service-outage-monitor.md documents it.
local json = require "ae.json"

local M = {}

local HOURS = 3600

-- key, environment variable, default, kind
M.KEYS = {
  { "environment", "CURRENT_ENVIRONMENT", "dev", "string" },
  { "environment_name", "ENVIRONMENT_NAME", nil, "string" },
  { "triage", "ENABLE_TRIAGE_MONITORING", 0, "int" },
  { "velocloud_hosts", "VELOCLOUD_HOSTS", "", "string" },
  { "velocloud_hosts_filter", "VELOCLOUD_HOSTS_FILTER", "", "string" },
  -- MONITOR_CONFIG
  { "outage_interval", "OUTAGE_MONITOR_INTERVAL_SECONDS", 600, "number" },
  { "quarantine", "OUTAGE_QUARANTINE_SECONDS", 180, "number" },
  { "autoresolve_window", "AUTORESOLVE_LAST_OUTAGE_SECONDS", HOURS, "number" },
  { "digi_reboot_window", "LAST_DIGI_REBOOT_SECONDS", 1800, "number" },
  { "autoresolve_semaphore", "OUTAGE_AUTORESOLVE_SEMAPHORE", 5, "int" },
  { "max_autoresolves", "OUTAGE_MAX_AUTORESOLVES", 3, "int" },
  { "last_contact_window", "OUTAGE_LAST_CONTACT_SECONDS", 7 * 24 * HOURS, "number" },
  { "events_lookback", "OUTAGE_EVENTS_LOOKBACK_SECONDS", 7 * 24 * HOURS, "number" },
  { "blacklisted_edges", "OUTAGE_BLACKLISTED_EDGES", nil, "json" },
  -- TRIAGE_CONFIG
  { "triage_interval", "TRIAGE_POLLING_SECONDS", 600, "number" },
  { "triage_recent_note", "TRIAGE_RECENT_NOTE_SECONDS", 1800, "number" },
  { "event_limit", "TRIAGE_EVENT_LIMIT", 15, "int" },
  { "triage_semaphore", "TRIAGE_SEMAPHORE", 1, "int" },
  { "triage_retry_multiplier", "TRIAGE_RETRY_MULTIPLIER", 5, "number" },
  { "triage_retry_min", "TRIAGE_RETRY_MIN", 5, "number" },
  { "triage_retry_stop_delay", "TRIAGE_RETRY_STOP_DELAY", 300, "number" },
  { "triage_velo_hosts", "TRIAGE_VELO_HOSTS", nil, "string" },
  { "note_split_threshold", "TRIAGE_NOTE_SPLIT_THRESHOLD", 1500, "int" },
  { "note_page_size", "TRIAGE_NOTE_PAGE_SIZE", 1000, "int" },
  -- NATS client retry (platform §2.4)
  { "nats_retry_multiplier", "NATS_RETRY_MULTIPLIER", 5, "number" },
  { "nats_retry_min", "NATS_RETRY_MIN", 5, "number" },
  { "nats_retry_stop_delay", "NATS_RETRY_STOP_DELAY", 300, "number" },
  -- aengine: Redis lease per cycle (DESIGN.md §3)
  { "lease", "OUTAGE_LEASE", 1, "int" },
  { "lease_ttl", "OUTAGE_LEASE_TTL_SECONDS", 30, "number" },
  { "lease_key", "OUTAGE_LEASE_KEY", nil, "string" },
}

M.BLACKLIST = { { host = "mettel.velocloud.net", enterprise_id = 170, edge_id = 3195 } }
M.TRIAGE_HOSTS = { "mettel.velocloud.net", "metvco02.mettel.net", "metvco03.mettel.net", "metvco04.mettel.net" }

local function convert(key, var, value, kind)
  local where = string.format("%s (%s)", key, var)
  if kind == "string" then
    return tostring(value)
  elseif kind == "number" or kind == "int" then
    local n = tonumber(value)
    if not n or n ~= n or n < 0 then
      error(string.format("bad %s: %q is not a number >= 0", where, tostring(value)), 0)
    end
    if kind == "int" then
      if n ~= math.floor(n) then error(string.format("bad %s: %q is not an integer", where, tostring(value)), 0) end
      n = math.tointeger(n)
    end
    return n
  elseif kind == "json" then
    if type(value) == "table" then return value end
    local v, err = json.decode(tostring(value))
    if v == nil then error(string.format("bad %s: %s", where, tostring(err)), 0) end
    return v
  end
  return value
end

--- parse_hosts(hosts, filters) -> {host = {enterprise ids}} (spec §1.1):
-- spaces removed, both split on ":", every filter piece JSON-decoded.
function M.parse_hosts(hosts, filters)
  hosts = (hosts or ""):gsub("%s", "")
  filters = (filters or ""):gsub("%s", "")
  local map, order = {}, {}
  if hosts == "" then return map, order end
  local hs, fs = {}, {}
  for h in (hosts .. ":"):gmatch("([^:]*):") do hs[#hs + 1] = h end
  for f in (filters .. ":"):gmatch("([^:]*):") do fs[#fs + 1] = f end
  for i, h in ipairs(hs) do
    local piece = fs[i]
    if piece == nil then error(string.format("no filter for host %s (%d hosts, %d filters)", h, #hs, #fs), 0) end
    local ids, err = json.decode(piece)
    if ids == nil or type(ids) ~= "table" then
      error(string.format("filter %q of host %s is not a JSON list%s", piece, h, err and (": " .. err) or ""), 0)
    end
    if not map[h] then order[#order + 1] = h end
    map[h] = ids
  end
  return map, order
end

--- load(unit_config, getenv) -> config. Raises a clear message on bad values.
function M.load(ucfg, getenv)
  ucfg = ucfg or {}
  getenv = getenv or os.getenv
  local cfg = {}
  for _, k in ipairs(M.KEYS) do
    local key, var, default, kind = k[1], k[2], k[3], k[4]
    local v = ucfg[key]
    if v == nil then v = getenv(var) end
    if v == nil or v == "" and kind ~= "string" then v = default end
    if v ~= nil then v = convert(key, var, v, kind) end
    cfg[key] = v
  end
  if cfg.triage ~= 0 and cfg.triage ~= 1 then
    error(string.format("bad triage (ENABLE_TRIAGE_MONITORING): %s, expected 0 or 1", tostring(cfg.triage)), 0)
  end
  cfg.mode = (cfg.triage == 1) and "triage" or "outage"
  if type(ucfg.velocloud_instances_filter) == "table" then
    cfg.filter, cfg.hosts = ucfg.velocloud_instances_filter, {}
    for h in pairs(cfg.filter) do cfg.hosts[#cfg.hosts + 1] = h end
    table.sort(cfg.hosts)
  else
    local ok, map, order = pcall(M.parse_hosts, cfg.velocloud_hosts, cfg.velocloud_hosts_filter)
    if not ok then error("Error loading velocloud hosts and filters: " .. tostring(map), 0) end
    cfg.filter, cfg.hosts = map, order
  end
  cfg.filter = json.object(cfg.filter) -- {} stays an object on the wire
  cfg.blacklisted_edges = cfg.blacklisted_edges or M.BLACKLIST
  if type(ucfg.triage_velo_hosts) == "table" then
    cfg.triage_velo_hosts = ucfg.triage_velo_hosts
  elseif cfg.triage_velo_hosts then
    local list = {}
    for h in cfg.triage_velo_hosts:gsub("%s", ""):gmatch("[^:,]+") do list[#list + 1] = h end
    cfg.triage_velo_hosts = list
  else
    cfg.triage_velo_hosts = M.TRIAGE_HOSTS
  end
  for _, key in ipairs({ "outage_interval", "triage_interval", "autoresolve_semaphore", "triage_semaphore",
    "event_limit", "note_page_size" }) do
    if cfg[key] <= 0 then error(string.format("bad %s: must be > 0", key), 0) end
  end
  cfg.nats_retry = { multiplier = cfg.nats_retry_multiplier, min = cfg.nats_retry_min,
    stop_delay = cfg.nats_retry_stop_delay }
  return cfg
end

return M
