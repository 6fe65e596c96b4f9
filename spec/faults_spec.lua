-- The fault catalogue (SECURITY.md §4, retries §5): every fault of the fake Instagram against every
-- request method, one row per fault x method. Each row checks the error kind and flags, how many
-- requests reached the fake (retries only for transient faults of GETs, the code exchange POST
-- exactly once), that no secret shows in the error, and that the call came back in bounded time.
-- These rows run the default transport outside nginx (libcurl). The rows for the ngx (cosocket)
-- transport, which need a real nginx, are in spec/ngx/post_once_spec.lua: close, reset and
-- reset_mid_headers on the code-exchange POST (alone and in ig:batch) with a pooled connection to
-- the token host in reach, where the fake must see the code exactly once, on a fresh connection, and
-- the caller gets kind network; plus the GET rows where the stale-connection retry still applies.
local instagram = require "instagram"
local Fake = require "spec.support.fake"
local socket = require "socket"

local BD_APP = "684477648739411"
local SECRET = "SECRET_SENTINEL_9d41c7e2b05a6f38"
local REDIRECT = "https://localhost/auth/"
local USER_ID = "17841405793187219" -- jayposiris
local TIMEOUT = 1                   -- seconds, per attempt
local RETRIES = 1                   -- extra tries for GETs
local MARGIN = 3                    -- seconds on top of TIMEOUT x attempts: a bound on hanging
local MAX_BYTES = 64 * 1024         -- max_response_bytes
local BIG = 16 * 1024 * 1024        -- oversize and gzip-bomb bodies (inflated)
local DAY = 86400

---------------------------------------------------------------------------
-- the methods: what to prepare on the fake, how to call, which path the fault goes on

-- ctx = {token, long, code}; call(ig, ctx) -> value, err, extra (batch: the healthy call's result)
local function batch_pair(first)
  return function(ig, ctx)
    local results = ig:batch({ first(ctx), { "user", ctx.token, USER_ID } })
    assert.equal(2, #results)
    local r = results[1]
    if r.ok then return r.value, nil, results[2] end
    return nil, r.err, results[2]
  end
end

local METHODS = {
  { name = "exchange_code", path = "/oauth/access_token", post = true,
    call = function(ig, ctx) return ig:exchange_code(ctx.code) end },
  { name = "me", path = "/me",
    call = function(ig, ctx) return ig:me(ctx.token) end },
  { name = "media", path = "/me/media",
    call = function(ig, ctx) return ig:media(ctx.token) end },
  { name = "exchange_token", path = "/access_token",
    call = function(ig, ctx) return ig:exchange_token(ctx.token) end },
  { name = "refresh_token", path = "/refresh_access_token",
    call = function(ig, ctx) return ig:refresh_token(ctx.long) end },
  { name = "batch:me", path = "/me", batch = true,
    call = batch_pair(function(ctx) return { "me", ctx.token } end) },
  { name = "batch:exchange_code", path = "/oauth/access_token", post = true, batch = true,
    call = batch_pair(function(ctx) return { "exchange_code", ctx.code } end) },
}

---------------------------------------------------------------------------
-- what a successful answer of each method looks like (rows where the fault is survivable)

local function token_ok(value)
  assert.is_table(value)
  assert.is_string(value.access_token)
  assert.matches("^IGQVJ", value.access_token)
end

local NORMAL = {
  exchange_code = function(v) token_ok(v); assert.equal(USER_ID, v.user_id) end,
  me = function(v) assert.same({ id = USER_ID, username = "jayposiris" }, v) end,
  media = function(v) assert.is_table(v.data); assert.equal(7, #v.data) end,
  exchange_token = function(v) token_ok(v); assert.equal(5184000, v.expires_in) end,
  refresh_token = function(v) token_ok(v); assert.equal(5184000, v.expires_in) end,
}
NORMAL["batch:me"] = NORMAL.me
NORMAL["batch:exchange_code"] = NORMAL.exchange_code

local function base(m) return (m.name:gsub("^batch:", "")) end

---------------------------------------------------------------------------
-- the faults
--
-- expect: kind, status, transient, rate_limited, retry_after, code: compared with the error (a key
-- given as false means "must be nil"); ok = function(method, value): the call succeeds instead.
-- A transient error makes a GET try 1 + RETRIES times; everything else is tried once.
-- Transport failures after the headers arrived leave `status` unconstrained (not asserted either way).
-- refused: the client points at a closed port (nothing reaches the fake).
-- replay: the connection dies before any reply byte. When that connection was a reused (kept-alive)
-- one, libcurl silently re-sends the request once on a fresh connection (docs/INTERNALS.md: no option
-- turns that off), so a GET attempt may reach the server twice; a POST always gets a fresh connection
-- and so goes out exactly once (on the ngx transport too: spec/ngx/post_once_spec.lua).

local NOT = false

local FAULTS = {
  { name = "connection refused", refused = true,
    expect = { kind = "network", transient = true, status = NOT } },
  { name = "close", replay = true, spec = { mode = "close" },
    expect = { kind = "network", transient = true, status = NOT } },
  { name = "reset", replay = true, spec = { mode = "reset" },
    expect = { kind = "network", transient = true, status = NOT } },
  -- the same two on a kept-alive connection (a successful request to the same host went first): the
  -- everyday case of a server closing an idle connection just as the client reuses it
  { name = "close on a reused connection", warm = true, replay = true, spec = { mode = "close" },
    expect = { kind = "network", transient = true, status = NOT } },
  { name = "reset on a reused connection", warm = true, replay = true, spec = { mode = "reset" },
    expect = { kind = "network", transient = true, status = NOT } },
  { name = "reset_mid_headers", spec = { mode = "reset_mid_headers" },
    expect = { kind = "network", transient = true, status = NOT } },
  { name = "reset_mid_body", spec = { mode = "reset_mid_body" },
    expect = { kind = "network", transient = true } },
  { name = "fin_mid_body", spec = { mode = "fin_mid_body" },
    expect = { kind = "network", transient = true } },
  { name = "stall beyond timeout", spec = { mode = "stall", seconds = TIMEOUT + 3 },
    expect = { kind = "timeout", transient = true, status = NOT } },
  { name = "trickle", spec = { mode = "trickle", interval = 0.25 },
    expect = { kind = "timeout", transient = true } },
  { name = "bad_length_long", spec = { mode = "bad_length_long" },
    expect = { kind = "network", transient = true } },
  -- libcurl reads Content-Length bytes (half the JSON) and drops the rest: the JSON is cut
  { name = "bad_length_short", spec = { mode = "bad_length_short" },
    expect = { kind = "response", transient = NOT, status = 200 } },
  { name = "broken_chunked", spec = { mode = "broken_chunked" },
    expect = { kind = "network", transient = true } },
  { name = "500 Graph error", spec = { status = 500 },
    expect = { kind = "api", status = 500, code = 2, transient = true, rate_limited = NOT } },
  { name = "502 Graph error", spec = { status = 502 },
    expect = { kind = "api", status = 502, code = 1, transient = true, rate_limited = NOT } },
  { name = "503 Graph error", spec = { status = 503 },
    expect = { kind = "api", status = 503, code = 2, transient = true, rate_limited = NOT } },
  { name = "html_500", spec = { mode = "html_500" },
    expect = { kind = "http", status = 500, transient = true, code = NOT } },
  { name = "429 Retry-After: 2", spec = { mode = "retry_after", retry_after = "2" },
    expect = { kind = "api", status = 429, code = 4, rate_limited = true, retry_after = 2, transient = true },
    waits = 2 },
  { name = "429 Retry-After: garbage", spec = { mode = "retry_after", retry_after = "soon-ish, maybe" },
    expect = { kind = "api", status = 429, code = 4, rate_limited = true, retry_after = NOT, transient = true } },
  -- 200 with an error body: Graph code 1 (transient) on Graph paths, the flat OAuth shape (code 400) on /oauth
  { name = "error_200", spec = { mode = "error_200" },
    expect = { kind = "api", status = 200, code = 1, transient = true },
    oauth_expect = { kind = "api", status = 200, code = 400, type = "OAuthException", transient = NOT } },
  { name = "invalid JSON", spec = { status = 200, body = '{"access_token": IGQVJ-not-json, "id": }' },
    expect = { kind = "response", status = 200, transient = NOT } },
  { name = "truncated_json", spec = { mode = "truncated_json" },
    expect = { kind = "response", status = 200, transient = NOT } },
  { name = "empty body", spec = { mode = "empty" },
    expect = { kind = "response", status = 200, transient = NOT } },
  { name = "JSON nested 10000 deep", spec = { mode = "deep_json", depth = 10000 },
    expect = { kind = "response", status = 200, transient = NOT } },
  -- RFC 8259 §8.1: JSON between systems MUST be UTF-8; a body that is not is malformed data
  { name = "invalid UTF-8", spec = { mode = "invalid_utf8" },
    expect = { kind = "response", status = 200, transient = NOT } },
  -- lua-cjson keeps the last of duplicate keys; the fake puts the decoy first, so the real value wins
  { name = "duplicate keys (last wins)", spec = { mode = "dup_keys" },
    ok = function(m, value)
      NORMAL[base(m)](value)
      local text = require("cjson").encode(value)
      assert.is_nil(text:find("DUPLICATE_KEY_DECOY", 1, true))
    end },
  { name = "oversize with Content-Length", memory = true, spec = { mode = "oversize", bytes = BIG },
    expect = { kind = "response", transient = NOT, message = "response body larger than " .. MAX_BYTES .. " bytes" } },
  { name = "oversize chunked", memory = true, spec = { mode = "oversize", bytes = BIG, length = false },
    expect = { kind = "response", transient = NOT, message = "response body larger than " .. MAX_BYTES .. " bytes" } },
  -- no Accept-Encoding is sent and nothing is inflated: the gzip bytes (about 16 KB) fail JSON decoding
  { name = "gzip bomb", memory = true, gzip = true, spec = { mode = "gzip_bomb", bytes = BIG },
    expect = { kind = "response", status = 200, transient = NOT, message = "response body is not valid JSON" } },
  { name = "302 redirect", redirect = true,
    spec = function(fake, m) return { status = 302, headers = { Location = fake.alt .. m.path } } end,
    expect = { kind = "http", status = 302, transient = NOT, code = NOT } },
}

---------------------------------------------------------------------------
-- helpers

-- every string in the error (fields, nested tables) and its tostring
local function error_text(err)
  local parts = { tostring(err) }
  local seen = {}
  local function walk(t)
    if seen[t] then return end
    seen[t] = true
    for k, v in pairs(t) do
      parts[#parts + 1] = tostring(k)
      if type(v) == "table" then walk(v) else parts[#parts + 1] = tostring(v) end
    end
  end
  walk(err)
  return table.concat(parts, "\n")
end

local function assert_no_secret(err, secrets)
  local text = error_text(err)
  for _, s in ipairs(secrets) do
    assert.is_nil(text:find(s, 1, true), "secret leaked into the error: " .. text)
  end
end

-- peak resident set size of this process, in KiB (Linux), or nil
local function peak_rss_kb()
  local f = io.open("/proc/self/status", "r")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  return tonumber(text:match("VmHWM:%s*(%d+)"))
end

-- a loopback port nobody listens on
local function closed_port() return require("spec.support.nginx").free_ports(1)[1] end

---------------------------------------------------------------------------

describe("the fault catalogue (SECURITY.md §4)", function()
  local fake
  local rows = 0

  setup(function()
    fake = Fake.start({ quiet = true })
  end)

  teardown(function()
    if fake then fake:stop() end
  end)

  before_each(function()
    fake:reset()
    fake:config({ apps = { [BD_APP] = { secret = SECRET } } })
  end)

  local function client(endpoints, sleeps)
    return instagram.new({
      app_id = BD_APP,
      app_secret = SECRET,
      redirect_uri = REDIRECT,
      api = "basic_display",
      endpoints = endpoints or fake:endpoints(),
      ca_file = fake.ca_file,
      timeout = TIMEOUT,
      connect_timeout = TIMEOUT,
      retries = RETRIES,
      max_response_bytes = MAX_BYTES,
      sleep = function(s) sleeps[#sleeps + 1] = s end,
    })
  end

  local function run_row(fault, m)
    local ctx = {
      token = fake:issue_token("jayposiris", { kind = "short" }),
      long = fake:issue_token("jayposiris", { kind = "long", age = 2 * DAY + 60 }),
      code = fake:issue_code(BD_APP),
    }
    local secrets = { SECRET, ctx.token, ctx.long, ctx.code }
    local sleeps = {}
    local endpoints
    if fault.refused then
      local dead = "https://127.0.0.1:" .. closed_port()
      endpoints = { authorize = dead .. "/oauth/authorize", token = dead .. "/oauth/access_token", graph = dead }
    end
    local ig = client(endpoints, sleeps)
    if fault.warm then
      -- leave a kept-alive connection to the host in the client's pool
      assert(ig:user(ctx.token, USER_ID))
      fake:clear_log()
    end
    if fault.spec then
      local spec = fault.spec
      if type(spec) == "function" then spec = spec(fake, m) end
      fake:fault(m.path, spec)
    end

    local mem_before, rss_before
    if fault.memory then
      collectgarbage("collect")
      collectgarbage("stop")
      mem_before, rss_before = collectgarbage("count"), peak_rss_kb()
    end
    local t0 = socket.gettime()
    local ok, value, err, other = pcall(m.call, ig, ctx)
    local elapsed = socket.gettime() - t0
    local mem_growth, rss_growth
    if fault.memory then
      mem_growth = collectgarbage("count") - mem_before
      rss_growth = rss_before and (peak_rss_kb() - rss_before)
      collectgarbage("restart")
    end
    ig:close()
    assert(ok, "the call raised: " .. tostring(value))

    local log = fake:log(m.path)
    local expect = (m.post and fault.oauth_expect) or fault.expect

    if fault.ok then
      assert.is_nil(err, err and tostring(err))
      fault.ok(m, value)
      assert.equal(1, #log)
    else
      assert.is_nil(value)
      assert.is_table(err, "nil without an error")
      for key, want in pairs(expect) do
        if want == NOT then
          assert.is_nil(err[key], key .. " should be nil: " .. tostring(err[key]))
        else
          assert.equal(want, err[key], key .. " (" .. tostring(err) .. ")")
        end
      end
      assert_no_secret(err, secrets)

      -- retries: the POST never; a GET 1 + RETRIES times for transient errors
      local attempts = (not m.post and expect.transient) and 1 + RETRIES or 1
      if fault.refused then
        assert.equal(0, #fake:log())
      elseif fault.replay and not m.post then
        assert.is_true(#log >= attempts and #log <= 2 * attempts,
          string.format("%d requests reached the fake for %s, %d attempt(s)", #log, m.path, attempts))
      else
        assert.equal(attempts, #log, "requests that reached the fake for " .. m.path)
      end
      if fault.waits then
        if m.post then
          assert.same({}, sleeps)
        else
          assert.equal(RETRIES, #sleeps)
          assert.is_true(sleeps[1] >= fault.waits, "slept " .. tostring(sleeps[1]))
        end
      end
      assert.is_true(elapsed <= TIMEOUT * attempts + MARGIN,
        string.format("took %.2f s for %d attempt(s)", elapsed, attempts))
    end

    -- the companion call of a batch is not disturbed by the fault on the other one
    if m.batch and not fault.refused then
      assert.is_true(other.ok, other.err and tostring(other.err))
      assert.equal(USER_ID, other.value.id)
    end
    if fault.redirect then
      assert.equal(0, #fake:log(function(e) return e.port == fake.ports.alt end))
    end
    if fault.gzip then
      for _, e in ipairs(log) do assert.is_nil(e.headers["accept-encoding"]) end
    end
    if fault.memory then
      -- the body never becomes a Lua string, nor lands whole in C memory
      assert.is_true(mem_growth < 4 * MAX_BYTES / 1024 + 512,
        string.format("Lua heap grew by %.0f KiB", mem_growth))
      if rss_growth then
        assert.is_true(rss_growth < BIG / 1024 / 2, string.format("peak RSS grew by %d KiB", rss_growth))
      end
    end
  end

  for _, fault in ipairs(FAULTS) do
    for _, m in ipairs(METHODS) do
      rows = rows + 1
      local name = fault.name .. " x " .. m.name
      it(name, function() run_row(fault, m) end)
    end
  end

  it("covers every fault x method row", function()
    assert.equal(#FAULTS * #METHODS, rows)
    assert.equal(30 * 7, rows)
    print(string.format("\nfault catalogue: %d faults x %d methods = %d rows", #FAULTS, #METHODS, rows))
  end)
end)

---------------------------------------------------------------------------
-- The business methods (publishing, comments, insights): which are retried and which never are.
-- Idempotent ones (GETs, create_container, hide, delete, comment switch) try 1 + RETRIES times on a
-- transient fault; a publish, a reply and a private reply go out exactly once, and when no answer
-- came back their error says outcome_unknown.

describe("the fault catalogue: business methods (PLATFORM.md §2–§3)", function()
  local fake
  local IL_APP = "990602627938098"
  local IL_SECRET = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
  local IMG = "https://cdn.example.com/photo.jpg"

  setup(function() fake = Fake.start({ quiet = true }) end)
  teardown(function() if fake then fake:stop() end end)
  before_each(function() fake:reset() end)

  local function client(sleeps)
    return instagram.new({
      app_id = IL_APP, app_secret = IL_SECRET, redirect_uri = REDIRECT, api = "instagram_login",
      endpoints = fake:endpoints(), ca_file = fake.ca_file, timeout = TIMEOUT, connect_timeout = TIMEOUT,
      retries = RETRIES, sleep = function(s) if sleeps then sleeps[#sleeps + 1] = s end end,
    })
  end

  -- prepare(ig, token) -> ctx; path(ctx) -> the raw path the fault goes on; call(ig, token, ctx)
  local function first_comment(ig, token)
    local media = assert(ig:media(token, { fields = "id", limit = 1 })).data[1].id
    return { media = media, comment = assert(ig:comments(token, media)).data[1].id }
  end
  local function finished_container(ig, token)
    local c = assert(ig:create_container(token, { type = "IMAGE", image_url = IMG }))
    assert(ig:wait_container(token, c.id, { initial = 0 }))
    return { container = c.id }
  end
  local BUSINESS = {
    { name = "create_container", idempotent = true, path = function() return "/me/media" end,
      call = function(ig, t) return ig:create_container(t, { type = "IMAGE", image_url = IMG }) end },
    { name = "container_status", idempotent = true, prepare = finished_container,
      path = function(ctx) return "/" .. ctx.container end,
      call = function(ig, t, ctx) return ig:container_status(t, ctx.container) end },
    { name = "reconcile", idempotent = true, prepare = finished_container,
      path = function(ctx) return "/" .. ctx.container end,
      call = function(ig, t, ctx) return ig:reconcile(t, ctx.container) end },
    { name = "publish", idempotent = false, prepare = finished_container,
      path = function() return "/me/media_publish" end,
      call = function(ig, t, ctx) return ig:publish(t, ctx.container) end },
    { name = "publishing_limit", idempotent = true, path = function() return "/me/content_publishing_limit" end,
      call = function(ig, t) return ig:publishing_limit(t) end },
    { name = "comments", idempotent = true, prepare = first_comment,
      path = function(ctx) return "/" .. ctx.media .. "/comments" end,
      call = function(ig, t, ctx) return ig:comments(t, ctx.media) end },
    { name = "reply", idempotent = false, prepare = first_comment,
      path = function(ctx) return "/" .. ctx.comment .. "/replies" end,
      call = function(ig, t, ctx) return ig:reply(t, ctx.comment, "thanks") end },
    { name = "private_reply", idempotent = false, prepare = first_comment,
      path = function() return "/me/messages" end,
      call = function(ig, t, ctx) return ig:private_reply(t, ctx.comment, "hi") end },
    { name = "hide_comment", idempotent = true, prepare = first_comment,
      path = function(ctx) return "/" .. ctx.comment end,
      call = function(ig, t, ctx) return ig:hide_comment(t, ctx.comment, true) end },
    { name = "delete_comment", idempotent = true, prepare = first_comment,
      path = function(ctx) return "/" .. ctx.comment end,
      call = function(ig, t, ctx) return ig:delete_comment(t, ctx.comment) end },
    { name = "set_comments_enabled", idempotent = true, prepare = first_comment,
      path = function(ctx) return "/" .. ctx.media end,
      call = function(ig, t, ctx) return ig:set_comments_enabled(t, ctx.media, false) end },
    { name = "account_insights", idempotent = true, path = function() return "/me/insights" end,
      call = function(ig, t) return ig:account_insights(t, { metrics = "reach", metric_type = "total_value" }) end },
    { name = "media_insights", idempotent = true, prepare = first_comment,
      path = function(ctx) return "/" .. ctx.media .. "/insights" end,
      call = function(ig, t, ctx) return ig:media_insights(t, ctx.media, "reach") end },
  }
  -- no_answer: the request may have been processed, no answer arrived
  local BUSINESS_FAULTS = {
    { name = "close", spec = { mode = "close" }, kind = "network", no_answer = true },
    { name = "drop after the handler ran", spec = { mode = "drop_after" }, kind = "network", no_answer = true },
    { name = "reset_mid_body", spec = { mode = "reset_mid_body" }, kind = "network", no_answer = true },
    { name = "stall beyond timeout", spec = { mode = "stall", seconds = TIMEOUT + 3 }, kind = "timeout",
      no_answer = true },
    { name = "503 Graph error", spec = { status = 503 }, kind = "api" },
  }

  for _, fault in ipairs(BUSINESS_FAULTS) do
    for _, m in ipairs(BUSINESS) do
      it(fault.name .. " x " .. m.name, function()
        local token = fake:issue_token("biz", { kind = "long" })
        local ctx = m.prepare and m.prepare(client(), token) or {}
        local path = m.path(ctx)
        fake:clear_log()
        fake:fault(path, fault.spec)
        local sleeps = {}
        local ig = client(sleeps)
        local ok, value, err = pcall(m.call, ig, token, ctx)
        ig:close()
        assert(ok, "the call raised: " .. tostring(value))
        assert.is_nil(value)
        assert.equal(fault.kind, err.kind, tostring(err))
        assert.is_true(err.transient)
        local attempts = m.idempotent and 1 + RETRIES or 1
        assert.equal(attempts, #fake:log(path), "requests for " .. path)
        assert.equal(attempts - 1, #sleeps)
        if not m.idempotent and fault.no_answer then
          assert.is_true(err.outcome_unknown, m.name .. " should say outcome_unknown")
        else
          assert.is_nil(err.outcome_unknown)
        end
        assert_no_secret(err, { IL_SECRET, token })
      end)
    end
  end
end)
