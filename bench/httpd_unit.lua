-- bench/httpd_unit.lua: the aengine side of bench/httpd_bench.sh, one Lua
-- route answering the same JSON body as bench/evhttp_raw.c.
local httpd = require "ae.httpd"
httpd.route("GET", "/hello", function()
  return { headers = { ["Content-Type"] = "application/json" }, body = '{"hello":"world"}' }
end)
httpd.route("GET", "/hello-json", function()
  return { json = { hello = "world" } }
end)
