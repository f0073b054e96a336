-- aengine sandbox: every vendor simulator and every capability on one engine,
-- the capabilities pointed at the simulators of this same engine (see
-- docs/sandbox.md). Run it with nats + redis up (tools/run.sh does that):
--
--   AE_CONFIG_FILE=config/sandbox.lua tools/run.sh
--
-- Simulators mount on the main HTTP server under /sim/<vendor>, so the base
-- URLs are built from the listen address; it must be a concrete port (not 0).
-- Knobs (environment): AE_HTTP_LISTEN (127.0.0.1:5000), SANDBOX_EDGES (fleet
-- size, 200), SANDBOX_SEED (1), SANDBOX_SMTP_PORT (the SMTP sink,
-- scripts/sandbox/smtp_sink.py, 2525), REDIS_CUSTOMER_CACHE_HOSTNAME (else db 1
-- of the main redis), SANDBOX_REFRESH_MINUTES (customer-cache, 10), SANDBOX_FLAP_INTERVAL (VeloCloud
-- edges flap, 120 s), SANDBOX_OUTAGE_INTERVAL / SANDBOX_QUARANTINE / SANDBOX_TRIAGE_INTERVAL
-- (service-outage-monitor: 60 / 20 / 60 s).
local listen = os.getenv("AE_HTTP_LISTEN") or "127.0.0.1:5000"
local host, port = listen:match("^%[?([^%]]*)%]?:(%d+)$")
assert(host and port and port ~= "0", "config/sandbox.lua: AE_HTTP_LISTEN must be host:port with a real port, got "
  .. listen)
if host == "0.0.0.0" or host == "" then host = "127.0.0.1" end
if host == "::" then host = "[::1]" elseif host:find(":") then host = "[" .. host .. "]" end
local base = "http://" .. host .. ":" .. port .. "/sim/"

local fleet = { edges = tonumber(os.getenv("SANDBOX_EDGES")) or 200, seed = tonumber(os.getenv("SANDBOX_SEED")) or 1 }
local hosts = { "mettel.velocloud.net", "metvco02.mettel.net", "metvco03.mettel.net", "metvco04.mettel.net" }
local main_redis = os.getenv("REDIS_HOSTNAME") or "127.0.0.1:6379"
local cache_redis = os.getenv("REDIS_CUSTOMER_CACHE_HOSTNAME")

-- sandbox credentials: not secrets, the simulators accept exactly these
local BRUIN = { id = "sim-client", secret = "sim-secret" }
local VCO = { user = "sandbox@mettel.net", password = "sandbox-password" }
local DIGI = { id = "digi-client", secret = "digi-secret" }
local TELESTAX = { sid = "ACCOUNT_SID", token = "AUTH_TOKEN" }

local credentials = {}
for i, h in ipairs(hosts) do credentials[i] = h .. "+" .. VCO.user .. "+" .. VCO.password end

local units = {
  -- simulators (scripts/sandbox/), all seeded with the same fleet
  { name = "bruin_sim", script = "scripts/sandbox/bruin_sim.lua",
    config = { client_id = BRUIN.id, client_secret = BRUIN.secret, fleet = fleet } },
  { name = "velocloud_sim", script = "scripts/sandbox/velocloud_sim.lua",
    config = { username = VCO.user, password = VCO.password, fleet = fleet,
      flap_interval = tonumber(os.getenv("SANDBOX_FLAP_INTERVAL")) or 120, flap_fraction = 0.05, down_for = 150 } },
  { name = "digi_sim", script = "scripts/sandbox/digi_sim.lua",
    config = { client_id = DIGI.id, client_secret = DIGI.secret, fleet = fleet } },
  { name = "slack_sim", script = "scripts/sandbox/slack_sim.lua", config = {} },
  { name = "telestax_sim", script = "scripts/sandbox/telestax_sim.lua",
    config = { account_sid = TELESTAX.sid, auth_token = TELESTAX.token } },

  -- capabilities (scripts/capabilities/), pointed at the simulators above
  { name = "bruin_bridge", script = "scripts/capabilities/bruin_bridge.lua",
    config = { base_url = base .. "bruin", login_url = base .. "bruin", client_id = BRUIN.id,
      client_secret = BRUIN.secret, environment = "sandbox", timeout = 30 } },
  { name = "velocloud_bridge", script = "scripts/capabilities/velocloud_bridge.lua",
    config = { credentials = table.concat(credentials, ";"), url_template = base .. "velocloud/{host}",
      verify_ssl = false, timeout = 30, login_retry_min = 5, login_retry_max = 60 } },
  { name = "notifier", script = "scripts/capabilities/notifier.lua",
    config = { slack_url = base .. "slack/services/T0SANDBOX/B0SANDBOX/sandbox", slack_allow_http = true,
      smtp_host = "127.0.0.1", smtp_port = tonumber(os.getenv("SANDBOX_SMTP_PORT")) or 2525,
      smtp_starttls = false, smtp_verify = false, sender_email = "automation@sandbox.local",
      telestax_url = base .. "telestax/restcomm/2012-04-24/Accounts/" .. TELESTAX.sid .. "/SMS/Messages.json",
      telestax_account_sid = TELESTAX.sid, telestax_auth_token = TELESTAX.token,
      telestax_from_phone_number = "+15550000000", telestax_verify = false, telestax_wait_fixed = 2 } },
  { name = "digi_bridge", script = "scripts/capabilities/digi_bridge.lua",
    config = { base_url = base .. "digi", client_id = DIGI.id, client_secret = DIGI.secret, hosts = {},
      environment = "sandbox", timeout = 30 } },
  { name = "customer_cache", script = "scripts/capabilities/customer_cache.lua",
    config = { hosts = hosts, velo_servers = hosts, environment = "sandbox",
      refresh_map_minutes = tonumber(os.getenv("SANDBOX_REFRESH_MINUTES")) or 10,
      retry_wait_min = 20, retry_wait_max = 40, semaphore = 10, links_timeout = 20, enterprise_timeout = 20 } },

  -- use cases (scripts/usecases/): service-outage-monitor in both modes, demo intervals, production so tickets
  -- are really created, reopened, noted and resolved in the simulated Bruin
  { name = "service_outage_monitor", script = "scripts/usecases/service_outage_monitor.lua",
    config = { triage = 0, environment = "production", environment_name = "sandbox",
      velocloud_hosts = table.concat(hosts, ":"), velocloud_hosts_filter = "[]:[]:[]:[]",
      outage_interval = tonumber(os.getenv("SANDBOX_OUTAGE_INTERVAL")) or 60,
      quarantine = tonumber(os.getenv("SANDBOX_QUARANTINE")) or 20 } },
  { name = "service_outage_triage", script = "scripts/usecases/service_outage_monitor.lua",
    config = { triage = 1, environment = "production", environment_name = "sandbox",
      triage_interval = tonumber(os.getenv("SANDBOX_TRIAGE_INTERVAL")) or 60 } },
}

-- only the units whose scripts exist (the sandbox grows with the tree)
local present = {}
for _, u in ipairs(units) do
  local f = io.open(u.script, "r")
  if f then
    f:close()
    present[#present + 1] = u
  end
end

return {
  scripts = "scripts",
  shutdown_deadline = 10,
  log = { level = os.getenv("AE_LOG_LEVEL") or "INFO" },
  http = { listen = listen },
  console = { socket = os.getenv("AE_CONSOLE_SOCKET") or "build/run/aengine-sandbox.sock" },
  redis = {
    main = main_redis,
    customer_cache = cache_redis and { url = cache_redis } or { url = main_redis, db = 1 },
  },
  defaults = { memory_limit_mb = 1024, instruction_budget = 1e9 },
  units = present,
}
