--- Run aengine as a child process (black-box tests of the CLI and signals).
-- io.popen blocks the loop of the engine running the spec, which is fine for
-- a child that is the thing under test.
local M = {}

M.aengine = os.getenv("AE_TEST_AENGINE") or "build/aengine"

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = shell_quote

--- run(args, env) -> output (stdout+stderr), exit code
function M.run(args, env)
  local parts = {}
  for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. shell_quote(v) end
  parts[#parts + 1] = shell_quote(M.aengine)
  for _, a in ipairs(args) do parts[#parts + 1] = shell_quote(a) end
  local cmd = "env " .. table.concat(parts, " ") .. " 2>&1; echo \"__rc=$?\""
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  return out:gsub("__rc=%d+%s*$", ""), rc
end

--- write(path, text): write a temp script
function M.write(text, suffix)
  local path = os.tmpname() .. (suffix or ".lua")
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

--- exec(source, env) -> output, exit code of `aengine exec` on a temp script holding source
function M.exec(source, env)
  local path = M.write(source)
  local out, rc = M.run({ "exec", path }, env)
  os.remove(path)
  return out, rc
end

--- write_file(path, text): write text to a file at a chosen path
function M.write_file(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

--- read_file(path) -> the file's text, or "" when it does not exist (yet)
function M.read_file(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

--- tmpdir() -> the path of a new empty directory (the caller removes it)
function M.tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. shell_quote(d)))
  return d
end

return M
