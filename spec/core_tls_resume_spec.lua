-- The libcurl session shares TLS sessions between its easy handles (a CURLSH): a new connection,
-- and the fresh connection every POST gets, resumes the TLS session instead of a full handshake,
-- and keep-alive GETs stay on one connection. Real HTTPS to a loopback nginx (spec/support/echo.lua
-- reports $connection and $ssl_session_reused).
local core = require "instagram.core"
local cjson = require "cjson"
local Echo = require "spec.support.echo"

describe("core.session TLS reuse", function()
  local echo

  setup(function() echo = Echo.start() end)
  teardown(function() if echo then echo:stop() end end)

  local function decode(res, kind, msg)
    assert(res, tostring(kind) .. ": " .. tostring(msg))
    return cjson.decode(res.body)
  end

  it("keeps GETs on one connection and resumes TLS for POSTs and new connections", function()
    local s = core.session({ ca_file = echo.ca_file, timeout = 10 })
    local url = echo.https .. "/echo?n="
    local first = decode(s:perform({ url = url .. "g1" }))
    assert.equal(".", first.ssl_session_reused) -- the first handshake is a full one
    for i = 2, 20 do
      local r = decode(s:perform({ url = url .. "g" .. i }))
      assert.equal(first.conn, r.conn)
      assert.equal(i, r.reqs)
    end
    local seen = { [first.conn] = true }
    for i = 1, 3 do
      local r = decode(s:perform({ method = "POST", url = url .. "p" .. i, body = "code=c" .. i }))
      assert.equal("POST", r.method)
      assert.is_nil(seen[r.conn]) -- a fresh connection for every POST ...
      seen[r.conn] = true
      assert.equal("r", r.ssl_session_reused) -- ... that resumes the TLS session
    end
    -- a second slot (concurrency 2) opens its own connection, resuming too
    local many = s:perform_many({ { url = url .. "m1&delay=0.2" }, { url = url .. "m2&delay=0.2" } }, 2)
    local a, b = cjson.decode(many[1].body), cjson.decode(many[2].body)
    assert.not_equal(a.conn, b.conn)
    assert.equal("r", (a.conn == first.conn) and b.ssl_session_reused or a.ssl_session_reused)
    s:close()
  end)
end)
