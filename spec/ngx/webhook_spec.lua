-- instagram.resty.webhook in a real nginx (client_body_buffer_size 8k), fed by the fake
-- Instagram's webhook sender, which signs and POSTs deliveries and retries on non-2xx.
-- The receiver's locations are in spec/ngx/webhook_receiver.lua.
local Fake = require "spec.support.fake"
local Nginx = require "spec.support.nginx"
local cjson = require "cjson"
local socket = require "socket"

local SECRET = "meta-app-secret-0123456789abcdef"
local OTHER = "instagram-app-secret-fedcba9876543210"
local VERIFY_TOKEN = "meatyhamhock-verify-token"

local CONF = Nginx.prologue{ error_log = "info" } .. [[
    # bodies above 8k are spooled to a temp file, where get_body_data() cannot see them
    client_body_buffer_size 8k;
    client_max_body_size 8m;
]] .. Nginx.LUA_PATHS .. [[
    lua_shared_dict wh_dedupe 16m;
    lua_shared_dict wh_state 16m;
    init_by_lua_block {
        require("webhook_receiver").configure({
            verify_token = "${VERIFY_TOKEN}", secret = "${SECRET}", other = "${OTHER}",
        })
    }
    server {
        listen 127.0.0.1:${PORT};
        location ~ ^/(\w+)$ {
            content_by_lua_block { require("webhook_receiver").run(ngx.var[1]) }
        }
    }
}
]]

describe("instagram.resty.webhook in nginx, fed by the fake's sender #nginx", function()
  local f, server

  setup(function()
    f = Fake.start({ quiet = true })
    server = Nginx.start_beside(f, CONF, { VERIFY_TOKEN = VERIFY_TOKEN, SECRET = SECRET, OTHER = OTHER })
  end)

  teardown(function()
    if server then server:stop() end
    if f then f:stop() end
  end)

  before_each(function()
    assert.equal(200, (server:get("/reset")))
  end)

  local function state()
    local status, _, body = server:get("/state")
    assert.equal(200, status)
    return cjson.decode(body)
  end

  local function seen(id)
    local _, _, body = server:get("/event?id=" .. id)
    return tonumber(body)
  end

  -- polls /state until pred(state) holds (or 30 s pass), then returns the state
  local function wait_for(pred)
    local deadline = socket.gettime() + 30
    local s = state()
    while not pred(s) and socket.gettime() < deadline do
      socket.sleep(0.05)
      s = state()
    end
    return s
  end

  local function send(path, spec)
    spec.url = server.base .. path
    spec.secret = spec.secret or SECRET
    return f:send_webhook(spec)
  end

  describe("the verification GET", function()
    local function get(query)
      return server:get("/webhooks?" .. query)
    end

    it("echoes the challenge as text/plain for the right token", function()
      local status, headers, body = get("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=" .. VERIFY_TOKEN)
      assert.equal(200, status)
      assert.equal("1158201444", body)
      assert.matches("^text/plain", headers["content-type"])
    end)

    it("403 for a wrong token or no mode, 400 for <script>, and the token never logged", function()
      local status, headers, body = get("hub.mode=subscribe&hub.challenge=1&hub.verify_token=wrong")
      assert.equal(403, status)
      assert.matches("^text/plain", headers["content-type"])
      assert.not_matches("1", body, 1, true)
      assert.equal(403, (get("hub.challenge=1&hub.verify_token=" .. VERIFY_TOKEN)))
      assert.equal(403, (get("hub.mode&hub.challenge=1&hub.verify_token=" .. VERIFY_TOKEN)))
      status, headers, body = get("hub.mode=subscribe&hub.challenge=%3Cscript%3Ealert(1)%3C%2Fscript%3E"
        .. "&hub.verify_token=" .. VERIFY_TOKEN)
      assert.equal(400, status)
      assert.matches("^text/plain", headers["content-type"])
      assert.not_matches("<script>", body, 1, true)
      assert.not_matches(VERIFY_TOKEN, server:log_tail(), 1, true)
    end)
  end)

  it("verifies 200 deliveries, some of 1,000 changes over 64 KiB through the temp file, each event once", function()
    local expected, big, small, repeats = 0, 0, 0, 0
    for i = 1, 200 do
      local build
      if i % 10 == 0 then
        build = { serial = i, comments = 1000, messages = 0 }
      else
        build = { serial = i, comments = i % 5 + 1, messages = i % 3 }
      end
      -- every 4th delivery is sent twice, as Meta does when it thinks an answer was lost
      local times = i % 4 == 0 and 2 or 1
      local r = send("/webhooks", { build = build, times = times })
      if i % 10 == 0 then
        assert.is_true(r.bytes > 64 * 1024)
        big = big + times
      else
        assert.is_true(r.bytes < 4096)
        small = small + times
      end
      repeats = repeats + times - 1
      expected = expected + r.events
      for _, d in ipairs(r.deliveries) do
        assert.is_true(d.delivered)
        assert.equal(200, d.attempts[1].status)
      end
    end
    local s = wait_for(function(x) return (x.events or 0) >= expected end)
    assert.equal(expected, s.events)
    assert.is_nil(s.dups)
    assert.equal(200 + repeats, s["status:200"])
    assert.equal(big, s.verified_from_file)
    assert.equal(small, s.verified_from_memory)
    assert.is_true(s["kind:comment"] > 20000)
    assert.is_true(s["kind:message"] > 0)
    -- a sample: the 17-digit comment IDs arrived exact and once
    assert.equal(1, seen(string.format("178%06d%08d", 10, 1000)))
    assert.equal(1, seen(string.format("178%06d%08d", 200, 1)))
  end)

  it("processes an event once when the sender retries after a 503", function()
    local r = send("/flaky", { build = { serial = 7001, comments = 3, messages = 1 }, retries = 3, retry_delay = 0.01 })
    local d = r.deliveries[1]
    assert.is_true(d.delivered)
    assert.equal(503, d.attempts[1].status)
    assert.equal(200, d.attempts[2].status)
    local s = wait_for(function(x) return (x.events or 0) >= 4 end)
    assert.equal(4, s.events)
    assert.is_nil(s.dups)
    -- and a re-send of the whole delivery later changes nothing
    send("/webhooks", { build = { serial = 7001, comments = 3, messages = 1 }, times = 2 })
    socket.sleep(0.2)
    s = state()
    assert.equal(4, s.events)
    assert.equal(1, seen(string.format("178%06d%08d", 7001, 1)))
  end)

  it("answers before a handler that sleeps 5 s has finished", function()
    local r = send("/slow", { build = { serial = 8001, comments = 1 } })
    local attempt = r.deliveries[1].attempts[1]
    assert.equal(200, attempt.status)
    local s = state()
    assert.is_nil(s.slow_finished) -- the answer came first
    assert.is_true(attempt.seconds < 2, "the receiver took " .. attempt.seconds .. " s to answer")
    s = wait_for(function(x) return x.slow_finished ~= nil end)
    assert.is_number(s.slow_finished)
    assert.is_true(s.slow_finished - s.slow_started >= 4.9)
    assert.equal(1, s.events)
  end)

  it("answers 503 rather than acknowledge a delivery it has no timer for (nginx drops timers over its limit)",
    function()
    -- lua_max_running_timers: a timer that finds no room is dropped with an alert, so a 200 given
    -- for it would lose its events; above max_timers the receiver answers 503 and Meta re-sends
    local ok200, busy = 0, 0
    for i = 1, 5 do
      local r = send("/crowded", { build = { serial = 9500 + i, comments = 1 } })
      local status = r.deliveries[1].attempts[1].status
      if status == 200 then ok200 = ok200 + 1 elseif status == 503 then busy = busy + 1 end
    end
    assert.equal(5, ok200 + busy)
    assert.is_true(busy >= 1, "every delivery was acknowledged")
    assert.is_true(ok200 >= 2)
    -- every acknowledged delivery is processed
    local s = wait_for(function(x) return (x.events or 0) >= ok200 end)
    assert.equal(ok200, s.events)
    assert.matches("answering 503", server:log_tail(), 1, true)
  end)

  it("never processes a forged, sha1-only or unsigned delivery, and logs none of it", function()
    local marker_serial = 9001
    local forged = send("/webhooks", { build = { serial = marker_serial, comments = 2, messages = 1 },
      secret = "not-the-app-secret", retries = 2, retry_delay = 0.01 })
    assert.is_false(forged.deliveries[1].delivered)
    for _, a in ipairs(forged.deliveries[1].attempts) do assert.equal(403, a.status) end
    assert.equal(3, #forged.deliveries[1].attempts)
    local sha1 = send("/webhooks", { build = { serial = marker_serial + 1, comments = 1 }, sha1_only = true })
    assert.equal(403, sha1.deliveries[1].attempts[1].status)
    local upper = send("/webhooks", { build = { serial = marker_serial + 2, comments = 1 },
      signature = "sha256=" .. string.rep("AB", 32) })
    assert.equal(403, upper.deliveries[1].attempts[1].status)
    -- a genuine one afterwards, so the timers have had their chance
    send("/webhooks", { build = { serial = marker_serial + 3, comments = 1 } })
    local s = wait_for(function(x) return (x.events or 0) >= 1 end)
    assert.equal(1, s.events)
    assert.equal(5, s["status:403"])
    assert.equal(0, seen(string.format("178%06d%08d", marker_serial, 1)))
    assert.equal(0, seen(string.format("178%06d%08d", marker_serial + 1, 1)))
    local log = server:log_tail()
    assert.matches("refused a delivery (mismatch)", log, 1, true)
    assert.matches("refused a delivery (sha1)", log, 1, true)
    assert.matches("refused a delivery (malformed)", log, 1, true)
    assert.not_matches("order karna hai", log, 1, true)
    assert.not_matches("user.1", log, 1, true)
    assert.not_matches(SECRET, log, 1, true)
    assert.not_matches(OTHER, log, 1, true)
  end)

  it("accepts a delivery signed with the second configured secret", function()
    local r = send("/webhooks", { build = { serial = 9101, comments = 2 }, secret = SECRET })
    assert.equal(200, r.deliveries[1].attempts[1].status)
    r = send("/webhooks", { build = { serial = 9102, comments = 2 }, secret = OTHER })
    assert.equal(200, r.deliveries[1].attempts[1].status)
    assert.equal(4, wait_for(function(x) return (x.events or 0) >= 4 end).events)
  end)

  it("413 above max_body, before and after reading the body", function()
    local r = send("/small", { build = { serial = 9201, comments = 20 } })
    assert.is_true(r.bytes > 1024)
    assert.equal(413, r.deliveries[1].attempts[1].status)
    -- chunked: no Content-Length to judge by, so the body read decides
    local body = string.rep("x", 2000)
    local ok, code = pcall(function()
      local s = socket.tcp()
      s:settimeout(5)
      assert(s:connect("127.0.0.1", server.port))
      assert(s:send("POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .. string.format("%x\r\n", #body) .. body .. "\r\n0\r\n\r\n"))
      local line = s:receive("*l")
      s:close()
      return tonumber(line:match("^HTTP/1%.%d (%d+)"))
    end)
    assert.is_true(ok, code)
    assert.equal(413, code)
    assert.is_nil(state().events)
  end)

  it("413 for a chunked body over max_body spooled to a temp file, without reading it into Lua", function()
    -- no Content-Length, 4 MiB (client_max_body_size allows 8m): nginx spools it to a file, and
    -- the receiver must judge it by the file's size, not by reading it whole
    local chunk = string.rep("x", 64 * 1024)
    local ok, code = pcall(function()
      local s = socket.tcp()
      s:settimeout(10)
      assert(s:connect("127.0.0.1", server.port))
      assert(s:send("POST /small_heap HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"))
      for _ = 1, 64 do assert(s:send(string.format("%x\r\n", #chunk) .. chunk .. "\r\n")) end
      assert(s:send("0\r\n\r\n"))
      local line = s:receive("*l")
      s:close()
      return tonumber(line:match("^HTTP/1%.%d (%d+)"))
    end)
    assert.is_true(ok, code)
    assert.equal(413, code)
    local s = state()
    assert.is_nil(s.events)
    assert.is_true(s.small_heap_kib < 512, "the Lua heap grew by " .. s.small_heap_kib .. " KiB")
  end)

  it("answers 400 to a signed body that is not JSON, 405 to other methods", function()
    local r = send("/webhooks", { body = "not json at all" })
    assert.equal(400, r.deliveries[1].attempts[1].status)
    local status = Nginx.http("PUT", server.base .. "/webhooks", "x", nil, 5)
    assert.equal(405, status)
  end)

  it("dedupes through any store with add(key, value, ttl)", function()
    local r = send("/custom", { build = { serial = 9301, comments = 2, messages = 1 }, times = 3 })
    for _, d in ipairs(r.deliveries) do assert.is_true(d.delivered) end
    local s = wait_for(function(x) return (x.custom_adds or 0) >= 9 and (x.events or 0) >= 3 end)
    assert.equal(3, s.events)
    assert.equal(9, s.custom_adds)
    assert.is_nil(s.dups)
  end)

  for _, where in ipairs({ "default", "store" }) do
    it("dedupes re-sends with " .. (where == "default" and "no dedupe option (the worker's memory)"
      or "an instagram.store"), function()
      local serial = where == "default" and 9501 or 9601
      local r = send("/" .. where, { build = { serial = serial, comments = 2, messages = 1 }, times = 3 })
      for _, d in ipairs(r.deliveries) do assert.is_true(d.delivered) end
      wait_for(function(x) return (x["status:200"] or 0) >= 3 and (x.events or 0) >= 3 end)
      socket.sleep(0.2) -- every delivery's timer has run
      local s = state()
      assert.equal(3, s.events)
      assert.is_nil(s.dups)
    end)
  end

  it("keeps going when on_event raises, logging the kind only", function()
    send("/failing", { build = { serial = 9401, comments = 2, messages = 2 } })
    local s = wait_for(function(x) return (x.failing_calls or 0) >= 4 end)
    assert.equal(4, s.failing_calls)
    assert.equal(2, s.events)
    assert.matches("on_event failed for a comment event", server:log_tail(), 1, true)
  end)
end)

describe("examples/openresty/webhooks.lua #nginx", function()
  local EXAMPLE_CONF = Nginx.prologue{
    worker_connections = 64, env = { "IG_WEBHOOK_VERIFY_TOKEN", "IG_WEBHOOK_SECRETS" },
  } .. [[
    lua_package_path "${ROOT}/lua/?.lua;${ROOT}/lua/?/init.lua;${ROOT}/examples/openresty/?.lua;;";
    lua_package_cpath "${ROOT}/build/5.1/?.so;;";
    lua_shared_dict ig_webhook_events 4m;
    lua_shared_dict ig_webhook_dedupe 8m;
    init_by_lua_block { require("webhooks").init() }
    server {
        listen 127.0.0.1:${PORT};
        location = /webhooks {
            client_max_body_size 4m;
            content_by_lua_block { require("webhooks").handle() }
        }
        location = /page {
            content_by_lua_block { ngx.say(require("webhooks").html(ngx.var.arg_account)) }
        }
    }
}
]]
  local f, server

  setup(function()
    f = Fake.start({ quiet = true })
    server = Nginx.start_beside(f, EXAMPLE_CONF, {},
      { IG_WEBHOOK_VERIFY_TOKEN = VERIFY_TOKEN, IG_WEBHOOK_SECRETS = OTHER .. "," .. SECRET })
  end)

  teardown(function()
    if server then server:stop() end
    if f then f:stop() end
  end)

  it("answers the challenge and shows the account's events on its page, escaped", function()
    local status, _, body = server:get("/webhooks?hub.mode=subscribe&hub.challenge=99&hub.verify_token="
      .. VERIFY_TOKEN)
    assert.equal(200, status)
    assert.equal("99", body)
    local account = "17841477965412210"
    local r = f:send_webhook({ url = server.base .. "/webhooks", secret = SECRET,
      build = { account_id = account, serial = 1, comments = 3, messages = 1 }, times = 2 })
    assert.is_true(r.deliveries[2].delivered)
    local deadline = socket.gettime() + 10
    local page
    repeat
      socket.sleep(0.05)
      _, _, page = server:get("/page?account=" .. account)
    until select(2, page:gsub('<li class="webhook%-event">', "")) >= 4 or socket.gettime() > deadline
    assert.equal(4, select(2, page:gsub('<li class="webhook%-event">', ""))) -- the re-send added nothing
    assert.matches("&lt;b&gt;price?&lt;/b&gt;", page, 1, true)
    assert.not_matches("<b>price", page, 1, true)
    assert.matches("ñandú 🇧🇷 #3", page, 1, true) -- sent as \u escapes, shown as UTF-8
    _, _, page = server:get("/page?account=1")
    assert.matches("No webhook events yet", page, 1, true)
  end)
end)
