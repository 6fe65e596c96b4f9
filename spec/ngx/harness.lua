-- Runs INSIDE the nginx that spec/ngx/transport_spec.lua starts (LuaJIT, real cosockets).
-- Each handler drives the client or the "ngx" transport against the fake Instagram and answers
-- with a JSON object that the spec checks. GET /t/<name>?<args>.
local cjson = require "cjson.safe"
local answer = require "answer"

local M = {}
local cfg -- set from init_by_lua: {https, http, untrusted, wrong_host, expired, ca_file}

local APP = {
  app_id = "684477648739411",
  app_secret = "eb8c7a1b2c3d4e5f60718293a4b5c6d7",
  redirect_uri = "https://localhost/auth/",
  api = "basic_display",
}

function M.configure(c)
  cfg = c
end

-- nginx checks certificate names with X509_check_host (no IP SANs): reach the fake as "localhost"
local function named(base)
  return (base:gsub("^(https://)127%.0%.0%.1:", "%1localhost:"))
end

local function endpoints(base)
  return { authorize = base .. "/oauth/authorize", token = base .. "/oauth/access_token", graph = base }
end

local function client(extra)
  local instagram = require "instagram"
  local conf = {}
  for k, v in pairs(APP) do conf[k] = v end
  conf.endpoints = endpoints(named(cfg.https))
  conf.ca_file = cfg.ca_file
  for k, v in pairs(extra or {}) do conf[k] = v end
  return instagram.new(conf)
end

local function transport(extra)
  local opts = {
    allow_http = false, ca_file = cfg.ca_file, user_agent = "ngx-spec", timeout = 5,
    connect_timeout = 2, max_response_bytes = 1024 * 1024,
  }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return require("instagram.ngx").new(opts)
end

local function err_table(err)
  if not err then return nil end
  return {
    kind = err.kind, message = err.message, code = err.code, status = err.status,
    token_invalid = err.token_invalid, text = tostring(err),
  }
end

local function res_table(res, kind, msg)
  if not res then return { kind = kind, message = msg } end
  return { status = res.status, headers = res.headers, body = res.body, reused = res.reused }
end

local H = {}

-- the default transport inside a content handler is the cosocket one, and libcurl is never touched
function H.detect(args)
  local core = require "instagram.core"
  local ngx_transport = require "instagram.ngx"
  local ig = client({ retries = 0 })
  local t = ig:_transport()
  local real_session = core.session
  core.session = function() error("libcurl session used inside nginx") end
  local me, err = ig:me(args.token)
  core.session = real_session
  return {
    phase = ngx.get_phase(),
    is_ngx = getmetatable(t) == ngx_transport.Transport,
    me = me, err = err_table(err),
  }
end

-- the tutorial: authorize URL -> the fake's 302 (not followed) -> parse_callback -> exchange_code -> me
function H.flow()
  local ig = client()
  local url, state = ig:authorize_url()
  local res, kind, msg = ig:_transport():request({ method = "GET", url = url })
  if not res then return { step = "authorize", kind = kind, message = msg } end
  local location = res.headers.location
  local code, cerr = ig:parse_callback(location or "", state)
  if not code then return { step = "callback", status = res.status, err = err_table(cerr) } end
  local token, terr = ig:exchange_code(code)
  if not token then return { step = "exchange", err = err_table(terr) } end
  local me, merr = ig:me(token)
  if not me then return { step = "me", err = err_table(merr) } end
  local wrong_state = select(2, ig:parse_callback(location, "not-the-state"))
  return {
    step = "done", authorize_status = res.status, location = location,
    token_user_id = token.user_id, me = me, wrong_state = err_table(wrong_state),
  }
end

function H.me(args)
  local ig = client({ retries = 0, timeout = tonumber(args.timeout) or 5,
    max_response_bytes = tonumber(args.max) })
  local me, err = ig:me(args.token)
  return { me = me, err = err_table(err) }
end

-- a TLS endpoint of the fake that must be refused
function H.tls(args)
  local base = args.which == "ip" and cfg.https or named(cfg[args.which])
  local t = transport()
  return res_table(t:request({ method = "GET", url = base .. "/me?access_token=SECRET-IN-QUERY" }))
end

-- the per-origin URL split (its target check is ngx.re.find in here) against parse_url
function H.split_urls()
  local ngx_transport = require "instagram.ngx"
  local t = transport({ allow_http = true })
  local urls = {
    "https://h/me?access_token=T", "https://h/a b", "https://h/a\tb", "https://h/a\127b", "https://h/a\31",
    "https://h/caf\195\169?x=\200\255", "https://h/#frag ment", "https://h?q", "https://h",
    "http://127.0.0.1:8080/x?y", "https://h:99999/", "https://u@h/", "nope", "https://h/a b#c",
  }
  local mismatches = {}
  for round = 1, 2 do
    for _, url in ipairs(urls) do
      local u, err = ngx_transport._parse_url(url)
      local o, target, ferr = ngx_transport._split_url(t, url)
      local want = u and (u.host .. " " .. u.target) or err
      local got = o and (o.host .. " " .. target) or ferr
      if want ~= got then mismatches[#mismatches + 1] = { url = url, round = round, want = want, got = got } end
    end
  end
  return { mismatches = mismatches, count = #urls, has_re = type(ngx.re) == "table" and ngx.re.find ~= nil }
end

-- raw transport requests
function H.raw(args)
  local t = transport({ allow_http = args.allow_http == "1", max_response_bytes = tonumber(args.max) })
  local base = args.scheme == "http" and cfg.http or named(cfg.https)
  local out = {}
  for i = 1, tonumber(args.n) or 1 do
    out[i] = res_table(t:request({ method = args.method or "GET", url = base .. (args.path or "/"),
      body = args.body, headers = args.header and { ["X-Test"] = args.header } or nil,
      timeout = tonumber(args.timeout) }))
  end
  t:close()
  t:close()
  return { results = out }
end

-- one request table given again and again, changed in place between some of the calls: what
-- arrives must be the table as it is at each call (the transport keeps its last prepared request)
function H.reuse()
  local t = transport()
  local base = named(cfg.https)
  local headers = { ["X-Test"] = "one" }
  local req = { method = "GET", url = base .. "/__reuse?n=1", headers = headers, timeout = 5 }
  local out = {}
  local function send() out[#out + 1] = res_table(t:request(req)).status end
  send()
  send()
  headers["X-Test"] = "two"      -- the value, in place
  send()
  req.url = base .. "/__reuse?n=2"
  send()
  headers["X-More"] = "three"    -- a second header
  send()
  req.headers = { ["X-Test"] = "four" }
  send()
  req.method = "DELETE"
  send()
  t:close()
  return { results = out }
end

-- misuse raises, as in the C core
function H.misuse()
  local t = transport()
  local base = named(cfg.https)
  local function try(req)
    local ok, err = pcall(t.request, t, req)
    return { ok = ok, err = not ok and tostring(err) or nil }
  end
  return {
    header_crlf = try({ method = "GET", url = base .. "/", headers = { ["X-A"] = "a\r\nInjected: 1" } }),
    header_nul = try({ method = "GET", url = base .. "/", headers = { ["X-A"] = "a\0b" } }),
    url_lf = try({ method = "GET", url = base .. "/\nx" }),
    bad_name = try({ method = "GET", url = base .. "/", headers = { ["X A"] = "v" } }),
    many = (function()
      local ok, err = pcall(t.request_many, t, { { method = "GET", url = base .. "/" },
        { method = "GET", url = base .. "/", headers = { A = "\r" } } }, 2)
      return { ok = ok, err = not ok and tostring(err) or nil }
    end)(),
  }
end

-- ig:batch through request_many (light threads)
function H.batch(args)
  local ig = client({ retries = 0, max_response_bytes = tonumber(args.max) })
  local calls = {}
  for i = 1, tonumber(args.n) or 4 do calls[i] = { "me", args.token } end
  local results = ig:batch(calls, { concurrency = tonumber(args.concurrency) or 8 })
  local out = {}
  for i, r in ipairs(results) do out[i] = { ok = r.ok, value = r.value, err = err_table(r.err) } end
  return { results = out }
end

-- refresh_if_needed from n light threads at once, sharing one lua_shared_dict (single-flight)
function H.refresh(args)
  local n = tonumber(args.n) or 5
  local now = ngx.time()
  local age, day = 55 * 86400, 86400
  local token = { access_token = args.token, token_type = "bearer", issued_at = now - age,
    expires_in = 60 * day, expires_at = now - age + 60 * day }
  local threads, out = {}, {}
  for i = 1, n do
    threads[i] = ngx.thread.spawn(function()
      local ig = client({ retries = 0 })
      local new, refreshed = ig:refresh_if_needed(token, { shared_dict = args.dict })
      return { ok = new ~= nil, expires_at = new and new.expires_at, err = not new and err_table(refreshed) or nil }
    end)
  end
  for i = 1, n do
    local _, r = ngx.thread.wait(threads[i])
    out[i] = r
  end
  return { results = out, previous_expires_at = token.expires_at }
end

-- for other harness modules (spec/ngx/singleflight_harness.lua)
M.client, M.err_table = client, err_table

---------------------------------------------------------------------------
-- clients made outside a request (spec/ngx/phases_spec.lua, post_once_spec.lua): one at module
-- level in init_by_lua, one per worker in init_worker_by_lua; and a count of libcurl sessions

local shared_clients = {}
local sessions = 0

-- init_by_lua: wraps core.session to count the libcurl sessions made (it still makes them)
function M.count_sessions()
  local core = require "instagram.core"
  local real = core.session
  core.session = function(...)
    sessions = sessions + 1
    return real(...)
  end
end

function M.make_client(which, extra)
  shared_clients[which] = client(extra)
end

local function pick_client(args)
  local which = args.which or "local"
  if which == "local" then return client({ retries = tonumber(args.retries) or 0 }) end
  return assert(shared_clients[which], "no client " .. which)
end

-- one call on the chosen client in the current phase; reports the transport it used
local function use(args)
  local ngx_transport = require "instagram.ngx"
  local ig = pick_client(args)
  local value, err
  if args.call == "user" then
    value, err = ig:user(args.token, args.id)
  elseif args.call == "exchange_code" then
    value, err = ig:exchange_code(args.code)
  elseif args.call == "sleep" then
    ig:_sleep(tonumber(args.seconds) or 0.01)
    value = { slept = true }
  else
    value, err = ig:me(args.token)
  end
  return {
    phase = ngx.get_phase(),
    is_ngx = getmetatable(ig:_transport()) == ngx_transport.Transport,
    sessions = sessions,
    value = value, err = err_table(err),
  }
end
H.use = use

function H.sessions()
  return { sessions = sessions }
end

-- ngx.timer.at: runs use() in the timer phase and stores its answer in lua_shared_dict results
function H.timer(args)
  local key = "timer:" .. tostring(args.key)
  local ok, terr = ngx.timer.at(0, function()
    local done, out = pcall(use, args)
    ngx.shared.results:set(key, cjson.encode(done and out or { raised = tostring(out) }))
  end)
  return { scheduled = ok, err = terr }
end

-- log_by_lua: the same into lua_shared_dict results (read back with /t/result?key=...)
function M.log_phase()
  local args = ngx.req.get_uri_args()
  local done, out = pcall(use, args)
  ngx.shared.results:set("log:" .. tostring(args.key), cjson.encode(done and out or { raised = tostring(out) }))
end

function H.result(args)
  local text = ngx.shared.results:get(args.key)
  return { ready = text ~= nil, out = text and cjson.decode(text) or nil }
end

-- a pooled connection to the token host first (a GET), then the code-exchange POST, alone or in
-- ig:batch; `warm = 0` skips the GET
function H.exchange(args)
  local ig = client({ retries = 0, timeout = 3 })
  local warm
  if args.warm ~= "0" then
    local w, werr = ig:user(args.token, args.id)
    warm = { ok = w ~= nil, err = err_table(werr) }
  end
  local value, err
  if args.batch == "1" then
    local results = ig:batch({ { "exchange_code", args.code }, { "user", args.token, args.id } })
    value, err = results[1].value, results[1].err
    return { warm = warm, value = value, err = err_table(err), other_ok = results[2].ok }
  end
  value, err = ig:exchange_code(args.code)
  return { warm = warm, value = value, err = err_table(err) }
end

-- a GET after a warm-up GET on the same host, alone or in ig:batch
function H.get_warm(args)
  local ig = client({ retries = 0, timeout = 3 })
  local w = ig:user(args.token, args.id)
  local value, err
  if args.batch == "1" then
    local results = ig:batch({ { "me", args.token } })
    value, err = results[1].value, results[1].err
  else
    value, err = ig:me(args.token)
  end
  return { warm = w ~= nil, value = value, err = err_table(err) }
end

-- the ngx transport against a host name that nginx's resolver cannot answer for
function H.dns(args)
  local t = transport({ timeout = tonumber(args.timeout) or 1, connect_timeout = tonumber(args.connect_timeout) })
  local res, kind, msg = t:request({ method = "GET", url = "https://" .. args.host .. "/me?access_token=SECRET" })
  return res_table(res, kind, msg)
end

function M.run(name, exit)
  answer(H, name)
  if exit then return ngx.exit(ngx.HTTP_OK) end
end

return M
