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
end)
