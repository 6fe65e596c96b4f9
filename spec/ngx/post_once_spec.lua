-- Fault-catalogue rows for the ngx (cosocket) transport that need nginx (spec/faults_spec.lua has the
-- libcurl ones): the code-exchange POST goes out exactly once, on a fresh connection, even when a
-- kept-alive connection to the token host is in the pool and the server drops the request without
-- a reply (review C2, browser D3). GETs still reuse pooled connections and still get the one
-- "stale connection" retry. Handlers: spec/ngx/harness.lua (exchange, get_warm).
local Fake = require "spec.support.fake"
local Nginx = require "spec.support.nginx"
local cjson = require "cjson"

local BD_APP = "684477648739411"
local USER_ID = "17841405793187219" -- jayposiris

local CONF = Nginx.prologue() .. Nginx.LUA_PATHS .. [[
    lua_ssl_trusted_certificate ${CA};
    lua_ssl_verify_depth 3;
    lua_socket_log_errors off;
    init_by_lua_block {
        require("harness").configure({
            https = "${HTTPS}", http = "${HTTP}", untrusted = "${UNTRUSTED}",
            wrong_host = "${WRONG_HOST}", expired = "${EXPIRED}", ca_file = "${CA}",
        })
    }
    server {
        listen 127.0.0.1:${PORT};
        location ~ ^/t/(\w+)$ {
            content_by_lua_block { require("harness").run(ngx.var[1]) }
        }
    }
}
]]

-- the faults that kill a connection after the request was read, before any reply byte
local FAULTS = {
  { name = "close (FIN)", spec = { mode = "close" } },
  { name = "reset (RST)", spec = { mode = "reset" } },
  { name = "reset_mid_headers", spec = { mode = "reset_mid_headers" } },
}

local POSTS = {
  { name = "exchange_code", batch = "0" },
  { name = "batch:exchange_code", batch = "1" },
}

describe("ngx transport: the code exchange is never sent twice #nginx", function()
  local f, server

  local function get(name, args) return Nginx.call(server, "/t/" .. name, args) end

  setup(function()
    f = Fake.start({ quiet = true })
    server = Nginx.start_beside(f, CONF, Nginx.fake_vars(f))
  end)

  teardown(function()
    if server then server:stop() end
    if f then f:stop() end
  end)

  before_each(function()
    f:reset()
  end)

  for _, fault in ipairs(FAULTS) do
    for _, m in ipairs(POSTS) do
      for _, warm in ipairs({ "1", "0" }) do
        local where = warm == "1" and "a pooled connection in reach" or "no pooled connection"
        it(fault.name .. " x " .. m.name .. ", " .. where .. ": one POST, kind network", function()
          local token = f:issue_token("jayposiris", { kind = "short" })
          local code = f:issue_code(BD_APP)
          f:fault("/oauth/access_token", fault.spec)
          local out = get("exchange", { token = token, id = USER_ID, code = code, batch = m.batch, warm = warm })
          if warm == "1" then assert.is_true(out.warm.ok, cjson.encode(out.warm)) end
          assert.is_nil(out.value)
          assert.equal("network", out.err.kind, cjson.encode(out.err))
          assert.not_matches(code, out.err.text, 1, true)
          if m.batch == "1" then assert.is_true(out.other_ok) end
          local posts = f:log("/oauth/access_token")
          assert.equal(1, #posts, "the POST reached the fake " .. #posts .. " times")
          assert.equal(code, posts[1].form.code)
          assert.equal(1, posts[1].connection_requests, "the POST went on a reused connection")
        end)
      end
    end
  end

  it("sends each POST on a fresh connection, and a later GET still finds a pooled one", function()
    local token = f:issue_token("jayposiris", { kind = "short" })
    local out = get("exchange", { token = token, id = USER_ID, code = f:issue_code(BD_APP) })
    assert.is_nil(out.err, cjson.encode(out.err))
    out = get("get_warm", { token = token, id = USER_ID })
    assert.is_nil(out.err, cjson.encode(out.err))
    local posts, mes = f:log("/oauth/access_token"), f:log("/me")
    assert.equal(1, #posts)
    assert.equal(1, posts[1].connection_requests)
    assert.equal(1, #mes)
    assert.is_true(mes[1].connection_requests > 1, "the GET did not reuse a kept-alive connection")
  end)

  for _, batch in ipairs({ "0", "1" }) do
    it("retries a GET once on a fresh connection when the pooled one dies"
        .. (batch == "1" and " (ig:batch)" or ""), function()
      for _, spec in ipairs({ { mode = "close", times = 1 }, { mode = "reset", times = 1 } }) do
        f:reset()
        local token = f:issue_token("jayposiris", { kind = "short" })
        f:fault("/me", spec)
        local out = get("get_warm", { token = token, id = USER_ID, batch = batch })
        assert.is_true(out.warm)
        assert.is_nil(out.err, spec.mode .. ": " .. cjson.encode(out.err))
        assert.equal("jayposiris", out.value.username)
        local mes = f:log("/me")
        assert.equal(2, #mes, spec.mode)
        assert.is_true(mes[1].connection_requests > 1, "the first GET was not on a pooled connection")
        assert.equal(1, mes[2].connection_requests)
      end
    end)
  end
end)
