--- usecases.outage.fake_bus: in-process stand-ins for the lib clients that
-- service-outage-monitor uses (bruin, velocloud, customer_cache, digi,
-- notify), for the fast specs: every call is recorded, every answer is
-- scripted. Not used by the unit itself.
--
--   local bus = require("usecases.outage.fake_bus").new()
--   bus:on("links", function(args) return {status = 200, body = {...}} end)
--   bus:on("create", {status = 471, body = 5262293})      -- same reply every time
--   bus:on("reboot", {{status = 200}, {status = 400, body = "x"}})  -- in sequence
--   local repo = require("usecases.outage.repo").new(cfg, bus.clients)
--   ... bus:calls("note") -> list of recorded args; bus.slack -> list of texts
local json = require "ae.json"

local M = {}

local Bus = {}
Bus.__index = Bus

-- A reply as a lib client returns it; `timeout` makes the 503 substitute.
local function reply_of(r)
  if r == "timeout" then
    return { status = 503, body = json.null, error = "ae.nats: request failed after 5 attempt(s): timeout after 30 s" }
  end
  if r.status and r.body == nil then r.body = json.null end
  if r.request_id == nil then r.request_id = "fake" end
  return r
end

function Bus:on(name, answer)
  self.answers[name] = answer
  self.seq[name] = 0
end

function Bus:answer(name, args)
  self.log[#self.log + 1] = { name = name, args = args }
  local list = self.by_name[name] or {}
  self.by_name[name] = list
  list[#list + 1] = args
  local a = self.answers[name]
  if a == nil then return reply_of({ status = 200, body = self.defaults[name] }) end
  if type(a) == "function" then return reply_of(a(args, #list)) end
  if type(a) == "table" and a[1] ~= nil and a.status == nil then
    self.seq[name] = self.seq[name] + 1
    return reply_of(a[math.min(self.seq[name], #a)])
  end
  return reply_of(a)
end

function Bus:calls(name)
  return self.by_name[name] or {}
end

function Bus:names()
  local out = {}
  for i, c in ipairs(self.log) do out[i] = c.name end
  return out
end

function M.new()
  local self = setmetatable({ answers = {}, seq = {}, log = {}, by_name = {}, slack = {},
    defaults = { links = {}, events = {}, tickets = {}, details = { ticketDetails = {}, ticketNotes = {} },
      cache = {}, note = "Note appended with success", resolve = "ok", open = "ok", create = 1, change_work = "Success",
      reboot = "Success" } }, Bus)
  local function c(name, pick)
    return function(...)
      return self:answer(name, pick(...))
    end
  end
  self.clients = {
    bruin = {
      open_tickets = c("tickets", function(a) return a end),
      ticket_details = c("details", function(t) return { ticket_id = t } end),
      append_note = c("note", function(t, note, o)
        return { ticket_id = t, note = note, service_numbers = o and o.service_numbers }
      end),
      resolve_ticket = c("resolve", function(t, d) return { ticket_id = t, detail_id = d } end),
      open_ticket = c("open", function(t, d) return { ticket_id = t, detail_id = d } end),
      create_outage_ticket = c("create", function(cl, sn) return { client_id = cl, service_number = sn } end),
      change_work = c("change_work", function(a) return a end),
    },
    velocloud = {
      links_with_edge_info = c("links", function(a) return a end),
      edge_events = c("events", function(a) return a end),
    },
    -- lib.customer_cache words its own Slack texts (202 and transport failure)
    customer_cache = {
      get = function(a)
        local r = self:answer("cache", a)
        if r.status == 202 then self.clients.notify.slack(tostring(r.body)) end
        if r.error then self.clients.notify.slack("An error occurred when requesting customer cache -> " .. r.error) end
        return r
      end,
    },
    digi = { reboot = c("reboot", function(a) return a end) },
    notify = {
      slack = function(text)
        self.slack[#self.slack + 1] = text
        self.log[#self.log + 1] = { name = "slack", args = text }
        return true
      end,
    },
  }
  return self
end

return M
