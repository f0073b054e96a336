--- spec.helpers.sandbox: start vendor simulators and capability units on the
-- spec's engine, wired to each other as config/sandbox.lua does.
--
--   local sandbox = require "spec.helpers.sandbox"
--   local env = sandbox.start{sims = {"bruin", "velocloud"},
--                             capabilities = {"bruin_bridge", "velocloud_bridge"},
--                             fleet = {edges = 50}, config = {velocloud_bridge = {timeout = 5}}}
--   env.base.bruin                       --> "http://127.0.0.1:PORT/sim/bruin"
--   env.calls("bruin", "^/api/Ticket")   --> recorded calls (list, oldest first)
--   env.fault("velocloud", {path = "getEnterpriseEdges", status = 500, times = 1})
--   env.clear("bruin")                   -- forget calls and faults
--   sandbox.stop(env)
--
-- Units are started with ae.engine.start_unit under their own names
-- (bruin_sim, velocloud_bridge, ...); `config[name]` overrides keys of a
-- unit's default config table. The customer-cache Redis is db 6 of the test
-- redis (AE_TEST_REDIS_URL) unless config.customer_cache.redis says otherwise.
local engine = require "ae.engine"
local httpd = require "ae.httpd"
local http = require "ae.http"

local M = {}

M.HOSTS = { "mettel.velocloud.net", "metvco02.mettel.net", "metvco03.mettel.net", "metvco04.mettel.net" }
M.BRUIN = { client_id = "sim-client", client_secret = "sim-secret" }
M.VELOCLOUD = { username = "sandbox@mettel.net", password = "sandbox-password" }
M.DIGI = { client_id = "digi-client", client_secret = "digi-secret" }
M.TELESTAX = { account_sid = "ACCOUNT_SID", auth_token = "AUTH_TOKEN" }
M.SLACK_WEBHOOK = "/services/T0SANDBOX/B0SANDBOX/sandbox"

-- the default config table of every unit, given the simulators' base URL
local function defaults(base, fleet, opts)
  local creds = {}
  for i, h in ipairs(M.HOSTS) do creds[i] = h .. "+" .. M.VELOCLOUD.username .. "+" .. M.VELOCLOUD.password end
  local redis_url = os.getenv("AE_TEST_REDIS_URL") or "redis://127.0.0.1:6379"
  return {
    bruin_sim = { client_id = M.BRUIN.client_id, client_secret = M.BRUIN.client_secret, fleet = fleet },
    velocloud_sim = { username = M.VELOCLOUD.username, password = M.VELOCLOUD.password, fleet = fleet,
      flap_interval = 0 },
    digi_sim = { client_id = M.DIGI.client_id, client_secret = M.DIGI.client_secret, fleet = fleet },
    slack_sim = {},
    telestax_sim = { account_sid = M.TELESTAX.account_sid, auth_token = M.TELESTAX.auth_token },
    bruin_bridge = { base_url = base .. "bruin", login_url = base .. "bruin", client_id = M.BRUIN.client_id,
      client_secret = M.BRUIN.client_secret, environment = "test", timeout = 30 },
    velocloud_bridge = { credentials = table.concat(creds, ";"), url_template = base .. "velocloud/{host}",
      verify_ssl = false, timeout = 30 },
    notifier = { slack_url = base .. "slack" .. M.SLACK_WEBHOOK, slack_allow_http = true,
      smtp_host = "127.0.0.1", smtp_port = opts.smtp_port or 2525, smtp_starttls = false, smtp_verify = false,
      telestax_url = base .. "telestax/restcomm/2012-04-24/Accounts/" .. M.TELESTAX.account_sid ..
        "/SMS/Messages.json",
      telestax_account_sid = M.TELESTAX.account_sid, telestax_auth_token = M.TELESTAX.auth_token,
      telestax_from_phone_number = "+15550000000", telestax_verify = false, dedup = false },
    digi_bridge = { base_url = base .. "digi", client_id = M.DIGI.client_id, client_secret = M.DIGI.client_secret,
      hosts = {}, environment = "test", timeout = 30 },
    customer_cache = { hosts = M.HOSTS, velo_servers = M.HOSTS, environment = "test",
      redis = { url = redis_url .. "/6", name = "customer_cache" } },
  }
end

local function merge(into, over)
  for k, v in pairs(over or {}) do into[k] = v end
  return into
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

--- start(opts) -> env. Raises (after stopping what it started) when a unit
-- does not start.
function M.start(opts)
  opts = opts or {}
  local addr = assert(httpd.start("127.0.0.1:0"))
  local base = "http://" .. addr .. "/sim/"
  local fleet = opts.fleet or { edges = 40, seed = 1 }
  local cfgs = defaults(base, fleet, opts)
  local env = { address = addr, base = {}, units = {}, fleet = fleet }
  local list = {}
  for _, s in ipairs(opts.sims or {}) do
    list[#list + 1] = { name = s .. "_sim", script = "scripts/sandbox/" .. s .. "_sim.lua" }
    env.base[s] = base .. s
  end
  for _, c in ipairs(opts.capabilities or {}) do
    list[#list + 1] = { name = c, script = "scripts/capabilities/" .. c .. ".lua" }
  end
  for _, u in ipairs(list) do
    if not exists(u.script) then
      M.stop(env)
      error("spec.helpers.sandbox: " .. u.script .. " does not exist", 2)
    end
    local config = merge(merge({}, cfgs[u.name]), (opts.config or {})[u.name])
    local ok, msg = engine.start_unit { name = u.name, script = u.script, config = config }
    if not ok then
      M.stop(env)
      error("spec.helpers.sandbox: unit " .. u.name .. " did not start: " .. tostring(msg), 2)
    end
    env.units[#env.units + 1] = u.name
  end

  --- env.calls(vendor [, path_pattern [, since]]) -> list of recorded calls
  function env.calls(vendor, pattern, since)
    local res, err = http.get(base .. vendor .. "/_calls", { query = { path = pattern, since = since } })
    assert(res, err)
    assert(res.status == 200, "sandbox: GET _calls of " .. vendor .. " answered " .. tostring(res.status))
    return assert(res:json())
  end

  --- env.fault(vendor, spec): inject a fault (sandbox/sim.lua fields)
  function env.fault(vendor, spec)
    local res, err = http.post(base .. vendor .. "/_faults", { json = spec })
    assert(res, err)
    assert(res.status == 201, "sandbox: POST _faults of " .. vendor .. " answered " .. tostring(res.status))
    return true
  end

  --- env.clear(vendor): forget recorded calls and faults
  function env.clear(vendor)
    assert(http.delete(base .. vendor .. "/_calls"))
    assert(http.delete(base .. vendor .. "/_faults"))
  end

  --- env.get(vendor, control_path) -> decoded JSON of a simulator control route
  function env.get(vendor, path)
    local res, err = http.get(base .. vendor .. path)
    assert(res, err)
    return res:json()
  end

  return env
end

--- stop(env): stop every unit start() started, last first.
function M.stop(env)
  if not env then return end
  for i = #env.units, 1, -1 do engine.stop_unit(env.units[i]) end
  env.units = {}
end

return M
