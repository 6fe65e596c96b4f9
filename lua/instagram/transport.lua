-- One transport interface over libcurl, OpenResty cosockets, or a caller's function:
--   t:request(req) -> res | nil, kind, message[, status]
--   t:request_many(reqs, concurrency) -> { res | {error = kind, message = msg[, status]}, ... }
-- (status: for kind "response" when the status line had arrived, e.g. a body over the size cap)
--   t:close()
-- req = {method, url, headers, body, timeout, connect_timeout}; res = {status, headers, body}.
local M = {}

local COSOCKET_PHASES = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}

-- true inside an nginx phase where cosockets (and ngx.sleep) may be used
local function in_cosocket_phase()
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or type(ngx.get_phase) ~= "function" then return false end
  local ok, phase = pcall(ngx.get_phase)
  return ok and COSOCKET_PHASES[phase] or false
end

M.in_cosocket_phase = in_cosocket_phase

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
  return self:session():perform(req)
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

function Func:request(req)
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
    return nil, "response", "response body larger than " .. self.opts.max_response_bytes .. " bytes"
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
    local res, kind, msg = self:request(req)
    out[i] = res or { error = kind, message = msg }
  end
  return out
end

function Func.close() end

-- new(kind_or_fn, opts): opts = {allow_http, ca_file, user_agent, timeout, connect_timeout, max_response_bytes}
function M.new(choice, opts)
  if type(choice) == "function" then
    return setmetatable({ fn = choice, opts = opts }, Func)
  end
  if choice == nil then
    choice = in_cosocket_phase() and "ngx" or "curl"
  end
  if choice == "ngx" then
    return require("instagram.ngx").new(opts)
  end
  return setmetatable({ opts = opts }, Curl)
end

return M
