--- Runs busted inside the engine: every spec runs in a task, so specs call
-- the real ae.* bindings (they wait, the loop turns) and drive the clock.
return function(_config)
  local engine = require "ae.engine"
  os.exit = engine.exit -- luacheck: ignore 122 -- busted ends with os.exit(code): leave the loop instead
  local ok, err = xpcall(function() require "busted.runner" ({ standalone = false }) end, debug.traceback)
  if not ok then
    io.stderr:write("aengine test: busted failed to run: ", tostring(err), "\n")
    engine.exit(1)
  end
  engine.exit(0)
end
