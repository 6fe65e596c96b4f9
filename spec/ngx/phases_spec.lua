-- The transport is chosen per request from the nginx phase, not when the client is made (review C3):
-- clients made at module level (init_by_lua) or per worker (init_worker_by_lua) use cosockets in
-- every phase that allows them, so a slow Instagram never blocks the worker, and libcurl is set up
-- only when a phase without cosockets (log_by_lua) really makes a request. Also: the retry back-off
-- sleeps with ngx.sleep where it can; DNS is bounded by the request's timeout (review S2).
-- Handlers: spec/ngx/harness.lua. Ordering is asserted from the fake's log and from which answer
-- arrived first, never from wall-clock durations.
local Fake = require "spec.support.fake"
local Nginx = require "spec.support.nginx"
local cjson = require "cjson"
local socket = require "socket"

local USER_ID = "17841405793187219" -- jayposiris

local CONF = Nginx.prologue() .. Nginx.LUA_PATHS .. [[
    lua_ssl_trusted_certificate ${CA};
    lua_ssl_verify_depth 3;
    lua_socket_log_errors off;
    lua_shared_dict results 1m;
    # a resolver that never answers (a UDP socket the spec holds): only DNS spec names use it
    resolver 127.0.0.1:${DNS_PORT} ipv6=off;
    resolver_timeout 20s;
    init_by_lua_block {
        local h = require("harness")
        h.configure({
            https = "${HTTPS}", http = "${HTTP}", untrusted = "${UNTRUSTED}",
            wrong_host = "${WRONG_HOST}", expired = "${EXPIRED}", ca_file = "${CA}",
        })
        h.count_sessions()
        h.make_client("module", { retries = 1 })
    }
    init_worker_by_lua_block { require("harness").make_client("worker", { retries = 1 }) }
    server {
        listen 127.0.0.1:${PORT};
        location ~ ^/t/(\w+)$ {
            content_by_lua_block { require("harness").run(ngx.var[1]) }
        }
        location ~ ^/rewrite/(\w+)$ {
            rewrite_by_lua_block { require("harness").run(ngx.var[1], true) }
        }
        location ~ ^/access/(\w+)$ {
            access_by_lua_block { require("harness").run(ngx.var[1], true) }
        }
        location = /log {
            content_by_lua_block { ngx.say("ok") }
            log_by_lua_block { require("harness").log_phase() }
        }
    }
    server {
        listen 127.0.0.1:${SR_PORT};
        server_rewrite_by_lua_block {
            require("harness").run(ngx.var.uri:match("^/t/(%w+)$") or "none", true)
        }
    }
}
]]

local query = Nginx.query

-- raw HTTP/1.0 over lua-socket, so two requests can be in flight at once
local function send(port, path)
  local s = assert(socket.connect("127.0.0.1", port))
  s:settimeout(20)
  assert(s:send("GET " .. path .. " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"))
  return s
end

local function finish(s)
  local data = assert(s:receive("*a"))
  s:close()
  local status, body = data:match("^HTTP/1%.%d (%d+).-\r\n\r\n(.*)$")
  assert(status == "200", "answered: " .. data)
  local out = cjson.decode(body)
  assert(out.raised == nil, "handler raised: " .. tostring(out.raised))
  return out
end

-- true while no byte of the answer has arrived on s
local function pending(s)
  local readable = socket.select({ s }, nil, 0)
  return #readable == 0
end

local function wait_until(what, fn)
  local deadline = socket.gettime() + 15
  while not fn() do
    assert(socket.gettime() < deadline, "gave up waiting for " .. what)
    socket.sleep(0.02)
  end
end

describe("transport per phase inside nginx #nginx", function()
  local f, server, dns

  local function get(path, args, port)
    return finish(send(port or server.ports.http, path .. query(args)))
  end

  setup(function()
    -- a DNS server that never answers, for the resolver bound
    dns = assert(socket.udp())
    assert(dns:setsockname("127.0.0.1", 0))
    local _, dns_port = dns:getsockname()
    f = Fake.start({ quiet = true })
    server = Nginx.start_beside(f, CONF, Nginx.fake_vars(f, { DNS_PORT = dns_port }), nil,
      { ports = { "http", "sr" } })
  end)

  teardown(function()
    if server then server:stop() end
    if f then f:stop() end
    if dns then dns:close() end
  end)

  before_each(function()
    f:reset()
  end)

  for _, which in ipairs({ "worker", "module" }) do
    it("a client made in " .. (which == "worker" and "init_worker_by_lua" or "init_by_lua")
        .. " does not block the worker in a content handler", function()
      local token = f:issue_token("jayposiris", { kind = "short" })
      f:fault("/me", { delay = 1.5, times = 1 })
      local slow = send(server.ports.http, "/t/use" .. query({ which = which, token = token }))
      wait_until("the slow call to reach the fake", function() return #f:log("/me") >= 1 end)
      -- another location (and phase) of the same worker
      local fast = finish(send(server.ports.http, "/access/use" .. query({ which = which, call = "user",
        id = USER_ID, token = token })))
      assert.is_true(pending(slow), "the slow request answered before the fast one")
      local out = finish(slow)
      assert.is_true(out.is_ngx)
      assert.is_true(fast.is_ngx)
      assert.is_nil(out.err, cjson.encode(out))
      assert.equal("jayposiris", out.value.username)
      assert.equal(USER_ID, fast.value.id)
      -- the fast call went out while the slow one was still waiting on the fake
      local me, user = f:log("/me")[1], f:log("/" .. USER_ID)[1]
      assert.is_true(user.started < me.finished)
      assert.equal(0, out.sessions, "a libcurl session was made")
    end)
  end

  it("uses cosockets in rewrite, access, server_rewrite, content and timer phases, for every client", function()
    local token = f:issue_token("jayposiris", { kind = "short" })
    for _, which in ipairs({ "worker", "module", "local" }) do
      local args = { which = which, token = token }
      local outs = {
        content = get("/t/use", args),
        rewrite = get("/rewrite/use", args),
        access = get("/access/use", args),
        server_rewrite = get("/t/use", args, server.ports.sr),
      }
      args.key = which
      assert.truthy(get("/t/timer", args).scheduled)
      local r
      wait_until("the timer", function()
        r = get("/t/result", { key = "timer:" .. which })
        return r.ready
      end)
      outs.timer = r.out
      for phase, out in pairs(outs) do
        local where = which .. " client in " .. phase .. ": " .. cjson.encode(out)
        assert.equal(phase, out.phase, where)
        assert.is_true(out.is_ngx, where)
        assert.is_nil(out.err, where)
        assert.equal("jayposiris", out.value.username, where)
        assert.equal(0, out.sessions, where)
      end
    end
  end)

  it("sleeps the retry back-off with ngx.sleep in server_rewrite_by_lua (other requests proceed)", function()
    local token = f:issue_token("jayposiris", { kind = "short" })
    f:fault("/me", { mode = "retry_after", retry_after = "1", times = 1 })
    local slow = send(server.ports.sr, "/t/use" .. query({ which = "worker", token = token }))
    wait_until("the 429", function()
      local log = f:log("/me")
      return #log >= 1 and log[1].finished ~= nil
    end)
    local fast = finish(send(server.ports.http, "/t/use" .. query({ which = "worker", call = "user",
      id = USER_ID, token = token })))
    assert.is_true(pending(slow), "the sleeping request answered before the fast one")
    local out = finish(slow)
    assert.equal("server_rewrite", out.phase)
    assert.is_true(out.is_ngx)
    assert.is_nil(out.err, cjson.encode(out))
    assert.equal(USER_ID, fast.value.id)
    local me = f:log("/me")
    assert.equal(2, #me)
    assert.is_true(f:log("/" .. USER_ID)[1].started < me[2].started, "the fast call waited for the back-off")
  end)

  it("uses libcurl in log_by_lua, made on first need and then kept; sleep works there", function()
    local token = f:issue_token("jayposiris", { kind = "short" })
    local before = get("/t/sessions").sessions
    local outs = {}
    for i, call in ipairs({ "me", "me", "sleep" }) do
      local key = "k" .. i .. "-" .. socket.gettime()
      local s = send(server.ports.http, "/log" .. query({ which = "worker", token = token, key = key, call = call }))
      s:receive("*a")
      s:close()
      wait_until("the log phase", function()
        local r = get("/t/result", { key = "log:" .. key })
        outs[i] = r.out
        return r.ready
      end)
      assert.is_nil(outs[i].raised, cjson.encode(outs[i]))
      assert.equal("log", outs[i].phase)
      assert.is_false(outs[i].is_ngx)
    end
    assert.equal("jayposiris", outs[1].value.username, cjson.encode(outs[1]))
    assert.equal("jayposiris", outs[2].value.username, cjson.encode(outs[2]))
    assert.equal(before + 1, outs[1].sessions)
    assert.equal(before + 1, outs[2].sessions)
    assert.is_true(outs[3].value.slept)
    -- and back in a content handler the same client is on cosockets again
    local out = get("/t/use", { which = "worker", token = token })
    assert.is_true(out.is_ngx)
    assert.equal(before + 1, out.sessions)
  end)

  it("bounds DNS resolution by the timeout and the connect timeout (kind timeout)", function()
    for _, args in ipairs({ { timeout = 0.5 }, { timeout = 5, connect_timeout = 0.3 } }) do
      args.host = "ig-blackhole.invalid"
      local out = get("/t/dns", args)
      assert.equal("timeout", out.kind, cjson.encode(out))
      assert.matches("ig%-blackhole%.invalid", out.message)
      assert.not_matches("SECRET", out.message)
    end
    -- the abandoned lookups left the worker sound
    local token = f:issue_token("jayposiris", { kind = "short" })
    assert.equal("jayposiris", get("/t/use", { which = "worker", token = token }).value.username)
  end)
end)
