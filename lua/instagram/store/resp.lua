-- A small blocking Redis client (RESP2) on LuaSocket, with LuaSec for TLS: the Redis store's
-- connection outside nginx. Debian's lua-redis is packaged for Lua 5.1-5.3 only, so this keeps
-- one client for Lua 5.4 and LuaJIT alike. Its calls mirror resty.redis (used inside nginx):
-- conn:<command>(...) -> reply, or false, redis_error, or nil, network_error; a nil bulk is NULL.
local socket = require "socket"

local M = { NULL = setmetatable({}, { __tostring = function() return "null" end }) }

local Conn = {}

local function command(self, ...)
  local n = select("#", ...)
  local parts = { "*" .. n .. "\r\n" }
  for i = 1, n do
    local arg = tostring((select(i, ...)))
    parts[#parts + 1] = "$" .. #arg .. "\r\n" .. arg .. "\r\n"
  end
  local sock = rawget(self, "sock")
  if not sock then return nil, "closed" end
  local ok, err = sock:send(table.concat(parts))
  if not ok then return nil, err end
  return self:read_reply()
end

local MAX_DEPTH = 8

local function read_reply(sock, depth)
  local line, err = sock:receive("*l")
  if not line then return nil, err end
  local prefix, rest = line:sub(1, 1), line:sub(2)
  if prefix == "+" then
    return rest
  elseif prefix == "-" then
    return false, rest
  elseif prefix == ":" then
    return tonumber(rest)
  elseif prefix == "$" then
    local len = tonumber(rest)
    if not len then return nil, "bad bulk length" end
    if len < 0 then return M.NULL end
    local data
    data, err = sock:receive(len + 2)
    if not data then return nil, err end
    return data:sub(1, len)
  elseif prefix == "*" then
    local count = tonumber(rest)
    if not count then return nil, "bad array length" end
    if count < 0 then return M.NULL end
    if depth >= MAX_DEPTH then return nil, "reply nested too deep" end
    local out = {}
    for i = 1, count do
      local v, e = read_reply(sock, depth + 1)
      if v == nil then return nil, e end
      if v == false then v = M.NULL end
      out[i] = v
    end
    return out
  end
  return nil, "unknown reply type"
end

function Conn:read_reply()
  local sock = rawget(self, "sock")
  if not sock then return nil, "closed" end
  return read_reply(sock, 0)
end

function Conn:close()
  local sock = rawget(self, "sock")
  if sock then sock:close() end
  rawset(self, "sock", false)
  return true
end

Conn.__index = function(_, name)
  if Conn[name] then return Conn[name] end
  local cmd = name:upper()
  return function(self, ...) return command(self, cmd, ...) end
end

-- connect{host, port, connect_timeout, read_timeout (seconds), ssl, ssl_verify, server_name, ca_file}
function M.connect(opts)
  local sock = socket.tcp()
  sock:settimeout(opts.connect_timeout)
  local ok, err = sock:connect(opts.host, opts.port)
  if not ok then
    sock:close()
    return nil, err
  end
  if opts.ssl then
    local has_ssl, ssl = pcall(require, "ssl")
    if not has_ssl then
      sock:close()
      return nil, "ssl = true needs LuaSec (Debian: lua-sec)"
    end
    local params = {
      mode = "client", protocol = "any", options = { "all", "no_sslv2", "no_sslv3", "no_tlsv1", "no_tlsv1_1" },
      verify = opts.ssl_verify and { "peer", "fail_if_no_peer_cert" } or "none",
      cafile = opts.ca_file, capath = not opts.ca_file and "/etc/ssl/certs" or nil,
    }
    local wrapped
    wrapped, err = ssl.wrap(sock, params)
    if not wrapped then
      sock:close()
      return nil, err
    end
    sock = wrapped
    sock:sni(opts.server_name or opts.host)
    sock:settimeout(opts.connect_timeout)
    ok, err = sock:dohandshake()
    if not ok then
      sock:close()
      return nil, "TLS handshake failed: " .. tostring(err)
    end
    if opts.ssl_verify then
      local cert = sock:getpeercertificate()
      local name = opts.server_name or opts.host
      local matched = false
      for _, ext in pairs(cert and cert:extensions() or {}) do
        for kind, values in pairs(type(ext) == "table" and ext or {}) do
          if kind == "dNSName" or kind == "iPAddress" then
            for _, v in ipairs(values) do matched = matched or v == name end
          end
        end
      end
      if not matched then
        sock:close()
        return nil, "TLS certificate does not name " .. name
      end
    end
  end
  sock:settimeout(opts.read_timeout)
  return setmetatable({ sock = sock }, Conn)
end

return M
