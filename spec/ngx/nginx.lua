-- A throwaway Debian nginx for the specs in spec/ngx/: a config rendered into a temp prefix,
-- started as a daemon without a master process, stopped by pid. Lua 5.4 or LuaJIT with lua-socket.
local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"

local M = {}
M.__index = M

local NGINX = os.getenv("NGINX") or "nginx"

function M.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
local q = M.q

local function run(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
local read_file = M.read_file

local function write_file(path, text)
  local f = assert(io.open(path, "wb"))
  assert(f:write(text))
  f:close()
end

-- the checkout the specs run from: <root>/spec/ngx/nginx.lua
function M.repo_root()
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  local dir = src:match("^(.*)/spec/ngx/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then
    local p = assert(io.popen("pwd"))
    local cwd = p:read("*l")
    p:close()
    dir = (dir == "." and cwd) or (cwd .. "/" .. dir)
  end
  return dir
end

function M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local function alive(pid)
  local stat = pid and read_file(string.format("/proc/%d/stat", pid))
  return stat ~= nil and not stat:match("^%d+ %b() Z")
end

-- start(template, vars, env): ${NAME} in template from vars (PREFIX and PORT are added);
-- env = {NAME = value} for the nginx process. Raises with the error log on failure.
function M.start(template, vars, env)
  local self = setmetatable({}, M)
  local p = assert(io.popen("mktemp -d /tmp/lua-instagram-ngx.XXXXXX"))
  self.prefix = p:read("*l")
  p:close()
  assert(self.prefix and self.prefix ~= "", "mktemp failed")
  run("mkdir -p " .. q(self.prefix .. "/logs") .. " " .. q(self.prefix .. "/tmp"))
  run("chmod 755 " .. q(self.prefix))
  self.port = M.free_port()
  local all = { PREFIX = self.prefix, PORT = self.port, LISTEN = "127.0.0.1:" .. self.port }
  for k, v in pairs(vars or {}) do all[k] = v end
  local conf = template:gsub("%${([%w_]+)}", function(k)
    return tostring(assert(all[k], "no value for ${" .. k .. "}"))
  end)
  local conf_path = self.prefix .. "/nginx.conf"
  write_file(conf_path, conf)
  self.error_log = self.prefix .. "/logs/error.log"
  local envs = {}
  for k, v in pairs(env or {}) do envs[#envs + 1] = k .. "=" .. q(v) end
  local started = run(string.format("env %s %s -p %s -c %s -e %s -g %s >%s 2>&1", table.concat(envs, " "),
    NGINX, q(self.prefix), q(conf_path), q(self.error_log), q("daemon on; master_process off;"),
    q(self.prefix .. "/logs/startup.log")))
  self.pid = tonumber(read_file(self.prefix .. "/nginx.pid") or "")
  if not (started and self.pid) then
    local log = (read_file(self.prefix .. "/logs/startup.log") or "") .. (read_file(self.error_log) or "")
    self:stop()
    error("nginx did not start:\n" .. log, 2)
  end
  self.base = "http://127.0.0.1:" .. self.port
  local deadline = socket.gettime() + 5
  repeat
    local s = socket.tcp()
    s:settimeout(0.2)
    local connected = s:connect("127.0.0.1", self.port)
    s:close()
    if connected then return self end
    socket.sleep(0.01)
  until socket.gettime() > deadline
  self:stop()
  error("nginx does not answer on port " .. self.port, 2)
end

function M:log_tail()
  return read_file(self.error_log) or ""
end

-- GET path (no redirects followed) -> status, headers, body
function M:get(path, headers)
  local chunks = {}
  local ok, status, h = http.request({
    url = self.base .. path, headers = headers, redirect = false,
    sink = ltn12.sink.table(chunks),
    create = function()
      local s = socket.tcp()
      s:settimeout(30)
      return s
    end,
  })
  assert(ok, "request to nginx failed: " .. tostring(status))
  return status, h or {}, table.concat(chunks)
end

-- stops nginx by its pid and removes the prefix; safe to call twice
function M:stop()
  local pid = self.pid
  if alive(pid) then
    run(string.format("kill -TERM %d 2>/dev/null", pid))
    local deadline = socket.gettime() + 3
    while alive(pid) and socket.gettime() < deadline do socket.sleep(0.01) end
    if alive(pid) then run(string.format("kill -KILL %d 2>/dev/null", pid)) end
  end
  self.pid = nil
  if self.prefix then run("rm -rf " .. q(self.prefix)) end
  self.prefix = nil
end

return M
