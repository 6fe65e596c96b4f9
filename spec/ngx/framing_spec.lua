-- The ngx transport's HTTP/1.1 handling, byte by byte, on a scripted stand-in for ngx.socket.tcp
-- (runs in plain Lua; transport_spec.lua runs it inside a real nginx).
local ngx_transport = require "instagram.ngx"

local unpack = table.unpack or unpack -- luacheck: ignore 143
local function pack(...) return { n = select("#", ...), ... } end

-- Each script is one connection: {reused = n, pieces = {string | {err = e, advance = s}},
-- connect_err, ssl_err, ssl_raise, send_err}. receiveany hands out at most n bytes of the
-- next piece; after the last piece it reports `eof` (default "closed").
local function mock(scripts)
  local clock = 1000
  local sockets = {}
  local ngx = { socket = {}, thread = {} }
  function ngx.now() return clock end
  function ngx.update_time() end
  function ngx.socket.tcp()
    local script = table.remove(scripts, 1) or error("no more scripted connections")
    script.pieces = script.pieces or {}
    local s = { script = script, sent = {} }
    sockets[#sockets + 1] = s
    function s.connect(self, host, port, opts)
      self.host, self.port, self.pool = host, port, opts and opts.pool
      if script.connect_err then return nil, script.connect_err end
      return 1
    end
    function s.getreusedtimes() return script.reused or 0 end
    function s.sslhandshake(self, session, name, verify)
      self.handshake = { session = session, name = name, verify = verify }
      if script.ssl_raise then error("resty/core/socket.lua:244: assertion failed!") end
      if script.ssl_err then return nil, script.ssl_err end
      return {}
    end
    function s.settimeouts(self, c, w, r) self.timeouts = { c, w, r } end
    function s.send(self, data)
      if type(data) == "table" then data = table.concat(data) end
      self.sent[#self.sent + 1] = data
      if script.send_err then return nil, script.send_err end
      return #data
    end
    function s.receiveany(_, n)
      local p = script.pieces[1]
      if p == nil then return nil, script.eof or "closed" end
      if type(p) == "table" then
        table.remove(script.pieces, 1)
        clock = clock + (p.advance or 0)
        if p.data then return p.data end
        return nil, p.err
      end
      if #p > n then
        script.pieces[1] = p:sub(n + 1)
        return p:sub(1, n)
      end
      table.remove(script.pieces, 1)
      return p
    end
    function s.setkeepalive(self) self.kept = true return 1 end
    function s.close(self) self.closed = true return 1 end
    return s
  end
  -- light threads run to their end at spawn (nothing here yields); sleep returns at once
  function ngx.thread.spawn(fn, ...) -- as ngx.thread.spawn: the arguments go to fn
    local co = coroutine.create(fn)
    return pack(coroutine.resume(co, ...))
  end
  function ngx.thread.wait(th) return unpack(th, 1, th.n) end
  function ngx.thread.kill() return true end
  function ngx.sleep() end
  rawset(_G, "ngx", ngx)
  return sockets
end

local function transport(opts)
  local o = { allow_http = true, user_agent = "spec-agent", timeout = 5, connect_timeout = 2,
    max_response_bytes = 1000 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return ngx_transport.new(o)
end

local function get(url, extra)
  local req = { method = "GET", url = url }
  for k, v in pairs(extra or {}) do req[k] = v end
  return req
end

local OK = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"

describe("ngx transport framing (scripted sockets)", function()
  local saved
  before_each(function() saved = rawget(_G, "ngx") end)
  after_each(function() rawset(_G, "ngx", saved) end)

  describe("the request", function()
    it("sends HTTP/1.1 with Host, User-Agent, sorted headers and keep-alive", function()
      local s = mock({ { pieces = { OK } } })
      local res = assert(transport():request(get("https://Graph.Example.com:8443/v21.0/me?fields=id#frag",
        { headers = { B = "2", A = "1" } })))
      assert.equal("GET /v21.0/me?fields=id HTTP/1.1\r\nHost: graph.example.com:8443\r\n"
        .. "User-Agent: spec-agent\r\nA: 1\r\nB: 2\r\nConnection: keep-alive\r\n\r\n", s[1].sent[1])
      assert.equal("graph.example.com", s[1].host)
      assert.equal(8443, s[1].port)
      assert.same({ session = nil, name = "graph.example.com", verify = true }, s[1].handshake)
      assert.equal("instagram|https|graph.example.com|8443|verify:lua_ssl_trusted_certificate", s[1].pool)
      assert.equal("hello", res.body)
      assert.equal("text/plain", res.headers["content-type"])
      assert.is_true(s[1].kept)
    end)

    it("sends Content-Length with a POST body, and a caller's User-Agent replaces ours", function()
      local s = mock({ { pieces = { OK } } })
      assert(transport():request({ method = "POST", url = "https://api.example.com/oauth/access_token",
        body = "a=1&b=2", headers = { ["User-Agent"] = "mine" } }))
      assert.equal("POST /oauth/access_token HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: mine\r\n"
        .. "Content-Length: 7\r\nConnection: keep-alive\r\n\r\na=1&b=2", s[1].sent[1])
    end)

    it("connects to 127.0.0.1 for localhost and still checks the name localhost", function()
      local s = mock({ { pieces = { OK } } })
      assert(transport():request(get("https://localhost:9443")))
      assert.equal("127.0.0.1", s[1].host)
      assert.equal("localhost", s[1].handshake.name)
      assert.matches("^GET / HTTP/1.1\r\nHost: localhost:9443\r\n", s[1].sent[1])
    end)

    it("puts ca_file in the pool name and sends no TLS on plain http", function()
      local s = mock({ { pieces = { OK } }, { pieces = { OK } } })
      assert(transport({ ca_file = "/etc/ca.pem" }):request(get("https://h.example/")))
      assert(transport():request(get("http://h.example/?q=1")))
      assert.equal("instagram|https|h.example|443|verify:/etc/ca.pem", s[1].pool)
      assert.equal("instagram|http|h.example|80|plain", s[2].pool)
      assert.is_nil(s[2].handshake)
      assert.matches("^GET /%?q=1 HTTP/1.1\r\nHost: h.example\r\n", s[2].sent[1])
    end)

    it("raises on CR, LF or NUL and on headers the transport owns", function()
      mock({})
      local t = transport()
      assert.has_error(function() t:request(get("https://h/\r\nX: y")) end, "request: url contains CR, LF or NUL")
      assert.has_error(function() t:request(get("https://h/", { headers = { X = "a\nb" } })) end,
        "request: header value contains CR, LF or NUL")
      assert.has_error(function() t:request(get("https://h/", { headers = { X = "a\0b" } })) end,
        "request: header value contains CR, LF or NUL")
      assert.has_error(function() t:request(get("https://h/", { headers = { ["X:Y"] = "a" } })) end)
      assert.has_error(function() t:request(get("https://h/", { headers = { Host = "evil" } })) end,
        "request: header Host is set by the transport")
      assert.has_error(function() t:request({ method = "PUT", url = "https://h/" }) end)
      assert.has_error(function() t:request({ method = "GET", url = "https://h/", body = "x" }) end)
      assert.has_error(function() t:request_many({ get("https://h/"), get("https://h/\n") }, 2) end,
        "request_many: request #2: url contains CR, LF or NUL")
    end)

    it("refuses http:// without allow_http and malformed URLs, as network errors without the query", function()
      mock({})
      local res, kind, msg = transport({ allow_http = false }):request(get("http://h/?access_token=SECRET"))
      assert.is_nil(res)
      assert.equal("network", kind)
      assert.matches("allow_http", msg)
      for _, url in ipairs({ "https://user:pw@h/", "https://h:99999/", "https://h:x/", "ftp://h/",
                             "https://h/a b?access_token=SECRET", "nope" }) do
        res, kind, msg = transport():request(get(url))
        assert.is_nil(res, url)
        assert.equal("network", kind, url)
        assert.not_matches("SECRET", msg)
      end
    end)
  end)

  describe("the URL, parsed once per origin", function()
    -- split_url (the per-request path, with the origin cached per transport) must answer exactly
    -- as parse_url (the reference), for the first request to an origin and for later ones
    local URLS = {
      "https://graph.instagram.com/v21.0/me?fields=id%2Cusername&access_token=SECRET",
      "https://graph.instagram.com", "https://graph.instagram.com?x=1", "https://graph.instagram.com#frag",
      "https://Graph.Instagram.COM:443/me", "HTTPS://h:8443/a/b?c=d#e f\1", "http://127.0.0.1:8080/me?q",
      "https://[::1]:8443/x", "https://localhost/x", "https://h/a b?access_token=SECRET",
      "https://h/a?b=c\127", "https://h/#", "https://h?#", "https://user:pw@h/", "https://h:99999/",
      "https://h:x/", "https://h:/", "ftp://h/", "nope", "://h/", "1https://h/", "ht%tp://h/",
      "https://h/?next=http://other/", "https//h/?a=http://b/", "https://h b/", "https://h/\t",
      "https://h/caf\195\169?x=\200", "https://h:0/", "https://h:65535", "https://-h_/",
    }
    local function reference(t, url)
      local u, err = ngx_transport._parse_url(url)
      if not u then return { err = err } end
      if u.scheme ~= "https" and not (u.scheme == "http" and t.opts.allow_http) then
        return { err = "scheme" }
      end
      return { scheme = u.scheme, host = u.host, port = u.port, authority = u.authority, target = u.target,
        connect_host = u.connect_host, connect_ip = u.connect_ip }
    end
    local function fast(t, url)
      local o, target, err = ngx_transport._split_url(t, url)
      if not o then return { err = err } end
      if o.scheme_error then return { err = "scheme" } end
      return { scheme = o.scheme, host = o.host, port = o.port, authority = o.authority, target = target,
        connect_host = o.connect_host, connect_ip = o.connect_ip }
    end

    it("gives parse_url's answer for every URL, first and cached", function()
      for _, allow_http in ipairs({ false, true }) do
        local t = transport({ allow_http = allow_http })
        for round = 1, 2 do
          for _, url in ipairs(URLS) do
            assert.same(reference(t, url), fast(t, url), url .. " (round " .. round .. ")")
          end
        end
      end
    end)

    it("keeps a bounded number of origins per transport", function()
      local t = transport()
      for i = 1, 200 do
        local o = ngx_transport._split_url(t, "https://h" .. i .. ".example/x")
        assert.equal("h" .. i .. ".example", o.host)
      end
      local n = 0
      for _ in pairs(t.origins) do n = n + 1 end
      assert.is_true(n <= 64, n)
    end)
  end)

  describe("the response", function()
    it("joins repeated headers, lower-cases names, accepts bare LF", function()
      mock({ { pieces = { "HTTP/1.1 200 OK\nSet-Cookie: a=1\nSET-COOKIE: b=2\nX-Empty:\nContent-Length: 0\n\n" } } })
      local res = assert(transport():request(get("https://h/")))
      assert.equal("a=1, b=2", res.headers["set-cookie"])
      assert.equal("", res.headers["x-empty"])
      assert.equal("", res.body)
    end)

    it("reads a body split in many pieces, and one split inside the header block", function()
      local s = mock({ { pieces = { "HTTP/1.1 200 OK\r\nContent-Le", "ngth: 11\r", "\n\r\nhel", "lo ", "world" } } })
      local res = assert(transport():request(get("https://h/")))
      assert.equal("hello world", res.body)
      assert.is_true(s[1].kept)
    end)

    it("decodes chunked bodies with extensions and trailers, and keeps the connection", function()
      local s = mock({ { pieces = {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "5;name=value\r\nhello\r\n", "6\r\n world\r\n", "00\r\nX-Trailer: t\r\n\r\n",
      } } })
      local res = assert(transport():request(get("https://h/")))
      assert.equal("hello world", res.body)
      assert.is_true(s[1].kept)
    end)

    it("accepts what libcurl accepts: bare-LF chunk lines and chunk ends, obs-folded headers", function()
      local s = mock({ { pieces = {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "5\nhello\n", "6;x=y\n world\r\n", "0\nX-Trailer: t\n\n",
      } } })
      local res = assert(transport():request(get("https://h/")))
      assert.equal("hello world", res.body)
      assert.is_true(s[1].kept)
      -- RFC 9112 §5.2: each obs-fold becomes one space
      mock({ { pieces = { "HTTP/1.1 200 OK\r\nX-Long: first\r\n  second\r\n\tthird\r\n",
        "X-B: b\r\nContent-Length: 2\r\n\r\nok" } } })
      res = assert(transport():request(get("https://h/")))
      assert.equal("first second third", res.headers["x-long"])
      assert.equal("b", res.headers["x-b"])
      assert.equal("ok", res.body)
    end)

    for name, body in pairs({
      ["a non-hex size"] = "zz\r\nhello\r\n0\r\n\r\n",
      ["trailing junk after the size"] = "5x\r\nhello\r\n0\r\n\r\n",
      ["a negative size"] = "-5\r\nhello\r\n0\r\n\r\n",
      ["data longer than its size"] = "3\r\nhello\r\n0\r\n\r\n",
      ["a huge size"] = "ffffffffffffffff\r\nhello\r\n",
      ["a space before the size"] = " 5\r\nhello\r\n0\r\n\r\n",
    }) do
      it("rejects chunked framing with " .. name .. " (kind response)", function()
        local s = mock({ { pieces = { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" .. body } } })
        local res, kind = transport():request(get("https://h/"))
        assert.is_nil(res)
        assert.equal("response", kind)
        assert.is_true(s[1].closed)
        assert.is_nil(s[1].kept)
      end)
    end

    it("rejects malformed status lines, headers and lengths (kind response)", function()
      for _, head in ipairs({
        "HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n", "ICY 200 OK\r\n\r\n", "HTTP/1.1 200OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "HTTP/1.1 200 OK\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
      }) do
        mock({ { pieces = { head } } })
        local res, kind = transport():request(get("https://h/"))
        assert.is_nil(res, head)
        assert.equal("response", kind, head)
      end
    end)

    it("takes a header value after the blanks that follow the colon, up to its trailing blanks", function()
      mock({ { pieces = { "HTTP/1.1 200 OK\r\nX-A:a\r\nX-B: \t b c\r\nX-C:\r\nX-D: \t \r\nX-E:\te \t\r\n"
        .. "X-F: \vf\r\nContent-Length: 0\r\n\r\n" } } })
      local h = assert(transport():request(get("https://h/"))).headers
      assert.same({ "a", "b c", "", "", "e", "\vf" }, { h["x-a"], h["x-b"], h["x-c"], h["x-d"], h["x-e"], h["x-f"] })
    end)

    it("reads Content-Length as digits only, blanks around it aside", function()
      for cl, body in pairs({ ["5"] = "hello", [" \t5"] = "hello", ["5 "] = "hello", ["005"] = "hello", ["0"] = "",
          ["5,5"] = "hello", [" 5 , 5 "] = "hello" }) do
        mock({ { pieces = { "HTTP/1.1 200 OK\r\nContent-Length:" .. cl .. "\r\n\r\nhello" } } })
        local res, kind, msg = transport():request(get("https://h/"))
        assert.equal(body, res and res.body, cl .. ": " .. tostring(kind) .. " " .. tostring(msg))
      end
      for _, cl in ipairs({ "", "+5", "5.0", "0x5", "5e0", "1234567890123456", "5;" }) do
        mock({ { pieces = { "HTTP/1.1 200 OK\r\nContent-Length: " .. cl .. "\r\n\r\nhello" } } })
        local res, kind, msg = transport():request(get("https://h/"))
        assert.is_nil(res, cl)
        assert.equal("response", kind, cl)
        assert.matches("content%-length", msg, 1, false)
      end
    end)

    it("reads a head the same in one piece, byte by byte, and after a status line read alone", function()
      local many = { "HTTP/1.1 200 OK\r\n" }
      for i = 1, 201 do many[#many + 1] = "X-" .. i .. ": v\r\n" end
      local heads = {
        "HTTP/1.1 200 OK\r\nA: 1\r\nB:  2 \r\na: 3\r\nContent-Length: 2\r\n\r\nok",
        "HTTP/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 204 No Content\r\nX:\r\n\r\n",
        "HTTP/1.1 200 OK\nA: 1\nB: 2\r\n\r\n",            -- bare LF lines, then CRLF CRLF
        "HTTP/1.1 200 OK\r\nA: 1\n\nContent-Length: 2\r\n\r\nok", -- an empty bare-LF line ends the head
        "HTTP/1.1 200 OK\r\nA: 1\r\r\n\r\n",             -- a CR before the CR LF stays in the value
        "HTTP/1.1 200 OK\r\nA: 1\r\n\r\r\n\r\n",         -- one CR is taken off a line, not two
        "HTTP/1.1 200 OK\r\nX-L: a\r\n  b\r\n\tc \r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-L:\r\n b\r\n\r\n",
        "HTTP/1.1 200 OK\r\n b\r\n\r\n",
        "HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA\r\nB: has: colons\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: x\ry\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: x\0y\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: \t\r\nB: \r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n\r\n\r\n",
        table.concat(many) .. "\r\n",
        table.concat(many, "", 1, 200) .. "\r\n",
      }
      local function outcome(pieces)
        mock({ { pieces = pieces } })
        local res, kind, msg = transport():request(get("https://h/"))
        if not res then return { kind = kind, msg = msg } end
        return { status = res.status, headers = res.headers, body = res.body }
      end
      for _, head in ipairs(heads) do
        local whole = outcome({ head })
        local bytes = {}
        for i = 1, #head do bytes[i] = head:sub(i, i) end
        assert.same(whole, outcome(bytes), head)
        local eol = head:find("\n", 1, true)
        assert.same(whole, outcome({ head:sub(1, eol), head:sub(eol + 1) }), head)
      end
      -- and what the whole pieces gave, for a few of them
      assert.same({ status = 200, headers = { a = "1, 3", b = "2", ["content-length"] = "2" }, body = "ok" },
        outcome({ heads[1] }))
      assert.same({ a = "1" }, outcome({ heads[5] }).headers)
      assert.equal("response", outcome({ heads[6] }).kind)
      assert.equal("response", outcome({ heads[7] }).kind)
      assert.same({ ["x-l"] = "a b c", ["content-length"] = "0" }, outcome({ heads[8] }).headers)
      assert.same({ ["x-l"] = "b" }, outcome({ heads[9] }).headers)
      for k = 10, 15 do assert.equal("response", outcome({ heads[k] }).kind, heads[k]) end
      assert.same({ a = "", b = "" }, outcome({ heads[16] }).headers)
      assert.matches("more than 200", outcome({ heads[18] }).msg)
      assert.equal(200, outcome({ heads[19] }).status)
    end)

    it("accepts equal repeated Content-Length values", function()
      mock({ { pieces = { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello" } } })
      assert.equal("hello", assert(transport():request(get("https://h/"))).body)
    end)

    it("caps headers by count and by size", function()
      local many = { "HTTP/1.1 200 OK\r\n" }
      for i = 1, 201 do many[#many + 1] = "X-" .. i .. ": v\r\n" end
      many[#many + 1] = "\r\n"
      mock({ { pieces = { table.concat(many) } } })
      local _, kind, msg = transport():request(get("https://h/"))
      assert.equal("response", kind)
      assert.matches("more than 200", msg)
      mock({ { pieces = { "HTTP/1.1 200 OK\r\nX: " .. string.rep("a", 300 * 1024) } } })
      _, kind, msg = transport():request(get("https://h/"))
      assert.equal("response", kind)
      assert.matches("too long", msg)
    end)

    it("caps the body: by Content-Length before reading, chunked and until-close while reading", function()
      local s = mock({ { pieces = { "HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\n" } } })
      local _, kind, msg = transport():request(get("https://h/"))
      assert.equal("response", kind)
      assert.equal("response body larger than 1000 bytes", msg)
      assert.is_true(s[1].closed)
      local big = string.rep("a", 600)
      mock({ { pieces = { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n" .. big .. "\r\n258\r\n" } } })
      _, kind = transport():request(get("https://h/"))
      assert.equal("response", kind)
      mock({ { pieces = { "HTTP/1.1 200 OK\r\n\r\n", big, big } } })
      _, kind = transport():request(get("https://h/"))
      assert.equal("response", kind)
      mock({ { pieces = { "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" .. string.rep("b", 1000) } } })
      assert.equal(1000, #assert(transport():request(get("https://h/"))).body)
    end)

    it("keeps the HTTP status with a body over the cap, as libcurl does (request and request_many)", function()
      local big = string.rep("a", 600)
      for _, response in ipairs({
        "HTTP/1.1 201 Created\r\nContent-Length: 1001\r\n\r\n",
        "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n" .. big .. "\r\n258\r\n",
        "HTTP/1.1 201 Created\r\n\r\n" .. big .. big,
      }) do
        mock({ { pieces = { response } } })
        local res, kind, msg, status = transport():request(get("https://h/"))
        assert.is_nil(res)
        assert.equal("response", kind)
        assert.equal("response body larger than 1000 bytes", msg)
        assert.equal(201, status)
        mock({ { pieces = { response } } })
        local out = transport():request_many({ get("https://h/") })
        assert.same({ error = "response", message = "response body larger than 1000 bytes", status = 201 }, out[1])
      end
      -- a cut connection or a bad head has no status
      mock({ { pieces = { "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel" } } })
      assert.is_nil(select(4, transport():request(get("https://h/"))))
      mock({ { pieces = { "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n" } } })
      assert.is_nil(select(4, transport():request(get("https://h/"))))
    end)

    it("reads a long header line dripped in small pieces in linear memory", function()
      local pieces = { "HTTP/1.1 200 OK\r\nX-Long: " }
      local n = 200 * 1024 / 64
      for i = 1, n do pieces[#pieces + 1] = string.rep(string.char(97 + i % 26), 64) end
      pieces[#pieces + 1] = "\r\nContent-Length: 2\r\n\r\nok"
      mock({ { pieces = pieces } })
      local t = transport()
      collectgarbage("collect")
      collectgarbage("stop")
      local before = collectgarbage("count")
      local res = t:request(get("https://h/"))
      local grew = collectgarbage("count") - before
      collectgarbage("restart")
      assert.equal(200 * 1024, #assert(res).headers["x-long"])
      -- re-copying the pending line on every read allocates n * n * 32 bytes (about 400 MiB)
      assert.is_true(grew < 8 * 1024, string.format("the Lua heap grew by %.0f KiB", grew))
    end)

    it("reads until close without a length, and closes that connection", function()
      local s = mock({ { pieces = { "HTTP/1.1 200 OK\r\n\r\nhel", "lo" } } })
      assert.equal("hello", assert(transport():request(get("https://h/"))).body)
      assert.is_true(s[1].closed)
      assert.is_nil(s[1].kept)
    end)

    it("has no body for 204 and 304, and skips 100 Continue", function()
      mock({ { pieces = { "HTTP/1.1 204 No Content\r\n\r\n" } } })
      assert.equal("", assert(transport():request(get("https://h/"))).body)
      mock({ { pieces = { "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" } } })
      local res = assert(transport():request(get("https://h/")))
      assert.equal(200, res.status)
      assert.equal("ok", res.body)
    end)

    it("returns a redirect as it is", function()
      mock({ { pieces = { "HTTP/1.1 302 Found\r\nLocation: https://elsewhere/\r\nContent-Length: 0\r\n\r\n" } } })
      local res = assert(transport():request(get("https://h/")))
      assert.equal(302, res.status)
      assert.equal("https://elsewhere/", res.headers.location)
    end)
  end)

  describe("keep-alive", function()
    local function kept(response)
      local s = mock({ { pieces = { response } } })
      assert(transport():request(get("https://h/")))
      return s[1].kept == true, s[1].closed == true
    end

    it("pools after a complete, well-framed HTTP/1.1 response", function()
      assert.same({ true, false }, { kept(OK) })
    end)

    it("closes on Connection: close, on HTTP/1.0, on bytes after the body, on TE plus CL", function()
      assert.same({ false, true }, { kept("HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n") })
      assert.same({ false, true }, { kept("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n") })
      assert.same({ true, false }, { kept("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n") })
      assert.same({ false, true }, { kept(OK .. "HTTP/1.1 200 OK\r\n") })
      assert.same({ false, true }, { kept("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
        .. "0\r\n\r\n") })
    end)

    it("reads Connection as a list of tokens: any case, commas, and blanks from tab to CR or space", function()
      local function kept_with(version, value)
        return { kept(version .. " 200 OK\r\nConnection: " .. value .. "\r\nContent-Length: 0\r\n\r\n") }
      end
      for value, keep in pairs({ ["close"] = false, ["Close"] = false, ["keep-alive, close"] = false,
          ["close\v"] = false, ["\fclose"] = false, ["x,close"] = false, ["closed"] = true, ["keep-alive"] = true,
          ["cl ose"] = true, ["upgrade"] = true }) do
        assert.same({ keep, not keep }, kept_with("HTTP/1.1", value), value)
      end
      -- HTTP/1.0 keeps the connection only with a keep-alive token
      for value, keep in pairs({ ["keep-alive"] = true, ["Keep-Alive"] = true, ["keep-alive\v"] = true,
          ["foo,\tkeep-alive"] = true, ["keep-alive,close"] = false, ["keep-alives"] = false,
          ["keep alive"] = false }) do
        assert.same({ keep, not keep }, kept_with("HTTP/1.0", value), value)
      end
    end)

    it("retries on a fresh connection when a pooled one turns out closed", function()
      local s = mock({ { reused = 3, pieces = {} }, { reused = 0, pieces = { OK } } })
      local res = assert(transport():request(get("https://h/")))
      assert.equal("hello", res.body)
      assert.equal(0, res.reused)
      assert.is_nil(s[1].handshake)       -- a pooled TLS connection is not handshaken again
      assert.is_table(s[2].handshake)
      s = mock({ { reused = 1, pieces = { { err = "connection reset by peer" } } }, { pieces = { OK } } })
      assert(transport():request(get("https://h/")))
      assert.equal(2, #s)
    end)

    it("sends a POST on a connection from a pool nothing is kept in, closes it, never re-sends it", function()
      local s = mock({ { pieces = { OK } } })
      local t = transport()
      assert(t:request({ method = "POST", url = "https://h.example/oauth/access_token", body = "code=1" }))
      assert.equal("instagram|https|h.example|443|verify:lua_ssl_trusted_certificate|fresh", s[1].pool)
      assert.is_nil(s[1].kept)
      assert.is_true(s[1].closed)
      -- a POST whose connection dies before any reply byte, or whose send fails: one try, kind network
      for _, script in ipairs({ { reused = 2, pieces = {} },
                                { reused = 2, pieces = { { err = "connection reset by peer" } } },
                                { reused = 2, send_err = "broken pipe" }, { pieces = {} } }) do
        s = mock({ script, { pieces = { OK } }, { pieces = { OK } } })
        local res, kind = t:request({ method = "POST", url = "https://h.example/oauth/access_token", body = "code=1" })
        assert.is_nil(res)
        assert.equal("network", kind)
        assert.equal(1, #s, "the POST was sent again")
      end
      s = mock({ { reused = 1, pieces = {} }, { pieces = { OK } }, { pieces = { OK } } })
      local out = t:request_many({ { method = "POST", url = "https://h.example/x", body = "b" } })
      assert.equal("network", out[1].error)
      assert.equal(1, #s)
      -- GETs keep the pool and the retry
      s = mock({ { reused = 1, pieces = {} }, { pieces = { OK } } })
      assert(t:request(get("https://h.example/")))
      assert.equal(2, #s)
      assert.equal("instagram|https|h.example|443|verify:lua_ssl_trusted_certificate", s[1].pool)
    end)

    it("does not retry a fresh connection that closes without a response (kind network)", function()
      local s = mock({ { pieces = {} } })
      local res, kind = transport():request(get("https://h/"))
      assert.is_nil(res)
      assert.equal("network", kind)
      assert.equal(1, #s)
    end)
  end)

  describe("errors", function()
    it("maps connect, TLS, send and read failures to their kinds, never with the query", function()
      local url = "https://h/me?access_token=SECRET"
      local cases = {
        { { connect_err = "connection refused" }, "network" },
        { { connect_err = "timeout" }, "timeout" },
        { { connect_err = "no resolver defined to resolve \"h\"" }, "network", "resolver" },
        { { ssl_err = "20: unable to get local issuer certificate" }, "tls" },
        { { ssl_err = "certificate host mismatch" }, "tls", "host mismatch" },
        { { ssl_err = "timeout" }, "timeout" },
        { { ssl_raise = true }, "tls" },
        { { send_err = "broken pipe" }, "network" },
        { { pieces = { { err = "timeout" } } }, "timeout" },
        { { pieces = { "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel", { err = "timeout" } } }, "timeout" },
        { { pieces = { "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel" } }, "network" },
        { { pieces = { "HTTP/1.1 200 OK\r\nContent-" } }, "network" },
      }
      for i, case in ipairs(cases) do
        local s = mock({ case[1] })
        local res, kind, msg = transport():request(get(url))
        assert.is_nil(res, i)
        assert.equal(case[2], kind, "case " .. i .. ": " .. tostring(msg))
        if case[3] then assert.matches(case[3], msg) end
        assert.not_matches("SECRET", msg)
        assert.not_matches("access_token", msg)
        if s[1].closed == nil then assert.is_nil(s[1].kept) end
      end
    end)

    it("keeps an overall deadline across reads", function()
      local s = mock({ { pieces = { "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
        { data = "a", advance = 0.6 }, { data = "b", advance = 0.6 }, "cdefghij" } } })
      local res, kind = transport():request(get("https://h/", { timeout = 1 }))
      assert.is_nil(res)
      assert.equal("timeout", kind)
      -- every wait was bounded by what was left of the second
      assert.is_true(s[1].timeouts[3] <= 1000)
    end)

    it("bounds connect by connect_timeout and reads by timeout (milliseconds)", function()
      local s = mock({ { pieces = { OK } } })
      assert(transport():request(get("https://h/", { timeout = 3, connect_timeout = 0.25 })))
      assert.equal(250, s[1].timeouts[1])
      assert.is_true(s[1].timeouts[3] > 2900 and s[1].timeouts[3] <= 3000)
    end)
  end)

  describe("request_many and close", function()
    it("returns results in order, errors as {error, message}", function()
      mock({ { pieces = { OK } }, { connect_err = "connection refused" },
             { pieces = { "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n" } } })
      local out = transport():request_many({ get("https://a/"), get("https://b/"), get("https://c/") }, 2)
      assert.equal(200, out[1].status)
      assert.equal("network", out[2].error)
      assert.is_string(out[2].message)
      assert.equal(404, out[3].status)
    end)

    it("new raises on a user_agent with CR, LF or NUL, as the C core does", function()
      for _, ua in ipairs({ "a\r\nX-Injected: 1", "a\nb", "a\0b" }) do
        assert.has_error(function() ngx_transport.new({ user_agent = ua }) end,
          "instagram.ngx.new: user_agent contains CR, LF or NUL")
      end
      assert.has_error(function() ngx_transport.new({ user_agent = 5 }) end,
        "instagram.ngx.new: user_agent must be a string")
      assert.has_error(function() ngx_transport.new("x") end, "instagram.ngx.new: opts must be a table")
      ngx_transport.new({ user_agent = "fine/1.0" })
    end)

    it("close is idempotent", function()
      local t = transport()
      t:close()
      t:close()
    end)
  end)
end)
