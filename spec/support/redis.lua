-- A throwaway Debian redis-server for the specs: a temp dir, a free loopback port, no
-- persistence; stopped (or killed) by pid. restart() brings it back on the same port.
--
--   local Redis = require "spec.support.redis"
--   local r = Redis.start({ password = "...", tls = { cert = pem, key = pem, ca = pem } })  -- r.port, r.pid
--   (with tls, the one port speaks TLS only)
--   r:stop()                                        -- always, e.g. in teardown()
local socket = require "socket"
local Nginx = require "spec.support.nginx"

local M = {}
M.__index = M

local q = Nginx.q

local function alive(pid)
  local stat = Nginx.read_file(string.format("/proc/%d/stat", pid))
  return stat ~= nil and not stat:match("^%d+ %b() Z")
end

function M:_launch()
  local conf = {
    "bind 127.0.0.1", self.tls and "port 0" or ("port " .. self.port), "save ''", "appendonly no", "daemonize yes",
    "dir " .. self.dir, "pidfile " .. self.dir .. "/redis.pid", "logfile " .. self.dir .. "/redis.log",
    "protected-mode yes",
  }
  if self.password then conf[#conf + 1] = "requirepass " .. self.password end
  if self.tls then
    for _, line in ipairs({ "tls-port " .. self.port, "tls-cert-file " .. self.tls.cert,
      "tls-key-file " .. self.tls.key, "tls-ca-cert-file " .. self.tls.ca, "tls-auth-clients no" }) do
      conf[#conf + 1] = line
    end
  end
  local f = assert(io.open(self.dir .. "/redis.conf", "w"))
  f:write(table.concat(conf, "\n"), "\n")
  f:close()
  os.remove(self.dir .. "/redis.pid")
  assert(Nginx.run(Nginx.CLEAN_ENV .. "redis-server " .. q(self.dir .. "/redis.conf") .. " >/dev/null 2>&1"),
    "redis-server failed to start")
  local deadline = socket.gettime() + 5
  while true do
    self.pid = tonumber(Nginx.read_file(self.dir .. "/redis.pid") or "")
    local s = socket.tcp()
    s:settimeout(0.2)
    local ok = self.pid and s:connect("127.0.0.1", self.port)
    s:close()
    if ok then break end
    if socket.gettime() > deadline then
      error("redis-server does not answer:\n" .. Nginx.tail(Nginx.read_file(self.dir .. "/redis.log"), 10))
    end
    socket.sleep(0.02)
  end
  Nginx.watchdog(self.dir, self.pid)
end

function M.start(opts)
  opts = opts or {}
  local self = setmetatable({ password = opts.password, tls = opts.tls }, M)
  self.dir = Nginx.mktemp_dir("redis")
  self.port = Nginx.free_ports(1)[1]
  self:_launch()
  return self
end

-- kill(signal): stops the server by pid and waits until it is gone; the dir stays for restart()
function M:kill(signal)
  if self.pid and alive(self.pid) then
    Nginx.run(string.format("kill -%s %d 2>/dev/null", signal or "TERM", self.pid))
    local deadline = socket.gettime() + 5
    while alive(self.pid) and socket.gettime() < deadline do socket.sleep(0.01) end
  end
end

function M:restart()
  self:_launch()
end

function M:stop()
  if self.stopped then return end
  self.stopped = true
  self:kill("TERM")
  Nginx.run("rm -rf " .. q(self.dir))
end

return M
