-- Fork safety of the libcurl session (review C1/S6): a session used before a fork must not
-- share its connections (and TLS state) with the child. The child starts fresh without touching
-- the parent's handles, so neither process reads the other's responses and the child closing
-- its copy leaves the parent's connection alone. Real HTTP and HTTPS to a loopback nginx
-- (spec/support/echo.lua); fork from the test-only helper tools/testfork (build/<ver>/ig_testfork.so).
local core = require "instagram.core"
local cjson = require "cjson"
local testfork = require "ig_testfork"
local Echo = require "spec.support.echo"

describe("core.session across fork()", function()
  local echo

  setup(function() echo = Echo.start() end)
  teardown(function() if echo then echo:stop() end end)

  local function get(sess, base, n, delay)
    local res, kind, msg = sess:perform({ url = base .. "/echo?n=" .. n .. "&delay=" .. (delay or 0) })
    if not res then return { err = tostring(kind) .. ": " .. tostring(msg) } end
    local ok, v = pcall(cjson.decode, res.body)
    return ok and v or { err = "not JSON: " .. res.body }
  end

  local function read_all(path)
    local f = assert(io.open(path, "rb"))
    local text = f:read("*a")
    f:close()
    return text
  end

  for _, scheme in ipairs({ "http", "https" }) do
    it("gives parent and child their own connections and responses over " .. scheme, function()
      local base = echo[scheme]
      local sess = core.session({ allow_http = true, ca_file = echo.ca_file, timeout = 10 })
      local before = get(sess, base, "before")
      assert.same("before", before.n, before.err)

      local out = os.tmpname()
      io.stdout:flush()
      io.stderr:flush()
      local pid = assert(testfork.fork())
      if pid == 0 then
        -- the child: never returns to busted
        local ok, results = pcall(function()
          local r = {}
          for i = 1, 3 do r[i] = get(sess, base, "child" .. i, i == 1 and 0.2 or 0) end
          sess:close() -- must not shut down or close the parent's connection
          return r
        end)
        local f = io.open(out, "wb")
        if f then
          f:write(cjson.encode(ok and { results = results } or { raised = tostring(results) }))
          f:close()
        end
        testfork.exit_now(0)
      end

      local mine = {}
      for i = 1, 3 do mine[i] = get(sess, base, "parent" .. i, i == 1 and 0.2 or 0) end
      assert.equal(0, testfork.wait(pid))
      local child = cjson.decode(read_all(out))
      os.remove(out)
      local after = get(sess, base, "after")
      sess:close()

      assert.is_nil(child.raised)
      for i = 1, 3 do
        local r = child.results[i]
        assert.same("child" .. i, r.n, r.err)
        assert.not_equal(before.conn, r.conn) -- a connection of its own, not the parent's
        assert.equal(child.results[1].conn, r.conn) -- and kept alive in the child
        assert.same("parent" .. i, mine[i].n, mine[i].err)
        assert.equal(before.conn, mine[i].conn) -- the parent keeps its connection
      end
      -- the child's close sent nothing on the parent's connection (no TLS close_notify, no FIN)
      assert.same("after", after.n, after.err)
      assert.equal(before.conn, after.conn)
    end)
  end

  it("a session first used in the child works there and the parent's stays usable", function()
    local sess = core.session({ allow_http = true, ca_file = echo.ca_file, timeout = 10 })
    local pid = assert(testfork.fork())
    if pid == 0 then
      local r = get(sess, echo.https, "child")
      collectgarbage() -- nothing to collect yet: the session is still referenced
      sess:close()
      testfork.exit_now(r.n == "child" and 0 or 1)
    end
    assert.equal(0, testfork.wait(pid))
    local r = get(sess, echo.https, "parent")
    assert.same("parent", r.n, r.err)
    sess:close()
  end)
end)
