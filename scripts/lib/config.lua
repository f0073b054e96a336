--- lib.config: a unit's settings, read the way every capability reads them:
-- the key in the unit's config table first, then an environment variable (the
-- original service's name for it; an empty variable counts as unset), then a
-- default. Bad values raise an error naming the unit and the key, so a unit
-- with a broken configuration fails to start with a clear message.
--
--   local settings = require("lib.config").new("digi_bridge")  -- reads unit.config
--   local config = {
--     base_url = settings:get("base_url", "DIGI_BASE_URL"),          -- nil when unset
--     timeout = settings:number("timeout", "DIGI_TIMEOUT", 60, "positive"),
--     verify = settings:flag("verify", "DIGI_VERIFY_TLS", false),
--   }
--   settings:require(config, { "base_url" })
local unit = require "ae.unit"

local M = {}

local Settings = {}
Settings.__index = Settings

--- new(name [, tbl]) -> settings over tbl (default: the unit's config table);
-- name starts every error message.
function M.new(name, tbl)
  return setmetatable({ name = name, tbl = tbl or unit.config or {}, env = {} }, Settings)
end

--- settings:get(key, env, default) -> the value as given (a config value of
-- any type, or the variable's string), or default.
function Settings:get(key, env, default)
  local v = self.tbl[key]
  if v == nil and env then
    v = os.getenv(env)
    if v == "" then v = nil end
    if v ~= nil then self.env[key] = env end
  end
  if v == nil then return default end
  return v
end

local function where(self, key)
  if self.env[key] then return key .. " (" .. self.env[key] .. ")" end
  return key
end

local TRUE = { ["1"] = true, ["true"] = true, yes = true, on = true }
local FALSE = { ["0"] = true, ["false"] = true, no = true, off = true }

--- settings:flag(key, env, default) -> boolean: true/false, or one of
-- 1/true/yes/on and 0/false/no/off in any case; anything else is an error.
function Settings:flag(key, env, default)
  local v = self:get(key, env, nil)
  if v == nil then return default end
  if type(v) == "boolean" then return v end
  local s = tostring(v):lower()
  if TRUE[s] then return true end
  if FALSE[s] then return false end
  error(string.format("%s: %s must be true or false, got '%s'", self.name, where(self, key), tostring(v)), 0)
end

--- settings:number(key, env, default [, sign]) -> number; sign "positive"
-- (> 0) or "non-negative" (>= 0) adds a range check. The default is returned
-- unchecked.
function Settings:number(key, env, default, sign)
  local v = self:get(key, env, nil)
  if v == nil then return default end
  local n = tonumber(v)
  local bad = not n or n ~= n or (sign == "positive" and n <= 0) or (sign == "non-negative" and n < 0)
  if bad then
    error(string.format("%s: %s must be a %snumber, got '%s'", self.name, where(self, key),
      sign and (sign .. " ") or "", tostring(v)), 0)
  end
  return n
end

--- settings:require(config, keys [, envs]): an error naming the first key
-- whose value in config is nil or "" (and its variable, envs[key], if given).
function Settings:require(config, keys, envs)
  for _, k in ipairs(keys) do
    if config[k] == nil or config[k] == "" then
      local env = envs and envs[k]
      error(string.format("%s: %s is not configured (config key %s%s)", self.name, k, k,
        env and (" or variable " .. env) or ""), 0)
    end
  end
end

return M
