-- Response headers on the libcurl path as the cosocket transport reads them (review C15c): an
-- obs-folded header (a continuation line starting with a space or tab) is joined to the header
-- before it with one space (RFC 9112 §5.2); repeated names are joined with ", ". A raw loopback
-- server in a forked child (tools/testfork) sends bytes nginx would never produce.
local core = require "instagram.core"
local socket = require "socket"
local testfork = require "ig_testfork"

describe("core.session response headers", function()
  -- serves `raw` to one connection from a child process; returns the base URL and the child pid
  local function serve_once(raw)
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    io.stdout:flush()
    io.stderr:flush()
    local pid = assert(testfork.fork())
    if pid == 0 then
      pcall(function()
        server:settimeout(10)
        local c = assert(server:accept())
        c:settimeout(10)
        repeat local line = c:receive("*l") until not line or line == ""
        c:send(raw)
        c:close()
      end)
      testfork.exit_now(0)
    end
    server:close()
    return "http://127.0.0.1:" .. port, pid
  end

  it("joins obs-folded continuation lines with one space, as the ngx transport does", function()
    local base, pid = serve_once("HTTP/1.1 200 OK\r\nX-Long: first\r\n  second\r\n\tthird \r\n"
      .. "X-B: b\r\nX-B: c\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    local sess = core.session({ allow_http = true, timeout = 10 })
    local res = assert(sess:perform({ url = base .. "/" }))
    assert.equal(0, testfork.wait(pid))
    assert.equal("first second third", res.headers["x-long"])
    assert.equal("b, c", res.headers["x-b"])
    assert.equal("ok", res.body)
    sess:close()
  end)

  it("decodes res.headers on first read into a plain table that pairs and next walk", function()
    local base, pid = serve_once("HTTP/1.1 200 OK\r\nServer: raw\r\nX-A: 1\r\nX-A: 2\r\nX-Fold: a\r\n b\r\n"
      .. "Content-Length: 2\r\nConnection: close\r\n\r\nok")
    local sess = core.session({ allow_http = true, timeout = 10 })
    local res = assert(sess:perform({ url = base .. "/" }))
    assert.equal(0, testfork.wait(pid))
    assert.is_nil(rawget(res, "headers")) -- not decoded yet
    assert.is_nil(res.usage_headers)       -- none came: no table
    assert.is_nil(res.nothing)
    local h = res.headers
    assert.equal(h, rawget(res, "headers"))
    assert.equal(h, res.headers)
    assert.is_nil(getmetatable(h))
    local seen = {}
    for k, v in pairs(h) do seen[k] = v end
    assert.same({ server = "raw", ["x-a"] = "1, 2", ["x-fold"] = "a b", ["content-length"] = "2",
      connection = "close" }, seen)
    assert.equal(200, res.status)
    assert.equal("ok", res.body)
    sess:close()
  end)

  it("decodes the usage headers of every response alone, joined and folded as res.headers has them", function()
    local base, pid = serve_once("HTTP/1.1 200 OK\r\nX-App-Usage: {\"call_count\":5}\r\nX-Other: o\r\n"
      .. " folded\r\nx-business-use-case-usage: {\"1\":[]}\r\nX-BUSINESS-USE-CASE-USAGE: {\"2\":[]}\r\n"
      .. "\tmore\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    local sess = core.session({ allow_http = true, timeout = 10 })
    local res = assert(sess:perform({ url = base .. "/" }))
    assert.equal(0, testfork.wait(pid))
    assert.same({ ["x-app-usage"] = '{"call_count":5}',
      ["x-business-use-case-usage"] = '{"1":[]}, {"2":[]} more' }, res.usage_headers)
    assert.equal(res.usage_headers["x-app-usage"], res.headers["x-app-usage"])
    assert.equal(res.usage_headers["x-business-use-case-usage"], res.headers["x-business-use-case-usage"])
    assert.equal("o folded", res.headers["x-other"])
    sess:close()
  end)
end)
