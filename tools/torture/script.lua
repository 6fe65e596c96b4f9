-- One pass of the allocation-failure torture (tools/torture/torture.c runs it
-- once to count the allocations, then once per allocation to fail). Every
-- core function is called under torture.call (pcall with the failure armed);
-- the outcome must be the right value, nil + a message, or an error whose
-- message is a memory error or a clear message. After a session call fails,
-- the same session (disarmed) must still work, or raise "session is closed".
-- Env: TORTURE_HTTP (the fake Instagram's http base URL), TORTURE_CLOSED_URL
-- (a loopback URL nobody listens on).
local T = torture -- luacheck: ignore 113 (set by the harness)
local core = require "instagram.core"

local HTTP = assert(os.getenv("TORTURE_HTTP"), "TORTURE_HTTP is not set")
local CLOSED = os.getenv("TORTURE_CLOSED_URL") or "http://127.0.0.1:9/"
local n = T.target()

local function fail(what, fmt, ...)
  error(string.format("BAD %s (run %d, failed allocation: %s): " .. fmt, what, n,
    tostring(T.injected()), ...), 0)
end

-- error messages a call may raise when an allocation fails
local MEMORY = {
  "^not enough memory$",
  "out of memory",
}

local function is_clear(msg)
  if type(msg) ~= "string" then return false end
  for _, p in ipairs(MEMORY) do
    if msg:find(p) then return true end
  end
  return false
end

local function deep_equal(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not deep_equal(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

-- Runs f(...) armed. expected: the value a success must return (compared
-- deeply), or a function(value) -> true. may_nil: a nil + message return is
-- allowed. Returns "ok", "nil" or "error" and the value.
local function check(what, expected, may_nil, f, ...)
  local ok, v, msg = T.call(f, ...)
  if not ok then
    if not is_clear(v) then fail(what, "raised %q", tostring(v)) end
    return "error", v
  end
  if v == nil then
    if not may_nil then fail(what, "returned nil (%s)", tostring(msg)) end
    if type(msg) ~= "string" or msg == "" then fail(what, "returned nil without a message") end
    return "nil", msg
  end
  local good
  if type(expected) == "function" then good = expected(v) else good = deep_equal(v, expected) end
  if not good then fail(what, "returned a wrong value %q", tostring(v)) end
  return "ok", v
end

-- pure functions: expected values computed with nothing failing
local ENC_IN = "k &=/?#%+\0\xff caf\xc3\xa9 " .. string.rep("x", 300)
local function pure(what, may_nil, f, ...)
  local expected = f(...)
  check(what, expected, may_nil, f, ...)
end

pure("url_encode", false, core.url_encode, ENC_IN)
pure("url_decode", false, core.url_decode, "a%20b+c%zz%41" .. string.rep("%2F", 200), true)
pure("build_query array", false, core.build_query, { { "b", 1 }, { "a", true }, { "c d", "e&f" } })
pure("build_query map", false, core.build_query, { z = "1", a = "2", m = 3.5, [string.rep("k", 100)] = "v" })
pure("parse_query", false, core.parse_query,
  "https://h/cb?code=AQ12&state=x&state=y&state=z&flag&e=%41%42#_")
pure("quote_big_ints", false, core.quote_big_ints,
  '{"user_id":17841405793187219,"s":"12345678901234567890","n":-98765432109876543210,"x":[1,2]}')
pure("constant_time_equal", false, core.constant_time_equal, "abc", "abc")
pure("hmac_sha256_hex", true, core.hmac_sha256_hex, "eb8c7a1b2c3d4e5f60718293a4b5c6d7", "payload")
pure("base64url_encode", false, core.base64url_encode, ENC_IN)
pure("base64url_decode", true, core.base64url_decode, "aGVsbG8gd29ybGQ")
pure("base64url_decode bad", true, core.base64url_decode, "a$b")

check("random_state", function(v) return type(v) == "string" and #v == 43 and not v:find("[^%w_-]") end,
  true, core.random_state)
check("random_state 256", function(v) return type(v) == "string" and #v == 342 end, true,
  core.random_state, 256)

-- signed_request (Meta's published example)
local SECRET = "secret"
local SR = "N32LNcvDGXq0GI1jxm-tj1ysJh2uqkNIBcUhUmTp19k.eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImV4cGlyZXMiOjEyOT"
  .. "E4NDA0MDAsImlzc3VlZF9hdCI6MTI5MTgzNjgwMCwidXNlcl9pZCI6IjIxODQ3MSJ9"
local good_payload = core.verify_signed_request(SR, SECRET)
if good_payload == nil then
  -- not the secret of this example: sign our own
  local payload = core.base64url_encode('{"algorithm":"HMAC-SHA256","user_id":"218471"}')
  local mac = core.hmac_sha256_hex(SECRET, payload)
  local bytes = mac:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
  SR = core.base64url_encode(bytes) .. "." .. payload
  local why
  good_payload, why = core.verify_signed_request(SR, SECRET)
  assert(good_payload, why)
end
check("verify_signed_request good", good_payload, true, core.verify_signed_request, SR, SECRET)
local kind, msg = check("verify_signed_request bad", nil, true, core.verify_signed_request,
  SR:sub(1, -3) .. "xx", SECRET)
if kind == "nil" and not (msg:find("signature") or msg:find("HMAC")) then
  fail("verify_signed_request bad", "message %q", msg)
end

-- webhook_verify: two secrets, the second one signed
local WH_BODY = '{"object":"instagram","entry":[{"id":"1","time":1,"changes":[]}]}'
local WH_SIG = "sha256=" .. core.hmac_sha256_hex(SECRET, WH_BODY)
local WH_BAD = WH_SIG:sub(1, -2) .. (WH_SIG:sub(-1) == "0" and "1" or "0")
check("webhook_verify good", 2, true, core.webhook_verify, WH_BODY, WH_SIG, { "other", SECRET })
check("webhook_verify bad", nil, true, core.webhook_verify, WH_BODY, WH_BAD, { SECRET })

-- ---------- sessions ----------

local OPTS = { allow_http = true, user_agent = "lua-instagram-torture", ca_file = "/nonexistent/ca.pem",
  timeout = 10, connect_timeout = 5, max_response_bytes = 1024 * 1024 }

local function is_session(v) return tostring(v):find("^instagram%.session %(0x") ~= nil end

local function new_session()
  local kind_, s = check("session", is_session, true, core.session, OPTS)
  if kind_ ~= "ok" then
    if kind_ == "nil" and not s:find("^session: ") then fail("session", "message %q", s) end
    s = core.session(OPTS) -- disarmed: must work
  end
  return s
end

local PING = HTTP .. "/__fake/ping"
local function is_ping(r)
  return type(r) == "table" and r.status == 200 and type(r.body) == "string" and r.body:find('"ok":true', 1, true)
    and type(r.headers) == "table" and r.headers["content-type"] ~= nil
end

-- a later call on the same session, nothing failing: must work, or say closed
local function still_works(s, what, req, expect, opts)
  req, expect = req or { url = PING }, expect or is_ping
  local ok, r, k, m = pcall(s.perform, s, req)
  if not ok then
    if not tostring(r):find("session is closed", 1, true) then fail(what .. " then perform", "raised %q", r) end
    return
  end
  if r == nil and opts then
    -- a new session failing the same way means the broken state is the
    -- library's (OpenSSL keeps some failed one-time initialisations for the
    -- life of the process), not this session's: noted, not failed
    local fresh = core.session(opts)
    local r2, k2, m2 = fresh:perform(req)
    fresh:close()
    if r2 == nil and k2 == k then
      T.note(string.format("%s: a later call fails, on a new session too: %s %s / %s", what, k, m, m2))
      return
    end
  end
  if r == nil or not expect(r) then
    fail(what .. " then perform", "got %s %s %s (status %s)", tostring(r), tostring(k), tostring(m),
      type(r) == "table" and tostring(r.status) or "-")
  end
end

-- a transfer's error result must have a known kind and a message
local KINDS = { network = true, timeout = true, tls = true, response = true }
local function check_perform(what, s, expect, req, again, opts)
  local ok, r, k, m = T.call(s.perform, s, req)
  if not ok then
    if not is_clear(r) then fail(what, "raised %q", tostring(r)) end
  elseif r == nil then
    if not KINDS[k] or type(m) ~= "string" or m == "" then
      fail(what, "returned nil, %s, %s", tostring(k), tostring(m))
    end
  elseif not expect(r) then
    fail(what, "returned a wrong response (status %s)", tostring(r.status))
  end
  if again then still_works(s, what, req, expect, opts) else still_works(s, what) end
end

local s = new_session()
check("tostring", is_session, false, tostring, s)

-- refused: nil, "network", message (or a memory error)
do
  local ok, r, k, m = T.call(s.perform, s, { url = CLOSED .. "me?access_token=SECRET" })
  if not ok then
    if not is_clear(r) then fail("perform refused", "raised %q", tostring(r)) end
  elseif r ~= nil or not KINDS[k] or type(m) ~= "string" or m:find("SECRET", 1, true) then
    fail("perform refused", "returned %s, %s, %s", tostring(r), tostring(k), tostring(m))
  end
  still_works(s, "perform refused")
end

check_perform("perform GET", s, is_ping,
  { url = PING, headers = { Accept = "application/json", ["X-Empty"] = "", ["X-Num"] = 42 } })
check_perform("perform POST", s, function(r)
  return r.status == 400 and r.body:find("client_id", 1, true) ~= nil
end, { method = "POST", url = HTTP .. "/oauth/access_token", body = "grant_type=authorization_code",
  headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } })
-- a body that makes the buffer grow several times, and one over the cap (chunked)
check_perform("perform big body", s, function(r)
  return r.status == 200 and #r.body == 100000 and r.body:sub(1, 9) == '{"data":"'
end, { url = HTTP .. "/torture/big" })
do
  local ok, r, k, m = T.call(s.perform, s, { url = HTTP .. "/torture/huge" })
  if not ok then
    if not is_clear(r) then fail("perform over the cap", "raised %q", tostring(r)) end
  elseif r ~= nil or not KINDS[k] or type(m) ~= "string" then
    fail("perform over the cap", "returned %s, %s, %s", tostring(r), tostring(k), tostring(m))
  end
  still_works(s, "perform over the cap")
end
check_perform("perform scheme", s, function() return false end, { url = "ftp://127.0.0.1/" })

-- prepared requests (sess:prepare): a failed allocation while preparing is a clear error; a
-- prepared request sends as its table does, and again
local function is_token_400(r) return r.status == 400 and r.body:find("client_id", 1, true) ~= nil end
for _, case in ipairs({
  { "prepare GET", is_ping, { url = PING, headers = { Accept = "application/json", ["X-Num"] = 42 } } },
  { "prepare POST", is_token_400, { method = "POST", url = HTTP .. "/oauth/access_token",
    body = "grant_type=authorization_code", headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } } },
}) do
  local ok, r = T.call(s.prepare, s, case[3])
  if not ok then
    if not is_clear(r) then fail(case[1], "raised %q", tostring(r)) end
  elseif not tostring(r):find("^instagram%.request %(") then
    fail(case[1], "returned %s", tostring(r))
  else
    check_perform(case[1] .. " then perform", s, case[2], r, true)
  end
end

-- fetch_object (the kept usual GET's short way): the usual success decoded, or a clear error. Its
-- decode is plain Lua here: lua-cjson is not under torture (when the Lua allocator fails in the
-- middle of a decode, lua-cjson loses its own buffer)
do
  local function decode(text) return { ok = text:find('"ok":true', 1, true) ~= nil, n = 1.0 } end
  local made, prepared = T.call(s.prepare, s, { url = PING })
  if not made then
    if not is_clear(prepared) then fail("fetch_object prepare", "raised %q", tostring(prepared)) end
  else
    local ok, v, k = T.call(s.fetch_object, s, prepared, decode)
    if not ok then
      if not is_clear(v) then fail("fetch_object", "raised %q", tostring(v)) end
    elseif v == nil then
      if not KINDS[k] then fail("fetch_object", "returned nil, %s", tostring(k)) end
    elseif type(v) ~= "table" or v.ok ~= true then
      fail("fetch_object", "returned %s", tostring(v))
    end
    still_works(s, "fetch_object", prepared, is_ping)
  end
end

do
  local reqs = {
    { url = PING },
    { url = HTTP .. "/me" },
    { url = CLOSED },
    { url = PING, timeout = 5 },
  }
  local ok, res = T.call(s.perform_many, s, reqs, 2)
  if not ok then
    if not is_clear(res) then fail("perform_many", "raised %q", tostring(res)) end
  else
    if type(res) ~= "table" or #res ~= #reqs then fail("perform_many", "returned %s entries", tostring(#res)) end
    for i, r in ipairs(res) do
      if r.error then
        if not KINDS[r.error] or type(r.message) ~= "string" then
          fail("perform_many", "entry %d: %s %s", i, tostring(r.error), tostring(r.message))
        end
      elseif i == 3 then
        fail("perform_many", "entry 3 (refused) has status %s", tostring(r.status))
      elseif (i == 1 or i == 4) and not is_ping(r) then
        fail("perform_many", "entry %d has status %s", i, tostring(r.status))
      elseif i == 2 and r.status ~= 400 then
        fail("perform_many", "entry 2 has status %s", tostring(r.status))
      end
    end
  end
  still_works(s, "perform_many")
end

-- TLS (TORTURE_TLS=1 in the runner: many more OpenSSL allocations)
local HTTPS, CA = os.getenv("TORTURE_HTTPS"), os.getenv("TORTURE_CA")
if HTTPS and CA then
  local topts = { ca_file = CA, timeout = 10 }
  local st = core.session(topts)
  local function is_graph_400(r) return r.status == 400 and r.body:find("access token", 1, true) ~= nil end
  check_perform("perform https", st, is_graph_400, { url = HTTPS .. "/me" }, true, topts)
  st:close()
end

-- close, then a closed session says so
do
  local ok, e = T.call(s.close, s)
  if not ok and not is_clear(e) then fail("close", "raised %q", tostring(e)) end
  s:close()
  local ok2, e2 = pcall(s.perform, s, { url = PING })
  if ok2 or not tostring(e2):find("perform: session is closed", 1, true) then
    fail("closed session", "perform gave %s", tostring(e2))
  end
  if tostring(s) ~= "instagram.session (closed)" then fail("closed session", "tostring %s", tostring(s)) end
end

-- a session used once and left to the garbage collector (its __gc under failure)
do
  local s2 = new_session()
  s2:perform({ url = PING })
  s2 = nil -- luacheck: ignore
  local ok, e = T.call(collectgarbage)
  if not ok and not is_clear(e) then fail("collectgarbage", "raised %q", tostring(e)) end
end

-- a session made and used entirely while failing
do
  local ok, e = T.call(function()
    local s3, why3 = core.session({ allow_http = true })
    if not s3 then return why3 end
    local r = s3:perform({ url = PING })
    s3:close()
    return r
  end)
  if not ok and not is_clear(e) then fail("session lifecycle", "raised %q", tostring(e)) end
end
collectgarbage()
