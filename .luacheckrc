-- luacheck configuration: scripts and specs run on Lua 5.4 inside aengine.
std = "lua54"
max_line_length = 120
codes = true
files["spec/"] = { std = "+busted" }
exclude_files = { "build*/**" }
