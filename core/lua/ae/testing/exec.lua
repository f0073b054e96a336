--- aengine exec FILE.lua [args]: run one script as a task and exit with its
-- outcome (0 when it returned, 1 when it raised) once it is done.
return function(_config, path, ...)
  local engine = require "ae.engine"
  os.exit = engine.exit -- luacheck: ignore 122
  -- the script sees the usual `arg`: arg[0] its path, arg[1..] its arguments
  _G.arg = table.pack(...)
  _G.arg[0], _G.arg.n = path, nil
  local chunk, err = loadfile(path)
  if not chunk then
    io.stderr:write(err, "\n")
    engine.exit(2)
  end
  local ok, e = xpcall(chunk, debug.traceback, ...)
  if not ok then
    io.stderr:write(tostring(e), "\n")
    engine.exit(1)
  end
  engine.exit(0)
end
