-- One transport interface over libcurl, OpenResty cosockets, or a caller's function:
--   t:request(req) -> res | nil, kind, message[, status]
--   t:request_many(reqs, concurrency) -> { res | {error = kind, message = msg[, status]}, ... }
-- (status: for kind "response" when the status line had arrived, e.g. a body over the size cap)
--   t:close()
-- req = {method, url, headers, body, timeout, connect_timeout}; res = {status, headers, body}.
-- With no choice (the default) each request picks its transport from the nginx phase it runs in:
-- cosockets where nginx allows them, libcurl elsewhere (outside nginx, init_by_lua, log_by_lua...).
local getmetatable, rawget = getmetatable, rawget
local M = {}

-- nginx phases (ngx.get_phase()) where cosockets and ngx.sleep may be used: lua-nginx-module's
-- "yieldable" contexts, plus stream-lua's preread
local COSOCKET_PHASES = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true,
}
-- and where they may not; any other phase (a newer module's) is probed with ngx.socket.tcp()
local BLOCKING_PHASES = {
  init = true, init_worker = true, set = true, header_filter = true, body_filter = true, log = true,
  balancer = true, ssl_session_store = true, exit_worker = true,
}

-- true inside an nginx phase where cosockets (and ngx.sleep) may be used
local function in_cosocket_phase()
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or type(ngx.get_phase) ~= "function" then return false end
  local ok, phase = pcall(ngx.get_phase)
  if not ok then return false end
  if COSOCKET_PHASES[phase] then return true end
  if BLOCKING_PHASES[phase] then return false end
  local tcp = type(ngx.socket) == "table" and ngx.socket.tcp
  if type(tcp) ~= "function" then return false end
  local made, sock = pcall(tcp)
  return made and sock ~= nil
end

M.in_cosocket_phase = in_cosocket_phase

-- sleep(seconds): ngx.sleep where nginx allows it (it yields to the event loop), else the C core's
-- blocking sleep (outside nginx, and in nginx phases without ngx.sleep: log, header_filter, ...)
function M.sleep(seconds)
  if in_cosocket_phase() then
    return rawget(_G, "ngx").sleep(seconds)
  end
  return require("instagram.core").sleep(seconds)
end

-- libcurl, one session made on first use
local Curl = {}
Curl.__index = Curl

function Curl:session()
  if not self.sess then
    local core = require "instagram.core"
    self.sess = core.session(self.opts)
  end
  return self.sess
end

function Curl:request(req)
  return (self.sess or self:session()):perform(req)
end

function Curl:request_many(reqs, concurrency)
  return self:session():perform_many(reqs, concurrency)
end

function Curl:close()
  if self.sess then
    self.sess:close()
    self.sess = nil
  end
end

-- a caller's function: transport(req) -> res | nil, errstring
local Func = {}
Func.__index = Func

local function valid_response(res)
  return type(res) == "table" and type(res.status) == "number"
     and res.status % 1 == 0 and res.status >= 100 and res.status <= 999
end

-- a copy of t, one level deep
local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

function Func:request(req)
  -- the caller's function gets a request of its own to change: the client gives one request (and
  -- one headers table) to its usual GETs again
  req = copy(req)
  if type(req.headers) == "table" then req.headers = copy(req.headers) end
  local ok, res, err = pcall(self.fn, req)
  if not ok then
    return nil, "network", "transport function raised an error"
  end
  if res == nil then
    return nil, "network", type(err) == "string" and err or "transport function failed"
  end
  if not valid_response(res) or (res.body ~= nil and type(res.body) ~= "string") then
    return nil, "response", "transport function returned a malformed response"
  end
  local body = res.body or ""
  if #body > self.opts.max_response_bytes then
    return nil, "response", "response body larger than " .. self.opts.max_response_bytes .. " bytes",
      math.floor(res.status)
  end
  local headers = {}
  if type(res.headers) == "table" then
    for k, v in pairs(res.headers) do
      if type(k) == "string" then headers[k:lower()] = tostring(v) end
    end
  end
  return { status = math.floor(res.status), headers = headers, body = body }
end

function Func:request_many(reqs)
  local out = {}
  for i, req in ipairs(reqs) do
    local res, kind, msg, status = self:request(req)
    out[i] = res or { error = kind, message = msg, status = status }
  end
  return out
end

function Func.close() end

-- transport = nil: the choice is made per request, from the phase it runs in. Both transports are
-- made on first need; the libcurl session only when a phase without cosockets makes a request.
local Auto = {}
Auto.__index = Auto

function Auto:pick()
  -- outside nginx there is no ngx table: libcurl, with no phase to ask
  if rawget(_G, "ngx") ~= nil and in_cosocket_phase() then
    if not self.ngx then self.ngx = require("instagram.ngx").new(self.opts) end
    return self.ngx
  end
  if not self.curl then self.curl = setmetatable({ opts = self.opts }, Curl) end
  return self.curl
end

function Auto:request(req)
  return self:pick():request(req)
end

function Auto:request_many(reqs, concurrency)
  return self:pick():request_many(reqs, concurrency)
end

function Auto:close()
  if self.curl then self.curl:close() end
  if self.ngx then self.ngx:close() end
end

-- new(kind_or_fn, opts): opts = {allow_http, ca_file, user_agent, timeout, connect_timeout, max_response_bytes}
function M.new(choice, opts)
  if type(choice) == "function" then
    return setmetatable({ fn = choice, opts = opts }, Func)
  end
  if choice == "ngx" then
    return require("instagram.ngx").new(opts)
  end
  if choice == "curl" then
    return setmetatable({ opts = opts }, Curl)
  end
  return setmetatable({ opts = opts }, Auto)
end

-- session(t) -> the libcurl session that a request made now goes straight to: when t is the
-- libcurl transport, or picks per request outside nginx (no ngx table). nil when it goes
-- elsewhere, or before the session is made (by the first request).
function M.session(t)
  local mt = getmetatable(t)
  if mt == Auto then
    if rawget(_G, "ngx") ~= nil then return nil end
    t = t.curl
    if t == nil then return nil end
  elseif mt ~= Curl then
    return nil
  end
  return t.sess
end

-- pick(t) -> the transport that a request made now goes to (t itself unless t chooses per request)
function M.pick(t)
  if getmetatable(t) == Auto then return t:pick() end
  return t
end

return M
