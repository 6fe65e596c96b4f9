-- Child Lua processes for the specs: the same interpreter and paths as the spec run, started in
-- the background, waited for or killed by pid.
local socket = require "socket"
local Nginx = require "spec.support.nginx"

local M = {}

M.LUA = rawget(_G, "jit") and "luajit" or "lua5.4"
local CPATH = rawget(_G, "jit") and "build/5.1/?.so" or "build/5.4/?.so"
local ROOT = Nginx.repo_root()

local function prelude()
  return string.format("package.path = %q .. package.path\npackage.cpath = %q .. package.cpath\n",
    ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;" .. ROOT .. "/?.lua;", ROOT .. "/" .. CPATH .. ";")
end

-- spawn(code) -> {pid, out}: runs code in the background; out is the path of its stdout+stderr
function M.spawn(code)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(prelude(), code)
  f:close()
  local out = script .. ".out"
  local p = assert(io.popen(string.format("%s%s %s >%s 2>&1 & echo $!", Nginx.CLEAN_ENV, M.LUA,
    Nginx.q(script), Nginx.q(out))))
  local pid = tonumber(p:read("*l"))
  p:close()
  return { pid = pid, out = out, script = script }
end

function M.alive(child)
  local stat = Nginx.read_file(string.format("/proc/%d/stat", child.pid))
  return stat ~= nil and not stat:match("^%d+ %b() Z")
end

-- wait(child[, seconds]) -> its output once it has exited (raises after `seconds`, default 30)
function M.wait(child, seconds)
  local deadline = socket.gettime() + (seconds or 30)
  while M.alive(child) do
    if socket.gettime() > deadline then error("child " .. child.pid .. " still running") end
    socket.sleep(0.02)
  end
  local out = Nginx.read_file(child.out) or ""
  os.remove(child.out)
  os.remove(child.script)
  return out
end

function M.kill(child, signal)
  Nginx.run(string.format("kill -%s %d 2>/dev/null", signal or "KILL", child.pid))
end

-- waits until path exists (a child's "ready" mark)
function M.wait_file(path, seconds)
  local deadline = socket.gettime() + (seconds or 10)
  while not Nginx.read_file(path) do
    if socket.gettime() > deadline then error("no " .. path) end
    socket.sleep(0.01)
  end
end

return M
