-- instagram.core.session: misuse, lifecycle, and transfers against a tiny
-- plain-HTTP server on 127.0.0.1 run in a child process (lua5.4 + luasocket).
local core = require "instagram.core"
local socket = require "socket"

-- Routes: /echo (method, target, request headers, body), /stream?n= (no length,
-- then close), /sized?n=, /slow (headers, then stalls), /redirect, /interim
-- (100 then 201), /garbage (not HTTP), /bighead, /answer?s=STATUS&b=BODY[&u=USAGE]
-- (percent-encoded body; u: an X-App-Usage header), /quit. A second port answers
-- every connection with plain-text garbage at once (for TLS failures).
local SERVER = [==[
local socket = require "socket"
local srv = assert(socket.bind("127.0.0.1", 0))
local junk = assert(socket.bind("127.0.0.1", 0))
local _, port = srv:getsockname()
local _, junk_port = junk:getsockname()
io.stdout:write(port, " ", junk_port, "\n")
io.stdout:flush()
srv:settimeout(0)
junk:settimeout(0)
local clients, ids, nconn = {}, {}, 0

local function drop(c)
  for i = #clients, 1, -1 do if clients[i] == c then table.remove(clients, i) end end
  c:close()
end

local function respond(c, status, headers, body)
  local out = { "HTTP/1.1 " .. status .. "\r\n" }
  for _, h in ipairs(headers) do out[#out + 1] = h .. "\r\n" end
  out[#out + 1] = "\r\n"
  out[#out + 1] = body or ""
  c:send(table.concat(out))
end

local function handle(c)
  c:settimeout(5)
  local line = c:receive("*l")
  if not line then return drop(c) end
  local method, target = line:match("^(%S+) (%S+)")
  if not method then return drop(c) end
  local path, query = target:match("^([^?]*)%??(.*)$")
  local headers, len = {}, 0
  while true do
    local h = c:receive("*l")
    if not h or h == "" then break end
    headers[#headers + 1] = h:lower()
    local n = h:match("^[Cc]ontent%-[Ll]ength:%s*(%d+)")
    if n then len = tonumber(n) end
  end
  local body = len > 0 and c:receive(len) or ""
  local n = tonumber(query:match("n=(%d+)") or "0")
  if path == "/quit" then
    respond(c, "200 OK", { "Content-Length: 0", "Connection: close" })
    os.exit(0)
  elseif path == "/echo" then
    table.sort(headers)
    local text = method .. "\n" .. target .. "\n" .. table.concat(headers, "\n") .. "\n\n" .. body
    respond(c, "200 OK", { "Content-Length: " .. #text, "X-Conn: " .. ids[c],
      "X-Dup: a", "x-dup: b", "Content-Type: text/plain", "X-Empty:", "X-Spaced:   v  " }, text)
  elseif path == "/stream" then
    respond(c, "200 OK", { "Connection: close" })
    local chunk = ("x"):rep(1000)
    for _ = 1, math.ceil(n / 1000) do
      if not c:send(chunk) then break end
    end
    return drop(c)
  elseif path == "/sized" then
    respond(c, "200 OK", { "Content-Length: " .. n }, ("y"):rep(n))
  elseif path == "/slow" then
    c:send("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    socket.sleep(1.5)
    return drop(c)
  elseif path == "/redirect" then
    respond(c, "302 Found", { "Location: /echo", "Content-Length: 3" }, "moo")
  elseif path == "/interim" then
    c:send("HTTP/1.1 100 Continue\r\nX-Interim: yes\r\n\r\n")
    respond(c, "201 Created", { "Content-Length: 2", "X-Final: yes" }, "ok")
  elseif path == "/garbage" then
    c:send("this is not http\r\n\r\n")
    return drop(c)
  elseif path == "/answer" then
    local function arg(k)
      local v = query:match("[?&]?" .. k .. "=([^&]*)")
      return v and (v:gsub("%%(%x%x)", function(x) return string.char(tonumber(x, 16)) end))
    end
    local b = arg("b") or ""
    local hs = { "Content-Length: " .. #b, "Content-Type: application/json" }
    if arg("u") then hs[#hs + 1] = "X-App-Usage: " .. arg("u") end
    respond(c, arg("s") .. " Answer", hs, b)
  elseif path == "/bighead" then
    local hs = { "Content-Length: 0" }
    for i = 1, 400 do hs[#hs + 1] = "X-H" .. i .. ": " .. ("h"):rep(1000) end
    respond(c, "200 OK", hs)
  else
    respond(c, "404 Not Found", { "Content-Length: 0" })
  end
end

while true do
  local watch = { srv, junk }
  for _, c in ipairs(clients) do watch[#watch + 1] = c end
  local readable = socket.select(watch, nil, 20)
  if #readable == 0 then os.exit(0) end
  for _, s in ipairs(readable) do
    if s == srv then
      local c = srv:accept()
      if c then
        nconn = nconn + 1
        ids[c] = nconn
        clients[#clients + 1] = c
      end
    elseif s == junk then
      local c = junk:accept()
      if c then
        c:send("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        c:close()
      end
    else
      handle(s)
    end
  end
end
]==]

local function raises(pattern, f) assert.error_matches(f, pattern, nil, true) end

local function closed_port() return require("spec.support.nginx").free_ports(1)[1] end

describe("core.session", function()
  it("makes a session with or without options", function()
    local s = core.session()
    assert.truthy(tostring(s):match("^instagram%.session %(.+%)$"))
    s:close()
    s = core.session({ allow_http = true, timeout = 1.5, connect_timeout = 0.5, max_response_bytes = 10,
      user_agent = "ua/1", ca_file = "/nonexistent.pem" })
    assert.is_userdata(s)
    s:close()
  end)

  it("raises with its name on bad options", function()
    raises("session", function() core.session("x") end)
    raises("allow_http", function() core.session({ allow_http = "yes" }) end)
    raises("timeout", function() core.session({ timeout = -1 }) end)
    raises("timeout", function() core.session({ timeout = "5" }) end)
    raises("timeout", function() core.session({ timeout = 0 / 0 }) end)
    raises("connect_timeout", function() core.session({ connect_timeout = math.huge }) end)
    raises("max_response_bytes", function() core.session({ max_response_bytes = 1.5 }) end)
    raises("max_response_bytes", function() core.session({ max_response_bytes = -1 }) end)
    -- 0 is no size a response can have (the Lua layer forbids it too), not "no limit"
    raises("session: max_response_bytes must be a positive integer",
      function() core.session({ max_response_bytes = 0 }) end)
    -- above libcurl's limit (2^31-1 ms): the message says what the bound is
    raises("session: timeout must be a number of seconds between 0 and 2147483.647",
      function() core.session({ timeout = 1e7 }) end)
    raises("session: connect_timeout must be a number of seconds between 0 and 2147483.647",
      function() core.session({ connect_timeout = 2147483.648 }) end)
    assert.is_userdata(core.session({ timeout = 2147483.647 }))
    raises("user_agent", function() core.session({ user_agent = "a\r\nX-Evil: 1" }) end)
    raises("user_agent", function() core.session({ user_agent = {} }) end)
    raises("ca_file", function() core.session({ ca_file = "a\0b" }) end)
    raises("ca_file", function() core.session({ ca_file = 5 }) end)
  end)

  it("closes idempotently and refuses use after close", function()
    local s = core.session()
    s:close()
    s:close()
    assert.equal("instagram.session (closed)", tostring(s))
    raises("perform: session is closed", function() s:perform({ url = "https://example.test/" }) end)
    raises("perform_many: session is closed", function() s:perform_many({}, 1) end)
  end)

  it("has __gc and __close on its metatable, and survives being collected", function()
    local mt = getmetatable(core.session())
    assert.is_function(mt.__gc)
    assert.is_function(mt.__close)
    for _ = 1, 200 do core.session() end
    collectgarbage()
    collectgarbage()
  end)

  if _VERSION == "Lua 5.4" then
    it("closes on leaving a <close> scope", function()
      local s = core.session()
      assert(load("local s = ... do local t <close> = s end"))(s)
      assert.equal("instagram.session (closed)", tostring(s))
    end)
  end

  it("raises on misuse of perform", function()
    local s = core.session({ allow_http = true })
    raises("perform", function() s:perform(nil) end)
    raises("perform", function() s:perform("https://example.test/") end)
    raises("perform", function() s.perform(nil, { url = "https://example.test/" }) end)
    raises("perform", function() s.perform({}, { url = "https://example.test/" }) end)
    raises("perform: url must be a string", function() s:perform({}) end)
    raises("perform: url contains CR, LF or NUL", function() s:perform({ url = "https://x.test/\r\nX: 1" }) end)
    raises("perform: url contains CR, LF or NUL", function() s:perform({ url = "https://x.test/\n" }) end)
    raises("perform: url contains CR, LF or NUL", function() s:perform({ url = "https://x.test/\0.evil" }) end)
    raises("perform: method", function() s:perform({ url = "https://x.test/", method = "PUT" }) end)
    raises("perform: method", function() s:perform({ url = "https://x.test/", method = "get" }) end)
    raises("perform: method", function() s:perform({ url = "https://x.test/", method = 1 }) end)
    raises("perform: body", function() s:perform({ url = "https://x.test/", body = "x" }) end)
    raises("perform: body", function() s:perform({ url = "https://x.test/", method = "POST", body = {} }) end)
    raises("perform: timeout", function() s:perform({ url = "https://x.test/", timeout = -0.5 }) end)
    raises("perform: timeout must be a number of seconds between 0 and 2147483.647",
      function() s:perform({ url = "https://x.test/", timeout = 1e7 }) end)
    raises("perform: connect_timeout", function() s:perform({ url = "https://x.test/", connect_timeout = "1" }) end)
    raises("perform: headers", function() s:perform({ url = "https://x.test/", headers = "X: 1" }) end)
    s:close()
  end)

  it("raises on CR, LF, NUL or other non-token bytes in request headers", function()
    local s = core.session()
    local function with(headers)
      return function() s:perform({ url = "https://x.test/", headers = headers }) end
    end
    raises("perform: header value contains CR, LF or NUL", with({ X = "a\r\nInjected: 1" }))
    raises("perform: header value contains CR, LF or NUL", with({ X = "a\nb" }))
    raises("perform: header value contains CR, LF or NUL", with({ X = "a\rb" }))
    raises("perform: header value contains CR, LF or NUL", with({ X = "a\0b" }))
    raises("perform: header name", with({ ["X\r\nY"] = "1" }))
    raises("perform: header name", with({ ["X\0"] = "1" }))
    raises("perform: header name", with({ ["X:Y"] = "1" }))
    raises("perform: header name", with({ ["X Y"] = "1" }))
    raises("perform: header name", with({ [""] = "1" }))
    raises("perform: header names", with({ "positional" }))
    raises("perform: header values", with({ X = {} }))
    raises("perform: header values", with({ X = true }))
    s:close()
  end)

  it("raises on misuse of perform_many", function()
    local s = core.session()
    raises("perform_many", function() s:perform_many(nil, 2) end)
    raises("perform_many", function() s:perform_many({}, 0) end)
    raises("perform_many: request #2: must be a table", function()
      s:perform_many({ { url = "https://x.test/" }, "https://x.test/" }, 2)
    end)
    raises("perform_many: request #1: header value contains CR, LF or NUL", function()
      s:perform_many({ { url = "https://x.test/", headers = { X = "\n" } } }, 1)
    end)
    assert.same({}, s:perform_many({}, 4))
    s:close()
  end)

  it("refuses URLs that are not https, without a request", function()
    local s = core.session()
    for _, url in ipairs({ "http://127.0.0.1:1/", "HTTP://127.0.0.1:1/", "ftp://127.0.0.1/", "file:///etc/passwd",
      "gopher://127.0.0.1/", "127.0.0.1/x", "//127.0.0.1/", "" }) do
      local res, kind, msg = s:perform({ url = url })
      assert.is_nil(res)
      assert.equal("network", kind)
      assert.truthy(msg:find("https", 1, true), msg)
    end
    s:close()
  end)

  it("reports a refused connection as network, without the URL's query", function()
    local s = core.session({ allow_http = true, connect_timeout = 2 })
    local res, kind, msg = s:perform({ url = "http://127.0.0.1:" .. closed_port() .. "/x?access_token=SECRETTOKEN" })
    assert.is_nil(res)
    assert.equal("network", kind)
    assert.is_string(msg)
    assert.is_nil(msg:find("SECRETTOKEN", 1, true))
    s:close()
  end)
end)

describe("core.session against a loopback server", function()
  local server, base, junk_base

  setup(function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(SERVER)
    f:close()
    server = assert(io.popen("lua5.4 " .. path))
    local port, junk_port = server:read("*n", "*n")
    os.remove(path)
    assert(port and junk_port, "loopback server did not start")
    base = "http://127.0.0.1:" .. port
    junk_base = "127.0.0.1:" .. junk_port
  end)

  teardown(function()
    local s = core.session({ allow_http = true, timeout = 2 })
    s:perform({ url = base .. "/quit" })
    s:close()
    server:close()
  end)

  it("does not contact the server for http when allow_http is off", function()
    local strict = core.session()
    local res, kind = strict:perform({ url = base .. "/echo" })
    assert.is_nil(res)
    assert.equal("network", kind)
    strict:close()
    -- the first connection the server ever sees is the next one
    local s = core.session({ allow_http = true })
    assert.equal("1", s:perform({ url = base .. "/echo" }).headers["x-conn"])
    s:close()
  end)

  -- libcurl gets the usual URL as an origin and a request target (CURLOPT_REQUEST_TARGET, for
  -- speed), and anything else whole: what reaches the server is the same either way
  it("sends the request line and Host libcurl would send for the whole URL", function()
    local s = core.session({ allow_http = true })
    local port = base:match(":(%d+)$")
    local function sent(url)
      local res = assert(s:perform({ url = url }))
      local method, target, rest = res.body:match("^(%u+)\n([^\n]*)\n(.*)$")
      return method .. " " .. target, rest:match("host: ([^\n]*)"), res.status
    end
    local token = "IGQVJ" .. ("Xb%2FT0k-_.~q9"):rep(12) .. "!$&'()*+,;=:@[]|{}^`\"<>%"
    assert.same({ "GET /echo?fields=id%2Cusername&access_token=" .. token, "127.0.0.1:" .. port, 200 },
      { sent(base .. "/echo?fields=id%2Cusername&access_token=" .. token) })
    -- another host name on the same handle: the origin it holds is replaced
    assert.same({ "GET /echo?n=2", "localhost:" .. port, 200 }, { sent("http://localhost:" .. port .. "/echo?n=2") })
    assert.same({ "GET /echo?n=3", "127.0.0.1:" .. port, 200 }, { sent(base .. "/echo?n=3") })
    assert.same({ "GET /echo?n=4", "127.0.0.1:" .. port, 200 }, { sent("HTTP://127.0.0.1:" .. port .. "/echo?n=4") })
    -- what libcurl changes in a whole URL is still changed: dot segments, the fragment, no path
    assert.same({ "GET /echo?n=5", "127.0.0.1:" .. port, 200 }, { sent(base .. "/x/../echo?n=5") })
    assert.same({ "GET /echo?n=6", "127.0.0.1:" .. port, 200 }, { sent(base .. "/./echo?n=6") })
    assert.same({ "GET /echo?n=7", "127.0.0.1:" .. port, 200 }, { sent(base .. "/echo?n=7#frag") })
    local res = assert(s:perform({ url = base .. "?n=8" }))
    assert.equal(404, res.status)
    assert.same({ "GET /echo?n=9", "127.0.0.1:" .. port, 200 }, { sent(base .. "/echo?n=9") })
    s:close()
  end)

  it("performs a GET and returns status, lower-case headers and body", function()
    local s = core.session({ allow_http = true, user_agent = "spec-agent/1" })
    local res = assert(s:perform({ url = base .. "/echo?a=1&b=%20", headers = { Authorization = "Bearer t0k",
      ["X-Blank"] = "", ["X-Num"] = 7 } }))
    assert.equal(200, res.status)
    assert.equal("text/plain", res.headers["content-type"])
    assert.equal("a, b", res.headers["x-dup"])
    assert.equal("", res.headers["x-empty"])
    assert.equal("v", res.headers["x-spaced"])
    assert.is_nil(res.headers["X-Dup"])
    local lines = {}
    for line in res.body:gmatch("[^\n]+") do lines[line] = true end
    assert.truthy(res.body:match("^GET\n/echo%?a=1&b=%%20\n"))
    assert.truthy(lines["authorization: bearer t0k"])
    assert.truthy(lines["x-blank:"])
    assert.truthy(lines["x-num: 7"])
    assert.truthy(lines["user-agent: spec-agent/1"])
    assert.is_nil(res.body:find("accept-encoding", 1, true))
    s:close()
  end)

  -- perform keeps its result and anchors in one table of its own, emptied after each call
  it("answers each perform with its own result, also after one that raised half way", function()
    local s = core.session({ allow_http = true })
    local first = assert(s:perform({ url = base .. "/echo?n=1", headers = { ["X-A"] = "1", ["X-B"] = "2" } }))
    raises("perform: header value contains CR, LF or NUL", function()
      s:perform({ url = base .. "/echo?n=bad", headers = { ["X-Ok"] = "1", ["X-Bad"] = "a\nb" } })
    end)
    local second = assert(s:perform({ url = base .. "/echo?n=2" }))
    assert.are_not.equal(first, second)
    assert.truthy(first.body:match("^GET\n/echo%?n=1\n"))
    assert.truthy(second.body:match("^GET\n/echo%?n=2\n"))
    assert.is_nil(second.body:find("x-a:", 1, true))
    local res, kind = s:perform({ url = "http://127.0.0.1:1/refused" })
    assert.is_nil(res)
    assert.equal("network", kind)
    local third = assert(s:perform({ url = base .. "/echo?n=3" }))
    assert.truthy(third.body:match("^GET\n/echo%?n=3\n"))
    assert.equal(200, third.status)
    s:close()
  end)

  -- sess:prepare: a request checked and copied once (the client prepares its kept GET)
  it("sends a prepared request as the table it was made from, every time, whatever the table becomes", function()
    local s = core.session({ allow_http = true, user_agent = "spec-agent/1" })
    local req = { url = base .. "/echo?a=1&b=%20", headers = { Authorization = "Bearer t0k", ["X-Num"] = 7,
      ["X-Blank"] = "" }, timeout = 5 }
    local from_table = assert(s:perform(req)).body
    local prepared = s:prepare(req)
    req.url, req.headers.Authorization, req.headers.X_New = base .. "/echo?changed", "Bearer other", "1"
    for _ = 1, 3 do assert.equal(from_table, assert(s:perform(prepared)).body) end
    local post = { method = "POST", url = base .. "/echo?p=1", body = "a=1&b=\0&c=3",
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } }
    local post_body = assert(s:perform(post)).body
    local prepared_post = s:prepare(post)
    post.body = "changed"
    assert.equal(post_body, assert(s:perform(prepared_post)).body)
    assert.is_nil(post_body:find("expect", 1, true))
    assert.truthy(post_body:find("a=1&b=\0&c=3", 1, true))
    -- perform_many takes prepared requests among tables
    local list = s:perform_many({ prepared, { url = base .. "/echo?n=2" }, prepared_post }, 2)
    assert.equal(from_table, list[1].body)
    assert.truthy(list[2].body:match("^GET\n/echo%?n=2\n"))
    assert.equal(post_body, list[3].body)
    -- a prepared request is not a table and keeps no secret in its name or metatable
    assert.equal("instagram.request (GET)", tostring(prepared))
    assert.equal("instagram.request (POST)", tostring(prepared_post))
    assert.equal("the request is immutable", getmetatable(prepared))
    assert.is_false(pcall(function() prepared.url = "x" end))
    s:close()
  end)

  it("prepares only what perform takes, and only its own session sends it", function()
    local s = core.session({ allow_http = true })
    raises("prepare: url must be a string", function() s:prepare({}) end)
    raises("prepare: method", function() s:prepare({ url = "https://x.test/", method = "PUT" }) end)
    raises("prepare: header value contains CR, LF or NUL",
      function() s:prepare({ url = "https://x.test/", headers = { X = "a\r\nb" } }) end)
    raises("prepare: body is only allowed with POST", function() s:prepare({ url = "https://x.test/", body = "x" }) end)
    raises("prepare", function() s:prepare("https://x.test/") end)
    local other = core.session({ allow_http = true })
    local prepared = other:prepare({ url = base .. "/echo" })
    raises("perform: the request was prepared by another session", function() s:perform(prepared) end)
    raises("perform_many: request #2: was prepared by another session",
      function() s:perform_many({ { url = base .. "/echo" }, prepared }) end)
    raises("perform_many: request #1: must be a table or a prepared request", function() s:perform_many({ 5 }) end)
    assert(other:perform(prepared))
    other:close()
    raises("prepare: session is closed", function() other:prepare({ url = base .. "/echo" }) end)
    raises("perform: session is closed", function() other:perform(prepared) end)
    -- the https-only rule is the session's, when it sends
    local strict = core.session()
    local plain = strict:prepare({ url = base .. "/echo" })
    local res, kind = strict:perform(plain)
    assert.is_nil(res)
    assert.equal("network", kind)
    s:close()
    strict:close()
  end)

  -- the kept usual GET's short way (lua/instagram/init.lua, send_usual_get): the usual success,
  -- told, decoded and normalized in the call that makes the transfer; anything else as perform
  describe("fetch_object", function()
    local json = require "instagram.json"
    local errors = require "instagram.errors"
    local function enc(x) return (x:gsub("[^%w]", function(c) return string.format("%%%02X", c:byte()) end)) end
    local function answer(status, body, usage)
      return { url = base .. "/answer?s=" .. status .. "&b=" .. enc(body) .. (usage and "&u=" .. enc(usage) or "") }
    end

    it("gives the usual success decoded, with exact IDs, and its usage headers", function()
      local s = core.session({ allow_http = true })
      local req = s:prepare(answer(200, '{"id":17841405793187219,"n":3,"user_id":5.0,"username":"u"}'))
      for _ = 1, 3 do -- the same prepared request, again and again
        local user, usage = s:fetch_object(req, json.decode)
        assert.same({ id = "17841405793187219", n = 3, user_id = "5", username = "u" }, user)
        assert.is_nil(usage)
      end
      local user, usage = s:fetch_object(answer(201, ' \r\n\t{"data":[{"id":"1"}]}', '{"call_count":7}'), json.decode)
      assert.same({ data = { { id = "1" } } }, user)
      assert.same({ ["x-app-usage"] = '{"call_count":7}' }, usage)
      s:close()
    end)

    it("gives any other answer as perform gives it, after false; its success is one errors.classify sees", function()
      local s = core.session({ allow_http = true })
      local cases = {
        { 200, '{"id":"1"}' }, { 201, ' {"data":[]}' }, { 299, '\n\t{"a":[1,2]}' }, { 200, '{"error_x":0}' },
        { 204, '{}' }, { 200, '\f\v {"a":[1,2]}' },
        { 200, '[{"id":"1"}]' }, { 200, '"text"' }, { 200, "" }, { 200, "{bad" }, { 200, '{"a":1} x' },
        { 200, '{"error":{"message":"m","code":1}}' }, { 200, '{"error_type":"OAuthException"}' },
        { 200, '{"error_message":"no"}' }, { 200, '{"error":null,"id":"2"}' }, { 200, '{"a":"\255"}' },
        { 200, '{"id":"3","error":false}' },
        { 300, '{"id":"1"}' }, { 304, "" }, { 400, '{"id":"1"}' },
        { 401, '{"error":{"message":"Invalid OAuth access token","type":"OAuthException","code":190}}' },
        { 500, '{"error":{"message":"x","code":2,"is_transient":true}}' }, { 503, "<html>busy</html>" },
      }
      for _, case in ipairs(cases) do
        local req = answer(case[1], case[2])
        local value, res = s:fetch_object(req, json.decode)
        local want = s:perform(req)
        local classified = errors.classify(want, {})
        if value then -- a success that classify gives too, the same value
          assert.same(json.normalize_ids(classified), value, case[2])
          assert.is_nil(res)
        else -- the answer, for the caller to classify (a null error field is one classify looks at)
          assert.equal(false, value, case[2])
          assert.equal(getmetatable(want), getmetatable(res))
          assert.same({ case[1], want.body, want.headers["content-length"] },
            { res.status, res.body, res.headers["content-length"] })
        end
      end
      -- every usual success above is fetch_object's
      local successes = 0
      for _, case in ipairs(cases) do
        if s:fetch_object(answer(case[1], case[2]), json.decode) then successes = successes + 1 end
      end
      assert.equal(4, successes)
      s:close()
    end)

    it("gives a failed transfer as perform does, and raises on misuse with its name", function()
      local s = core.session({ allow_http = true })
      local req = { url = "http://127.0.0.1:" .. closed_port() .. "/x?access_token=IGQVsecret" }
      local a = { s:fetch_object(req, json.decode) }
      local b = { s:perform(req) }
      assert.same(b, a)
      assert.equal("network", a[2])
      raises("fetch_object: decode must be a function", function() s:fetch_object(req) end)
      raises("fetch_object: decode must be a function", function() s:fetch_object(req, "x") end)
      local other = core.session({ allow_http = true })
      raises("fetch_object: the request was prepared by another session",
        function() s:fetch_object(other:prepare(answer(200, "{}")), json.decode) end)
      raises("fetch_object: url must be a string", function() s:fetch_object({ url = 1 }, json.decode) end)
      other:close()
      s:close()
      raises("fetch_object: session is closed", function() s:fetch_object(req, json.decode) end)
    end)

    it("runs its decode as the transfer finishes: an error it raises comes out, a call it makes works", function()
      local s = core.session({ allow_http = true })
      local other = core.session({ allow_http = true })
      local req = s:prepare(answer(200, '{"id":1}'))
      local table_req = answer(200, '{"id":2}') -- a table: its url anchored for the call, then let go
      raises("from decode", function() s:fetch_object(req, function() error("from decode", 0) end) end)
      -- the session is not left busy, and the kept request still works
      assert.same({ id = "1" }, (s:fetch_object(req, json.decode)))
      raises("perform: session is busy", function()
        s:fetch_object(req, function() return s:perform(req) end)
      end)
      -- a decode that makes transfers of its own, on another session, perform and fetch_object
      local inner = other:prepare(answer(200, '{"id":3}'))
      local seen = {}
      local function decode(text)
        seen[#seen + 1] = assert(other:perform(inner)).body
        seen[#seen + 1] = (other:fetch_object(inner, json.decode)).id
        seen[#seen + 1] = (other:fetch_object(answer(200, '{"id":4}'), json.decode)).id
        return json.decode(text)
      end
      for _ = 1, 2 do
        assert.same({ id = "1" }, (s:fetch_object(req, decode)))
        assert.same({ id = "2" }, (s:fetch_object(table_req, decode)))
      end
      assert.same({ '{"id":3}', "3", "4", '{"id":3}', "3", "4", '{"id":3}', "3", "4", '{"id":3}', "3", "4" }, seen)
      -- and perform, after all that, gives its own answer
      assert.equal('{"id":2}', assert(s:perform(table_req)).body)
      other:close()
      s:close()
    end)
  end)

  it("sends header lines of any length whole, short and long, on one handle", function()
    local s = core.session({ allow_http = true })
    for _, n in ipairs({ 1, 240, 253, 254, 255, 256, 4000, 20000 }) do
      local value = ("v"):rep(n - 1) .. "Z"
      local res = assert(s:perform({ url = base .. "/echo", headers = { ["X-Long"] = value, A = "b" } }))
      local lines = {}
      for line in res.body:gmatch("[^\n]+") do lines[line] = true end
      assert.truthy(lines["x-long: " .. value:lower()], n)
      assert.truthy(lines["a: b"], n)
    end
    s:close()
  end)

  it("POSTs a body exactly, without Expect", function()
    local s = core.session({ allow_http = true })
    local body = "a=b&c=%00\0binary\255"
    local res = assert(s:perform({ method = "POST", url = base .. "/echo", body = body,
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } }))
    assert.equal(200, res.status)
    assert.truthy(res.body:match("^POST\n"))
    assert.truthy(res.body:find("content-length: " .. #body, 1, true))
    assert.is_nil(res.body:find("expect", 1, true))
    assert.equal(body, res.body:sub(-#body))
    res = assert(s:perform({ method = "POST", url = base .. "/echo" }))
    assert.truthy(res.body:find("content-length: 0", 1, true))
    s:close()
  end)

  it("keeps the connection alive between requests", function()
    local s = core.session({ allow_http = true })
    local first = assert(s:perform({ url = base .. "/echo" })).headers["x-conn"]
    for _ = 1, 3 do
      assert.equal(first, assert(s:perform({ url = base .. "/echo" })).headers["x-conn"])
    end
    s:close()
  end)

  it("gives every POST a connection of its own (libcurl never replays it)", function()
    local s = core.session({ allow_http = true })
    local get = assert(s:perform({ url = base .. "/echo" })).headers["x-conn"]
    local post1 = assert(s:perform({ method = "POST", url = base .. "/echo", body = "code=1" })).headers["x-conn"]
    local post2 = assert(s:perform({ method = "POST", url = base .. "/echo", body = "code=2" })).headers["x-conn"]
    assert.not_equal(get, post1)
    assert.not_equal(post1, post2)
    s:close()
  end)

  it("sets each transfer's method, connection and size cap afresh on its kept handle", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -m 700 " .. dir))
    local s = core.session({ allow_http = true, max_response_bytes = 50000 })
    local function echo(method)
      local res = assert(s:perform({ method = method, url = base .. "/echo" }))
      assert.equal(method or "GET", res.body:match("^(%u+)\n"))
      return res.headers["x-conn"]
    end
    local get1 = echo()
    local del1 = echo("DELETE")
    local del2 = echo("DELETE")
    local get2 = echo()
    local get3 = echo()
    local post = echo("POST")
    local get4 = echo()
    local get5 = echo()
    assert.not_equal(get1, del1)
    assert.not_equal(del1, del2)
    assert.equal(get2, get3) -- after a DELETE a GET reuses a connection again
    assert.not_equal(get3, post)
    assert.equal(get4, get5)
    -- a download's cap applies to that transfer only: the next GET has the session's cap
    local res, kind = s:perform({ url = base .. "/sized?n=2000", file = dir .. "/f", max_bytes = 1000 })
    assert.is_nil(res)
    assert.equal("response", kind)
    res = assert(s:perform({ url = base .. "/sized?n=2000" }))
    assert.equal(2000, #res.body)
    res, kind = s:perform({ url = base .. "/sized?n=50001" })
    assert.is_nil(res)
    assert.equal("response", kind)
    s:close()
    os.execute("rm -rf " .. dir)
  end)

  it("does not follow redirects", function()
    local s = core.session({ allow_http = true })
    local res = assert(s:perform({ url = base .. "/redirect" }))
    assert.equal(302, res.status)
    assert.equal("/echo", res.headers.location)
    assert.equal("moo", res.body)
    s:close()
  end)

  it("keeps only the final response's headers", function()
    local s = core.session({ allow_http = true })
    local res = assert(s:perform({ url = base .. "/interim" }))
    assert.equal(201, res.status)
    assert.equal("yes", res.headers["x-final"])
    assert.is_nil(res.headers["x-interim"])
    assert.equal("ok", res.body)
    s:close()
  end)

  it("caps bodies of unknown and of known length", function()
    local s = core.session({ allow_http = true, max_response_bytes = 50000 })
    local res, kind, msg = s:perform({ url = base .. "/stream?n=200000" })
    assert.is_nil(res)
    assert.equal("response", kind)
    assert.equal("response body larger than 50000 bytes", msg)
    res, kind, msg = s:perform({ url = base .. "/sized?n=50001" })
    assert.is_nil(res)
    assert.equal("response", kind)
    assert.equal("response body larger than 50000 bytes", msg)
    res = assert(s:perform({ url = base .. "/sized?n=50000" }))
    assert.equal(50000, #res.body)
    s:close()
    s = core.session({ allow_http = true, max_response_bytes = 1 })
    assert.equal("response", select(2, s:perform({ url = base .. "/sized?n=2" })))
    assert.equal(1, #assert(s:perform({ url = base .. "/sized?n=1" })).body)
    assert.equal(0, #assert(s:perform({ url = base .. "/sized?n=0" })).body)
    s:close()
  end)

  it("caps response headers", function()
    local s = core.session({ allow_http = true })
    local res, kind, msg = s:perform({ url = base .. "/bighead" })
    assert.is_nil(res)
    assert.equal("response", kind)
    assert.truthy(msg:find("headers larger than", 1, true))
    assert.equal(200, assert(s:perform({ url = base .. "/echo" })).status)
    s:close()
  end)

  it("reports a reply that is not HTTP as response, without the query", function()
    local s = core.session({ allow_http = true })
    local res, kind, msg = s:perform({ url = base .. "/garbage?access_token=SECRETTOKEN" })
    assert.is_nil(res)
    assert.equal("response", kind)
    assert.is_nil(msg:find("SECRETTOKEN", 1, true))
    s:close()
  end)

  it("reports a failed TLS handshake as tls", function()
    local s = core.session({ connect_timeout = 2, timeout = 3 })
    local res, kind = s:perform({ url = "https://" .. junk_base .. "/" })
    assert.is_nil(res)
    assert.equal("tls", kind)
    s:close()
    s = core.session({ ca_file = "/nonexistent/ca.pem", timeout = 3 })
    res, kind = s:perform({ url = "https://" .. junk_base .. "/" })
    assert.is_nil(res)
    assert.equal("tls", kind)
    s:close()
  end)

  it("runs many requests in order, at most `concurrency` at once, errors kept per request", function()
    local s = core.session({ allow_http = true })
    local reqs = {}
    for i = 1, 12 do reqs[i] = { url = base .. "/echo?i=" .. i } end
    reqs[4] = { url = "http://127.0.0.1:" .. closed_port() .. "/" }
    reqs[7] = { url = "ftp://127.0.0.1/" }
    reqs[9] = { method = "POST", url = base .. "/echo?i=9", body = "nine" }
    for _, concurrency in ipairs({ 1, 3, 100 }) do
      local out = s:perform_many(reqs, concurrency)
      assert.equal(12, #out)
      for i, r in ipairs(out) do
        if i == 4 or i == 7 then
          assert.equal("network", r.error)
          assert.is_string(r.message)
        else
          assert.equal(200, r.status)
          assert.truthy(r.body:find("/echo?i=" .. i .. "\n", 1, true))
        end
      end
      assert.equal("nine", out[9].body:sub(-4))
    end
    s:close()
  end)

  it("reuses one connection for sequential batches", function()
    local s = core.session({ allow_http = true })
    local reqs = {}
    for i = 1, 5 do reqs[i] = { url = base .. "/echo" } end
    local out = s:perform_many(reqs, 1)
    for i = 2, 5 do assert.equal(out[1].headers["x-conn"], out[i].headers["x-conn"]) end
    assert.equal(out[1].headers["x-conn"], assert(s:perform({ url = base .. "/echo" })).headers["x-conn"])
    s:close()
  end)

  it("times out a stalled response", function()
    local s = core.session({ allow_http = true })
    local t0 = socket.gettime()
    local res, kind = s:perform({ url = base .. "/slow", timeout = 0.3 })
    assert.is_nil(res)
    assert.equal("timeout", kind)
    assert.is_true(socket.gettime() - t0 < 1.4)
    -- the server is busy stalling; the session still works once it is back
    assert.equal(200, assert(s:perform({ url = base .. "/echo", timeout = 5 })).status)
    s:close()
  end)
end)
