-- refresh_if_needed's single-flight (opts.shared_dict) inside a real nginx: light threads share one
-- lua_shared_dict and refresh a token at the fake Instagram (spec/ngx/singleflight_harness.lua).
local Fake = require "spec.support.fake"
local Nginx = require "spec.support.nginx"
local cjson = require "cjson"

local CONF = Nginx.prologue() .. Nginx.LUA_PATHS .. [[
    lua_ssl_trusted_certificate ${CA};
    lua_ssl_verify_depth 3;
    lua_socket_log_errors off;
    lua_shared_dict ig_refresh 1m;
    lua_shared_dict ig_out 64k;
    init_by_lua_block {
        require("harness").configure({
            https = "${HTTPS}", http = "${HTTP}", untrusted = "${UNTRUSTED}",
            wrong_host = "${WRONG_HOST}", expired = "${EXPIRED}", ca_file = "${CA}",
        })
    }
    server {
        listen 127.0.0.1:${PORT};
        location ~ ^/sf/(\w+)$ {
            content_by_lua_block { require("singleflight_harness").run(ngx.var[1]) }
        }
        location = /sfkill {
            content_by_lua_block { require("singleflight_harness").killed() }
        }
        location = /hf {
            content_by_lua_block { ngx.say("sub") }
            header_filter_by_lua_block { require("singleflight_harness").header_filter() }
        }
    }
}
]]

describe("refresh_if_needed single-flight inside nginx #nginx", function()
  local f, server

  local function get(name, args) return Nginx.call(server, "/sf/" .. name, args) end

  setup(function()
    f = Fake.start({ quiet = true })
    server = Nginx.start_beside(f, CONF, Nginx.fake_vars(f))
  end)

  teardown(function()
    if server then server:stop() end
    if f then f:stop() end
  end)

  local token
  before_each(function()
    f:reset()
    token = f:issue_token("jayposiris", { kind = "long", age = 55 * 86400 })
  end)

  it("makes one refresh request when the holder fails, and every waiter gets its error", function()
    f:fault("/refresh_access_token", { status = 500, delay = 0.5 })
    local out = get("many", { token = token, n = 5 })
    assert.equal(5, #out.results)
    for i, r in ipairs(out.results) do
      assert.is_false(r.ok, "thread " .. i)
      assert.equal("api", r.err.kind, "thread " .. i)
      assert.equal(2, r.err.code, "thread " .. i)
      assert.not_matches(token, r.err.text, 1, true)
    end
    assert.equal(1, #f:log("/refresh_access_token"))
  end)

  it("makes one refresh request when the holder succeeds, and every caller gets the new token", function()
    f:fault("/refresh_access_token", { delay = 0.3 })
    local out = get("many", { token = token, n = 5 })
    for i, r in ipairs(out.results) do
      assert.is_true(r.ok, "thread " .. i .. ": " .. cjson.encode(r))
      assert.is_true(r.refreshed)
    end
    assert.equal(1, #f:log("/refresh_access_token"))
  end)

  it("keeps the lock as long as its holder refreshes, on a short lease it renews", function()
    -- a refresh slower than the lease (3 s): the lock is still the holder's after 3.5 s
    f:fault("/refresh_access_token", { delay = 4 })
    local out = get("ttl", { token = token, timeout = 20, retries = 2, hold = 3.5 })
    assert.equal(1, out.locks)
    assert.is_true(out.ttl > 0 and out.ttl <= 3, "lock ttl " .. tostring(out.ttl))
    assert.is_true(out.same_owner)
    assert.is_true(out.result.ok, cjson.encode(out.result))
    assert.equal(0, out.left) -- released after the refresh
  end)

  it("releases only its own lock", function()
    f:fault("/refresh_access_token", { delay = 0.6 })
    local out = get("owner", { token = token })
    assert.equal(1, out.locks)
    assert.is_true(out.result.ok)
    assert.equal("another-owner", out.after)
  end)

  it("releases the lock when a raise abandons the holder (another call of its batch)", function()
    local out = get("abandon", { token = token })
    assert.is_false(out.ok)
    assert.matches("ig:me: token must be", out.batch_raised, 1, true)
    assert.equal(0, out.left)
    assert.is_true(out.again.ok, cjson.encode(out.again))
    assert.is_true(out.again.refreshed)
  end)

  it("frees the lock within seconds when the holder's request is killed mid-refresh (ngx.exit)", function()
    -- (its refresh would have failed: the token stays refreshable at the fake)
    f:fault("/refresh_access_token", { delay = 2, status = 500, times = 1 })
    local status = server:get("/sfkill?token=" .. token)
    assert.equal(204, status)
    -- the dead holder took the lock for its client's whole refresh time (15 s); a caller that waits
    -- at most 7 s must still get the lock, and refresh the token itself
    local out = get("after", { token = token })
    assert.equal(1, out.locks_before)
    assert.is_true(out.result.ok, cjson.encode(out.result))
    assert.is_true(out.result.refreshed)
  end)

  it("returns nil, err from a waiter in a phase without ngx.sleep (header_filter), never raises", function()
    f:fault("/refresh_access_token", { delay = 0.6 })
    local out = get("phase", { token = token })
    assert.is_true(out.holder.ok)
    assert.equal(200, out.sub_status)
    assert.is_nil(out.waiter.raised, tostring(out.waiter.raised))
    assert.is_false(out.waiter.ok)
    assert.equal("timeout", out.waiter.err.kind)
    assert.equal(1, #f:log("/refresh_access_token"))
  end)
end)
