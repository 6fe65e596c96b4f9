-- lua-instagram: the public API (API.md). Policy lives here; the C core does bytes and sockets.
local core = require "instagram.core"
local profiles = require "instagram.profiles"
local errors = require "instagram.errors"
local json = require "instagram.json"
local transport = require "instagram.transport"

local instagram = {
  VERSION = "0.2.0",
  core = core,
}

local Client = {}
Client.__index = Client

-- Secrets are kept out of the client table, so dumping a client shows none.
local private = setmetatable({}, { __mode = "k" })

local MAX_CALLBACK_VALUE = 4096
local MAX_CALLBACK_INPUT = 16384
local BACKOFF_BASE, BACKOFF_CAP = 0.5, 30

---------------------------------------------------------------------------
-- argument checks: misuse raises, and the message starts with the function name

local function raise(fname, msg)
  error(fname .. ": " .. msg, 0)
end

local find, sub = string.find, string.sub
local type, rawget, getmetatable, running = type, rawget, getmetatable, coroutine.running
local url_encode, build_query = core.url_encode, core.build_query
local session_of = transport.session

-- plain searches: a pattern class walks a 200-byte token character by character in the matcher
local function has_crlf_nul(s)
  return find(s, "\r", 1, true) or find(s, "\n", 1, true) or find(s, "\0", 1, true)
end

local function check_clean(fname, what, s)
  if has_crlf_nul(s) then
    raise(fname, what .. " must not contain CR, LF or NUL")
  end
  return s
end

local function check_string(fname, what, v)
  if type(v) ~= "string" or v == "" then
    raise(fname, what .. " must be a non-empty string")
  end
  return check_clean(fname, what, v)
end

local function check_self(fname, self)
  if getmetatable(self) ~= Client then
    raise(fname, "call it as a method (ig:" .. fname:match("[%w_]+$") .. "(...))")
  end
  return private[self]
end

local function check_url(fname, what, url, allow_http)
  check_string(fname, what, url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.+)$")
  scheme = scheme and scheme:lower()
  if scheme ~= "https" and not (scheme == "http" and allow_http) then
    raise(fname, what .. " must be an https:// URL" .. (allow_http and " or http:// URL" or
      " (plain http needs allow_http = true)"))
  end
  if rest:find("[#%s]") or rest:sub(1, 1) == "/" then
    raise(fname, what .. " must be an absolute URL without spaces or fragment")
  end
  return url
end

local function token_string(fname, token)
  if type(token) == "table" then token = token.access_token end
  if type(token) ~= "string" or token == "" then
    raise(fname, "token must be an access-token string or a token table")
  end
  return check_clean(fname, "token", token)
end

-- a default fields table (a module constant) -> its comma-separated string, built once
local default_fields = setmetatable({}, { __mode = "k" })

local fields_string
fields_string = function(fname, fields, default)
  if fields == nil then
    fields = default
    if type(fields) == "table" then
      local joined = default_fields[fields]
      if joined then return joined end
      joined = fields_string(fname, fields)
      default_fields[fields] = joined
      return joined
    end
  end
  if type(fields) == "string" then
    if fields == "" then raise(fname, "fields must not be empty") end
    return fields
  elseif type(fields) == "table" then
    local out = {}
    for i = 1, #fields do
      local f = fields[i]
      if type(f) ~= "string" or f == "" then
        raise(fname, "fields must be an array of non-empty strings or a comma-separated string")
      end
      out[i] = f
    end
    if #out == 0 then raise(fname, "fields must not be empty") end
    return table.concat(out, ",")
  end
  raise(fname, "fields must be an array of strings or a comma-separated string")
end

-- a scope as the comma-separated wire string, from a string or an array of strings
local function scope_string(fname, what, scope)
  if type(scope) ~= "table" then return check_string(fname, what, scope) end
  for i = 1, #scope do check_string(fname, what .. "[" .. i .. "]", scope[i]) end
  if #scope == 0 then raise(fname, what .. " must not be empty") end
  return table.concat(scope, ",")
end

-- IDs go into URL paths: only word characters, so no "/", ".." or "?" can steer the request
local function id_string(fname, what, v)
  local id = json.id(v)
  if not id or not id:match("^[%w_]+$") then
    raise(fname, what .. " must be an ID: an integer or a string of letters, digits and _")
  end
  return id
end

---------------------------------------------------------------------------
-- instagram.new

local CONFIG_KEYS = {
  app_id = true, app_secret = true, redirect_uri = true, api = true, scope = true,
  endpoints = true, graph_version = true, timeout = true, connect_timeout = true,
  retries = true, max_response_bytes = true, ca_file = true, allow_http = true,
  transport = true, user_agent = true, token_in = true, appsecret_proof = true,
  clock = true, sleep = true, rate_limits = true,
}

-- the longest timeout both transports honour: libcurl takes 2147483.647 s, cosockets 2147483 s
local MAX_TIMEOUT = 2147483

local function positive_seconds(fname, config, key, default)
  local v = config[key]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v <= 0 or v > MAX_TIMEOUT then
    raise(fname, key .. " must be a positive number of seconds, at most " .. MAX_TIMEOUT)
  end
  return v
end

local function nonnegative_integer(fname, config, key, default, max)
  local v = config[key]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= math.floor(v) or v < 0 or v > max then
    raise(fname, key .. " must be an integer from 0 to " .. max)
  end
  return v
end

function instagram.new(config)
  local fname = "instagram.new"
  if type(config) ~= "table" then raise(fname, "config must be a table") end
  for k in pairs(config) do
    if not CONFIG_KEYS[k] then raise(fname, "unknown option '" .. tostring(k) .. "'") end
  end

  local api = config.api or profiles.default
  local profile = type(api) == "string" and profiles[api]
  if type(profile) ~= "table" or api == "default" then
    raise(fname, "api must be \"instagram_login\" or \"basic_display\"")
  end

  local allow_http = config.allow_http
  if allow_http ~= nil and type(allow_http) ~= "boolean" then raise(fname, "allow_http must be a boolean") end
  allow_http = allow_http or false

  local app_id = check_string(fname, "app_id", config.app_id)
  local secret = config.app_secret
  if secret ~= nil then check_string(fname, "app_secret", secret) end
  local redirect_uri = check_url(fname, "redirect_uri", config.redirect_uri, allow_http)

  local scope = scope_string(fname, "scope", config.scope or profile.scope)

  local endpoints = {}
  if config.endpoints ~= nil and type(config.endpoints) ~= "table" then
    raise(fname, "endpoints must be a table")
  end
  local given = config.endpoints or {}
  for k in pairs(given) do
    if not profile.endpoints[k] then raise(fname, "unknown endpoint '" .. tostring(k) .. "'") end
  end
  for k, default in pairs(profile.endpoints) do
    local url = check_url(fname, "endpoints." .. k, given[k] or default, allow_http)
    if url:find("?", 1, true) then raise(fname, "endpoints." .. k .. " must not carry a query") end
    endpoints[k] = url
  end
  endpoints.graph = endpoints.graph:gsub("/+$", "")

  local graph_version = config.graph_version
  if graph_version ~= nil and (type(graph_version) ~= "string" or not graph_version:match("^v%d+%.%d+$")) then
    raise(fname, "graph_version must look like \"v21.0\"")
  end

  local user_agent = config.user_agent
  if user_agent == nil then
    user_agent = "lua-instagram/" .. instagram.VERSION
  else
    check_string(fname, "user_agent", user_agent)
  end

  local ca_file = config.ca_file
  if ca_file ~= nil then check_string(fname, "ca_file", ca_file) end

  local token_in = config.token_in or "query"
  if token_in ~= "query" and token_in ~= "header" then
    raise(fname, "token_in must be \"query\" or \"header\"")
  end
  if config.appsecret_proof ~= nil and type(config.appsecret_proof) ~= "boolean" then
    raise(fname, "appsecret_proof must be a boolean")
  end
  if config.appsecret_proof and not secret then
    raise(fname, "appsecret_proof needs app_secret")
  end

  local chosen = config.transport
  if chosen ~= nil and chosen ~= "curl" and chosen ~= "ngx" and type(chosen) ~= "function" then
    raise(fname, "transport must be \"curl\", \"ngx\" or a function")
  end
  for _, key in ipairs({ "clock", "sleep" }) do
    if config[key] ~= nil and type(config[key]) ~= "function" then
      raise(fname, key .. " must be a function")
    end
  end

  local topts = {
    allow_http = allow_http,
    ca_file = ca_file,
    user_agent = user_agent,
    timeout = positive_seconds(fname, config, "timeout", 10),
    connect_timeout = positive_seconds(fname, config, "connect_timeout", 5),
    max_response_bytes = config.max_response_bytes or 8 * 1024 * 1024,
  }
  local max = topts.max_response_bytes
  if type(max) ~= "number" or max ~= math.floor(max) or max < 1 or max > 2 ^ 31 then
    raise(fname, "max_response_bytes must be an integer from 1 to " .. string.format("%d", 2 ^ 31))
  end

  local self = setmetatable({
    api = profile.name,
    app_id = app_id,
    redirect_uri = redirect_uri,
    scope = scope,
    endpoints = endpoints,
    graph_version = graph_version,
    retries = nonnegative_integer(fname, config, "retries", 2, 10),
    token_in = token_in,
    appsecret_proof = config.appsecret_proof or false,
    timeout = topts.timeout,
    connect_timeout = topts.connect_timeout,
    max_response_bytes = topts.max_response_bytes,
  }, Client)
  private[self] = {
    secret = secret,
    transport = transport.new(chosen, topts),
    clock = config.clock or os.time,
    sleep = config.sleep,
    buckets = require("instagram.buckets").new(fname, config.rate_limits, config.clock or os.time),
    profile = profile,
    -- the encoded query of ig:me's and ig:user's default fields (kept_user)
    user_default_query = "fields=" .. url_encode(fields_string(fname, nil, profile.user_fields)),
    graph_paths = {}, graph_paths_count = 0,
  }
  return self
end

function Client:__tostring()
  return string.format("instagram.client (%s, app_id %s)", self.api, self.app_id)
end

function Client:close()
  local p = private[self]
  if p and p.transport then
    p.transport:close()
    -- the kept GET's prepared request belonged to the closed session (kept_user)
    p.get_prepared, p.get_prepared_by = nil, nil
  end
end
Client.__close = Client.close
Client.__gc = Client.close

---------------------------------------------------------------------------
-- internals shared with the method modules (tokens, media, batch)

-- secrets(self, ...) -> the strings that must never appear in an error of this call, as a
-- dense array (a client without app_secret must not leave a hole that ends the scrub early)
function Client:_secrets(...)
  local list = { private[self].secret }
  for i = 1, select("#", ...) do list[#list + 1] = select(i, ...) end
  return list
end

function Client:_secret(fname)
  local secret = private[self].secret
  if not secret then raise(fname, "app_secret is required (set it in instagram.new)") end
  return secret
end

function Client:_now()
  return private[self].clock()
end

-- take_rate(name, token) -> true, or nil, err when the client's own rate limit for this account
-- (instagram.new{rate_limits = …}) says wait
function Client:_take_rate(name, token)
  local buckets = private[self].buckets
  if not buckets then return true end
  local account = type(token) == "table" and token.user_id or token
  if type(token) == "table" and not account then account = token.access_token end
  return buckets:take(name, account)
end

-- ngx.sleep where the current nginx phase allows it (it yields to the event loop), else blocking;
-- safe in every phase
function Client:_sleep(seconds)
  local sleep = private[self].sleep or transport.sleep
  if seconds > 0 then sleep(seconds) end
end

-- the transport a request made now goes to (by default chosen from the current nginx phase)
function Client:_transport()
  return transport.pick(private[self].transport)
end

-- The usage headers are kept as received and decoded only when ig:usage() asks (Instagram sends
-- them on every response; most callers never look). h: the response's headers.
local function record_usage(self, h)
  local app, buc = h["x-app-usage"], h["x-business-use-case-usage"]
  if app or buc then
    self._usage, self._usage_app, self._usage_buc = nil, app, buc
  end
end

-- usage() -> the last usage headers, decoded (once), or nil when none came yet
function Client:_usage_decoded()
  local usage = self._usage
  if usage then return usage end
  local app, buc = self._usage_app, self._usage_buc
  if not (app or buc) then return nil end
  -- counts as integers under Lua 5.4, as in decoded Graph data
  usage = {
    app = app and json.normalize_ids(json.decode(app)) or nil,
    business = buc and errors.business_usage(json.normalize_ids(json.decode(buc))) or nil,
  }
  self._usage = usage
  return usage
end

-- Inside ig:batch, requests go to the batch driver, which makes them concurrently.
local batch_coroutines = setmetatable({}, { __mode = "k" })
local BATCH_YIELD = {}
local BATCH_ABORT = {} -- the batch driver's answer to a call it abandons (another call raised)

-- The client's transport makes the request (by default, the one of the current nginx phase: the
-- transport picks per request); inside ig:batch it goes to the batch driver.
function Client:_request(req)
  local co = running()
  if co and batch_coroutines[co] == self then
    return coroutine.yield(BATCH_YIELD, req)
  end
  return private[self].transport:request(req)
end

-- A uniform number in [0, 1) for back-off jitter, from OpenSSL's CSPRNG: unlike math.random (which
-- LuaJIT starts from one fixed seed), it differs in every process, so nginx workers forked from one
-- master do not retry in lockstep
local function jitter()
  local bytes = core.base64url_decode(core.random_state(16) or "")
  if not bytes or #bytes < 6 then return math.random() end
  local x = 0
  for i = 1, 6 do x = x * 256 + bytes:byte(i) end
  return x / 2 ^ 48
end

-- What a failed try means (err: its error; res: the response, if one came):
-- nil, err | nil, err, delay when it is to be retried after delay
local function judge_failure(err, res, idempotent, attempt, retries)
  if not idempotent and (
      (not res and (err.kind == "network" or err.kind == "timeout" or err.kind == "response"))
      or (res and err.kind == "response" and res.status >= 200 and res.status < 300)
      or (res and err.kind == "http" and res.status >= 500)) then
    err.outcome_unknown = true
  end
  err.attempts = attempt + 1
  if attempt >= retries or not err.transient then return nil, err end
  local delay = jitter() * math.min(BACKOFF_CAP, BACKOFF_BASE * 2 ^ attempt)
  if err.retry_after then
    if err.retry_after > BACKOFF_CAP then return nil, err end
    delay = math.max(delay, err.retry_after)
  end
  return nil, err, delay
end

-- the usage headers of a response: the libcurl transport decodes res.headers on first read, and
-- the usage headers apart (raw fields: no lookup through the result's metatable when there are none)
local function response_usage(self, res)
  local h = rawget(res, "headers") or rawget(res, "usage_headers")
  if h then record_usage(self, h) end
end

-- What the answer to one try means (the transport's result: res, or nil, kind, message, status):
-- value, res | nil, err | nil, err, delay when it is to be retried after delay
local function judge(self, secrets, idempotent, attempt, retries, res, kind, msg, status)
  if res == BATCH_ABORT then error("ig:batch: abandoned, another call of the batch raised", 0) end
  local value, err
  if res then
    response_usage(self, res)
    value, err = errors.classify(res, secrets)
    if value then return value, res end
  else
    err = errors.new(kind or "network", msg or "request failed", { status = status }, secrets)
  end
  return judge_failure(err, res, idempotent, attempt, retries)
end

-- one try of _send: as judge
local function send_try(self, req, secrets, idempotent, attempt, retries)
  return judge(self, secrets, idempotent, attempt, retries, self:_request(req))
end

-- the tries after the first, which said to try again after delay: decoded body, response | nil, err
local function send_again(self, req, secrets, idempotent, retries, delay)
  local attempt = 0
  while true do
    self:_sleep(delay)
    attempt = attempt + 1
    local value, res
    value, res, delay = send_try(self, req, secrets, idempotent, attempt, retries)
    if not delay then return value, res end
  end
end

-- send(req, secrets[, retries]) -> decoded body, response | nil, err: one request, with retries
-- only for idempotent GETs.
--
-- A request that is not idempotent (any non-GET unless req.idempotent) is sent once; when it
-- fails with no usable answer it may still have taken effect: err.outcome_unknown. That is a
-- failure with no response (network, timeout, a response the transport could not take: too
-- large, badly framed), a 2xx whose body cannot be read, and a 5xx that is not a Graph error (a
-- gateway's page: Instagram's answer, if any, was lost). A Graph error object is an answer.
function Client:_send(req, secrets, retries)
  local idempotent = req.method == "GET" or req.idempotent
  if not idempotent then retries = 0 end
  retries = retries or self.retries
  req.timeout = req.timeout or self.timeout
  req.connect_timeout = req.connect_timeout or self.connect_timeout
  -- the first try outside any loop (a loop here keeps LuaJIT from compiling the usual path)
  local value, res, delay = send_try(self, req, secrets, idempotent, 0, retries)
  if not delay then return value, res end
  return send_again(self, req, secrets, idempotent, retries, delay)
end

-- what fetch_object gave when it was not the usual success (false, response | nil, kind, message,
-- status), judged and retried as _send would: the decoded body, normalized, and the response | nil, err
local function usual_get_answer(self, req, secrets, value, res, msg, status)
  local retries = self.retries
  local delay
  if value == false then -- an answer, not the usual success
    value, res, delay = judge(self, secrets, true, 0, retries, res)
  else -- no answer: res is the kind
    value, res, delay = judge(self, secrets, true, 0, retries, nil, res, msg, status)
  end
  if delay then value, res = send_again(self, req, secrets, true, retries, delay) end
  if not value then return nil, res end
  return json.normalize_ids(value), res
end

-- _send of the client's last usual GET (last_get: a GET made with the client's timeouts), the
-- short way when it can: straight to the libcurl session when the request would go there (the
-- libcurl transport, or the default one outside nginx: transport.session) and not inside
-- ig:batch; else through _send. Its answer is judged and retried as _send does: the same
-- outcome, with fewer Lua layers on the way (after a network round trip, each layer's tables are
-- cold: on Lua 5.4 the layers cost more than their instructions suggest). The usual success is
-- told and decoded by the session in the same C call as the transfer (fetch_object: the test
-- errors.classify makes first); any other answer is judged here.
-- -> the decoded body, normalized (json.normalize_ids), and the response (none after the short
-- way's usual success) | nil, err
local function send_usual_get(self, p, req, secrets)
  local sess = session_of(p.transport)
  local co = running()
  local value, res, msg, status
  if not sess or (co and batch_coroutines[co] == self) then
    value, res = self:_send(req, secrets)
    if not value then return nil, res end
    return json.normalize_ids(value), res
  end
  -- the request as the session prepared it (checked and copied once, immutable), for this session
  local prepared = p.get_prepared
  if not prepared or p.get_prepared_by ~= sess then
    prepared = sess:prepare(req)
    p.get_prepared, p.get_prepared_by = prepared, sess
  end
  value, res, msg, status = sess:fetch_object(prepared, json.decode)
  if value then
    if res then record_usage(self, res) end
    return value
  end
  return usual_get_answer(self, req, secrets, value, res, msg, status)
end

-- longest_send() -> the most seconds one _send of a GET can take: every try up to `timeout`, and
-- the longest back-off (a retry_after above BACKOFF_CAP is not waited for) between tries
function Client:_longest_send()
  return (self.retries + 1) * self.timeout + self.retries * BACKOFF_CAP + 5
end

-- graph_url("me/media", params[, raw_query]) -> base/v21.0/me/media?query, every segment
-- percent-encoded; a path that already starts with a version (a paging.next link) keeps it.
-- raw_query: an already encoded query (a paging.next link's), put before params.
local MAX_CACHED_PATHS = 256

-- base/version/path for a Graph path, built once per client and path (at most MAX_CACHED_PATHS;
-- an entry remembers the graph base and version it was built from, the client's public fields)
local function graph_base(self, path, p)
  p = p or private[self]
  local cache = p.graph_paths
  local base, version = self.endpoints.graph, self.graph_version
  local e = cache[path]
  if e and e.base == base and e.version == version then return e.url end
  local parts = {}
  for segment in path:gmatch("[^/]+") do
    parts[#parts + 1] = url_encode(segment)
  end
  if version and not (parts[1] or ""):match("^v%d+%.%d+$") then
    table.insert(parts, 1, version)
  end
  local url = base .. "/" .. table.concat(parts, "/")
  if p.graph_paths_count >= MAX_CACHED_PATHS then
    cache = {}
    p.graph_paths, p.graph_paths_count = cache, 0
  end
  cache[path] = { url = url, base = base, version = version }
  p.graph_paths_count = p.graph_paths_count + 1
  return url
end

function Client:_graph_url(path, params, raw_query)
  local url = graph_base(self, path)
  local query = build_query(params)
  if raw_query and raw_query ~= "" then query = query == "" and raw_query or (raw_query .. "&" .. query) end
  if query ~= "" then url = url .. "?" .. query end
  return url
end

-- graph_request(token, path, params[, raw_query[, method]]) -> req, secrets: the token goes where
-- token_in says. A GET or DELETE carries the parameters in the query; a POST in a form body, so
-- that neither they nor the token land in URLs (and logs) on the way.
-- the query of a parameter map, sorted by name: build_query (C sorts the map bytewise), or for
-- one string parameter (the usual fields=…) its two encodings, which allocate no tables
local function params_query(params)
  if type(params) == "string" then return params end -- already encoded (user_node's fields=…)
  local k, v = next(params)
  if k == nil then return "" end
  if next(params, k) == nil and type(k) == "string" and type(v) == "string" then
    return url_encode(k) .. "=" .. url_encode(v)
  end
  return build_query(params)
end

-- The token percent-encoded, and the secrets of a request with it ({app_secret, token}, or
-- {token}: what error messages are scrubbed of). Both are kept for the last token, since the same
-- token comes on every call: a 200-byte token is not scanned again, and no list is made. The
-- list is never changed (a request with more secrets makes its own).
local function token_query(p, token)
  if token ~= p.last_token then
    local secret = p.secret
    p.last_token, p.last_token_query = token, url_encode(token)
    p.last_secrets = secret and { secret, token } or { token }
  end
  return p.last_token_query, p.last_secrets
end

-- the headers of the usual GET (the token in the query): one table for all of them, which nothing
-- changes (the transports only read a request; a function transport is given a copy)
local GET_HEADERS = { Accept = "application/json" }

-- The request of the client's last usual GET and its secrets, given again while nothing it was
-- made from changed: the same ig:me on every call builds its URL and its table once. Nothing
-- changes a request (the transports only read it, _send only fills timeouts it already has, and
-- a function transport is given a copy). query: the encoded parameters.
local function last_get(self, p, path, query, token)
  local r = p.get_req
  if r and p.get_token == token and p.get_path == path and p.get_query == query
      and p.get_base == self.endpoints.graph and p.get_version == self.graph_version
      and r.timeout == self.timeout and r.connect_timeout == self.connect_timeout
      and self.token_in ~= "header" and not self.appsecret_proof then
    return r, p.get_secrets
  end
  return nil
end

function Client:_graph_request(token, path, params, raw_query, method)
  method = method or "GET"
  -- the parameters sorted by name, then the token and the proof
  local query = params and params_query(params) or ""
  local in_query = self.token_in ~= "header"
  local p = private[self]
  local secret = p.secret
  local token_q, secrets = token_query(p, token)
  if method ~= "POST" and in_query and not self.appsecret_proof and not (raw_query and raw_query ~= "") then
    -- the usual GET: the last one's request again, or the whole URL in one concatenation
    if method == "GET" then
      local req, req_secrets = last_get(self, p, path, query, token)
      if req then return req, req_secrets end
    end
    local url = graph_base(self, path, p) .. (query == "" and "?access_token=" or ("?" .. query .. "&access_token="))
      .. token_q
    local req = { method = method, url = url, headers = GET_HEADERS, timeout = self.timeout,
      connect_timeout = self.connect_timeout }
    if method == "GET" then
      p.get_req, p.get_token, p.get_path, p.get_query, p.get_secrets = req, token, path, query, secrets
      p.get_prepared = nil
      p.get_base, p.get_version = self.endpoints.graph, self.graph_version
    end
    return req, secrets
  end
  local url = graph_base(self, path, p)
  local headers = { Accept = "application/json" }
  if not in_query then headers.Authorization = "Bearer " .. token end
  if in_query then
    query = (query == "" and "access_token=" or (query .. "&access_token=")) .. token_q
  end
  if self.appsecret_proof then
    local proof = core.hmac_sha256_hex(secret, token)
    query = (query == "" and "appsecret_proof=" or (query .. "&appsecret_proof=")) .. proof
    secrets = { secret, token, proof }
  end
  if method ~= "POST" then
    if raw_query and raw_query ~= "" then query = query == "" and raw_query or (raw_query .. "&" .. query) end
    if query ~= "" then url = url .. "?" .. query end
    -- timeouts as _send would set them, in the constructor: the table is made at its final size
    return { method = method, url = url, headers = headers, timeout = self.timeout,
      connect_timeout = self.connect_timeout }, secrets
  end
  headers["Content-Type"] = "application/x-www-form-urlencoded"
  return { method = method, url = url, headers = headers, body = query, timeout = self.timeout,
    connect_timeout = self.connect_timeout }, secrets
end

-- graph_get(token, path, params[, raw_query]) -> decoded body, response | nil, err (params: a
-- map, or an already encoded query string). The usual success of the kept GET's short way
-- (send_usual_get) comes without the response.
function Client:_graph_get(token, path, params, raw_query)
  -- the same usual GET as the last one (ig:me, call after call): its request, with nothing built
  local p, req, secrets = private[self], nil, nil
  if raw_query == nil and type(params) == "string" then req, secrets = last_get(self, p, path, params, token) end
  if req then return send_usual_get(self, p, req, secrets) end
  req, secrets = self:_graph_request(token, path, params, raw_query)
  local value, res = self:_send(req, secrets)
  if not value then return nil, res end
  return json.normalize_ids(value), res
end

-- graph_write(token, method, path, params, idempotent) -> decoded body, response | nil, err.
-- Only an idempotent write (hide, delete, a setting) is retried; any other is sent once.
function Client:_graph_write(token, method, path, params, idempotent)
  local req, secrets = self:_graph_request(token, path, params, nil, method)
  req.idempotent = idempotent or nil
  local value, res = self:_send(req, secrets)
  if not value then return nil, res end
  return json.normalize_ids(value), res
end

-- A token table from any of the documented token-response shapes (INSTAGRAM.md §3.2–§3.3, §4).
function Client:_token_from(body, secrets, res)
  local t = body
  if type(body.data) == "table" then t = body.data[1] end
  local function bad(msg)
    return nil, errors.new("response", "token response " .. msg, { status = res and res.status }, secrets)
  end
  if type(t) ~= "table" then return bad("has no token object") end
  if type(t.access_token) ~= "string" or t.access_token == "" then
    return bad("has no access_token")
  end
  -- whole seconds, integers under Lua 5.4 (a clock may be fractional; lua-cjson gives floats)
  local token = { access_token = t.access_token, issued_at = json.integer(math.floor(self:_now())) }
  if t.user_id ~= nil and t.user_id ~= json.null then
    token.user_id = json.id(t.user_id)
    if not token.user_id then return bad("has an invalid user_id") end
  end
  if type(t.token_type) == "string" and t.token_type ~= "" then token.token_type = t.token_type end
  local expires_in = t.expires_in
  if expires_in ~= nil and expires_in ~= json.null then
    if type(expires_in) == "string" and expires_in:match("^%d+$") then expires_in = tonumber(expires_in) end
    if type(expires_in) ~= "number" or expires_in ~= math.floor(expires_in) or expires_in < 0
        or expires_in > 2 ^ 40 then
      return bad("has an invalid expires_in")
    end
    token.expires_in = json.integer(expires_in)
    token.expires_at = token.issued_at + token.expires_in
  end
  local perms = t.permissions
  if type(perms) == "string" then
    local list = {}
    for p in perms:gmatch("[^,%s]+") do list[#list + 1] = p end
    token.permissions = list
  elseif type(perms) == "table" then
    local list = {}
    for _, p in ipairs(perms) do
      if type(p) == "string" then list[#list + 1] = p end
    end
    token.permissions = list
  end
  return token
end

---------------------------------------------------------------------------
-- the flow of the original tutorial

local NO_OPTS = {}

-- endpoint?client_id=…&redirect_uri=…&scope=…&response_type=code&state= for a client and scope,
-- built once (remembering what it was built from: the client's fields are public)
local function authorize_prefix(self, scope)
  local p = private[self]
  local c = p.authorize
  local endpoint, app_id, redirect_uri = self.endpoints.authorize, self.app_id, self.redirect_uri
  if c and c.scope == scope and c.endpoint == endpoint and c.app_id == app_id and c.redirect_uri == redirect_uri then
    return c.prefix
  end
  local prefix = endpoint .. "?" .. build_query({
    { "client_id", app_id },
    { "redirect_uri", redirect_uri },
    { "scope", scope },
    { "response_type", "code" },
  }) .. "&state="
  p.authorize = { prefix = prefix, scope = scope, endpoint = endpoint, app_id = app_id, redirect_uri = redirect_uri }
  return prefix
end

function Client:authorize_url(opts)
  local fname = "ig:authorize_url"
  check_self(fname, self)
  if opts ~= nil and type(opts) ~= "table" then raise(fname, "opts must be a table") end
  opts = opts or NO_OPTS
  local scope = opts.scope == nil and self.scope or scope_string(fname, "opts.scope", opts.scope)
  local state = opts.state
  if state == nil then
    local err
    state, err = core.random_state(32)
    if not state then raise(fname, "no random state: " .. tostring(err)) end
  else
    check_string(fname, "opts.state", state)
  end
  local url = authorize_prefix(self, scope) .. url_encode(state)
  local extra
  for k, v in pairs(opts) do
    if type(k) ~= "string" then raise(fname, "opts keys must be strings") end
    if k == "client_id" or k == "redirect_uri" or k == "response_type" then
      raise(fname, "opts." .. k .. " cannot be overridden")
    end
    if k ~= "scope" and k ~= "state" then
      local tv = type(v)
      if tv ~= "string" and tv ~= "boolean" and tv ~= "number" then
        raise(fname, "opts." .. k .. " must be a string, number or boolean")
      end
      extra = extra or {}
      extra[#extra + 1] = k
    end
  end
  if not extra then return url, state end
  table.sort(extra)
  local params = {}
  for i, k in ipairs(extra) do params[i] = { k, tostring(opts[k]) } end
  return url .. "&" .. build_query(params), state
end

-- One callback parameter. Its value came from the browser, so nothing here raises: a bare key
-- (ngx.req.get_uri_args() gives true) is empty, a repeated one (an array) is an error.
local function single(args, key)
  local v = args[key]
  if v == true then v = "" end
  if type(v) == "table" then
    return nil, errors.new("callback", "callback has more than one '" .. key .. "' parameter")
  end
  if v ~= nil and type(v) ~= "string" then
    return nil, errors.new("callback", "callback parameter '" .. key .. "' is not a string")
  end
  if v and #v > MAX_CALLBACK_VALUE then
    return nil, errors.new("callback", "callback parameter '" .. key .. "' is too long")
  end
  return v
end

function Client:parse_callback(input, expected_state)
  local fname = "ig:parse_callback"
  check_self(fname, self)
  if expected_state == nil or expected_state == true then
    raise(fname, "expected_state must be the state string, or false to skip the check")
  end
  if expected_state ~= false then check_string(fname, "expected_state", expected_state) end

  local args
  if type(input) == "string" then
    if #input > MAX_CALLBACK_INPUT then
      return nil, errors.new("callback", "callback input is too long")
    end
    args = core.parse_query(input)
  elseif type(input) == "table" then
    args = input
  else
    raise(fname, "input must be a URL, a query string or a table of query args")
  end

  -- each parameter checked in this order; the first bad one is the error
  local code, state, err_code, reason, description, err
  code, err = single(args, "code")
  if err then return nil, err end
  state, err = single(args, "state")
  if err then return nil, err end
  err_code, err = single(args, "error")
  if err then return nil, err end
  reason, err = single(args, "error_reason")
  if err then return nil, err end
  description, err = single(args, "error_description")
  if err then return nil, err end

  -- state first, error callbacks included (RFC 6749 §4.1.2.1 returns state with errors too):
  -- a forged error callback is a state failure, and its text never becomes a message
  if expected_state ~= false then
    if state == nil or state == "" then
      return nil, errors.new("state", "callback has no state")
    end
    if not core.constant_time_equal(state, expected_state) then
      return nil, errors.new("state", "callback state does not match")
    end
  end

  if err_code then
    return nil, errors.new("denied", description or err_code, {
      reason = reason,
      description = description,
      error = err_code,
    }, { code })
  end

  if code == nil then return nil, errors.new("callback", "callback has no code") end
  local hash = find(code, "#", 1, true)
  if hash then code = sub(code, 1, hash - 1) end
  if find(code, "%23_", -4, true) then code = sub(code, 1, -5) end -- "%23_" has no letters to lower
  if code == "" then return nil, errors.new("callback", "callback code is empty") end
  -- a code of unreserved characters only (the usual) needs no pattern scan
  if url_encode(code) ~= code and find(code, "[%z\1-\31\127 ]") then
    return nil, errors.new("callback", "callback code contains control characters or spaces")
  end
  return code
end

function Client:exchange_code(code)
  local fname = "ig:exchange_code"
  check_self(fname, self)
  check_string(fname, "code", code)
  local secret = self:_secret(fname)
  local body = core.build_query({
    { "client_id", self.app_id },
    { "client_secret", secret },
    { "grant_type", "authorization_code" },
    { "redirect_uri", self.redirect_uri },
    { "code", code },
  })
  local secrets = self:_secrets(code)
  -- a code is single-use: exactly one POST, never retried
  local value, res = self:_send({
    method = "POST",
    url = self.endpoints.token,
    headers = {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      Accept = "application/json",
    },
    body = body,
  }, secrets, 0)
  if not value then return nil, res end
  return self:_token_from(value, secrets, res)
end

-- token_string, except that the client's last token (checked when it came) is not checked again
local function client_token(p, fname, token)
  if type(token) == "table" then token = token.access_token end
  if token ~= nil and token == p.checked_token then return token end
  token = token_string(fname, token)
  p.checked_token = token
  return token
end

-- the user node of a decoded body: a {"data":[{...}]} envelope is tolerated (INSTAGRAM.md §5.3)
local function user_of(body, err)
  if not body then return nil, err end
  if type(body.data) == "table" and type(body.data[1]) == "table" then return body.data[1] end
  return body
end

local function user_node(self, p, fname, token, path, fields)
  fields = fields_string(fname, fields, p.profile.user_fields)
  -- the encoded query of the last fields string, kept: the same fields come on every call
  local query = p.user_fields_query
  if p.user_fields ~= fields then
    query = "fields=" .. url_encode(fields)
    p.user_fields, p.user_fields_query = fields, query
  end
  return user_of(self:_graph_get(token, path, query))
end

-- ig:me and ig:user with the default fields, call after call, the short way: when the call is the
-- one that made the client's kept usual GET (the same token, node and default fields, and
-- last_get finds nothing else changed), past the argument checks (all made when the GET was kept),
-- user_node and _graph_get. When the GET was prepared for the libcurl session, and the call is
-- neither inside ig:batch nor in nginx, this is send_usual_get's short way in one function (the
-- session it was prepared by is the one transport.session gives until ig:close, which forgets
-- it); else send_usual_get. The same answer and errors as user_node, with the fewest Lua layers:
-- after a network round trip each one's code and tables are cold (so send_usual_get's last lines
-- and user_of's test are written out here, not called). false when the call is not that one.
local function kept_user(self, p, token, path)
  local query = p.get_query
  if token ~= p.get_token or path ~= p.get_path or query ~= p.user_default_query then return false end
  local req, secrets = last_get(self, p, path, query, token)
  if not req then return false end
  local prepared, co = p.get_prepared, running()
  if not prepared or rawget(_G, "ngx") ~= nil or (co and batch_coroutines[co] == self) then
    return user_of(send_usual_get(self, p, req, secrets))
  end
  local value, res, msg, status = p.get_prepared_by:fetch_object(prepared, json.decode)
  if not value then return user_of(usual_get_answer(self, req, secrets, value, res, msg, status)) end
  if res then record_usage(self, res) end
  if type(value.data) == "table" and type(value.data[1]) == "table" then return value.data[1] end -- user_of
  return value
end

function Client:me(token, fields)
  local fname = "ig:me"
  local p = check_self(fname, self)
  if fields == nil then
    local user, err = kept_user(self, p, token, "me")
    if user ~= false then return user, err end
  end
  return user_node(self, p, fname, client_token(p, fname, token), "me", fields)
end

function Client:user(token, user_id, fields)
  local fname = "ig:user"
  local p = check_self(fname, self)
  if fields == nil then
    local user, err = kept_user(self, p, token, user_id)
    if user ~= false then return user, err end
  end
  token = client_token(p, fname, token)
  return user_node(self, p, fname, token, id_string(fname, "user_id", user_id), fields)
end

---------------------------------------------------------------------------
-- signed_request (deauthorize and data-deletion callbacks) and the deletion response

local function parse_signed_request(fname, sr, secret)
  if type(sr) ~= "string" then raise(fname, "signed_request must be a string") end
  check_string(fname, "app_secret", secret)
  local payload, reason = core.verify_signed_request(sr, secret)
  if not payload then
    return nil, errors.new("signature", reason or "invalid signed_request", nil, { secret })
  end
  local data = json.decode(payload)
  if type(data) ~= "table" or data[1] ~= nil then
    return nil, errors.new("signature", "signed_request payload is not a JSON object", nil, { secret })
  end
  if data.algorithm ~= "HMAC-SHA256" then
    return nil, errors.new("signature", "signed_request algorithm is not HMAC-SHA256", nil, { secret })
  end
  if data.user_id ~= nil then
    data.user_id = json.id(data.user_id)
    if not data.user_id then
      return nil, errors.new("signature", "signed_request user_id is not an ID", nil, { secret })
    end
  end
  return data
end

function instagram.parse_signed_request(signed_request, app_secret)
  return parse_signed_request("instagram.parse_signed_request", signed_request, app_secret)
end

function Client:parse_signed_request(signed_request)
  local fname = "ig:parse_signed_request"
  check_self(fname, self)
  return parse_signed_request(fname, signed_request, self:_secret(fname))
end

function instagram.deletion_response(status_url, confirmation_code)
  local fname = "instagram.deletion_response"
  check_url(fname, "status_url", status_url, false)
  if type(confirmation_code) == "number" then confirmation_code = json.id(confirmation_code) end
  if type(confirmation_code) ~= "string" or not confirmation_code:match("^%w+$") then
    raise(fname, "confirmation_code must be a non-empty alphanumeric string")
  end
  return (json.encode({ url = status_url, confirmation_code = confirmation_code }))
end

-- beyond the tutorial: each concern adds its methods to Client
local helpers = {
  raise = raise, check_self = check_self, check_string = check_string, token_string = token_string,
  fields_string = fields_string, id_string = id_string,
  batch_coroutines = batch_coroutines, BATCH_YIELD = BATCH_YIELD, BATCH_ABORT = BATCH_ABORT,
}
require("instagram.tokens")(Client, helpers)
require("instagram.media")(Client, helpers)
require("instagram.batch")(Client, helpers)
require("instagram.download")(Client, helpers)
instagram.publishing = require("instagram.publishing")
instagram.publishing(Client, helpers)
require("instagram.comments")(Client, helpers)
instagram.insights = require("instagram.insights")
instagram.insights(Client, helpers)
require("instagram.subscriptions")(Client, helpers)
instagram.webhook = require "instagram.webhook"

-- 0.2: stores, the token keeper and the cached feed
instagram.store = require "instagram.store"
instagram.keeper = require "instagram.keeper"
instagram.feed = require "instagram.feed"
instagram.cdn_expiry = instagram.feed.cdn_expiry

return instagram
