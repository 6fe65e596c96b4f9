-- The keeper, the feed and the stores inside real nginx "hosts" (2 workers each) that share one
-- real redis-server, against the fake Instagram: fleet-wide single-flight, a host killed while it
-- holds the lock, Redis going away and coming back, the shared_dict store, resty.feed's ETag/304.
local Fake = require "spec.support.fake"
local Nginx = require "spec.support.nginx"
local Redis = require "spec.support.redis"
local instagram = require "instagram"
local cjson = require "cjson"
local socket = require "socket"

local CONF = Nginx.prologue{ workers = "${WORKERS}" } .. Nginx.LUA_PATHS .. [[
    lua_ssl_trusted_certificate ${CA};
    lua_ssl_verify_depth 3;
    lua_socket_log_errors off;
    lua_shared_dict ig_store 1m;
    init_by_lua_block {
        require("keeper_harness").configure({
            https = "${HTTPS}", ca_file = "${CA}", redis_port = ${REDIS_PORT}, lock_ttl = ${LOCK_TTL},
            user_id = "17841405793187219", redis_timeout = 0.5,
        })
    }
    server {
        listen 127.0.0.1:${PORT};
        location ~ ^/t/(\w+)$ {
            content_by_lua_block { require("keeper_harness").run(ngx.var[1]) }
        }
    }
}
]]

local DAY = 86400
local USER_ID = "17841405793187219"

describe("keeper and feed across nginx hosts #nginx", function()
  local f, redis, hosts = nil, nil, {}

  local function start_host(workers)
    local host = Nginx.start(CONF, {
      ROOT = Nginx.repo_root(), CA = f.ca_file, HTTPS = f.https, REDIS_PORT = redis.port, LOCK_TTL = 2,
      WORKERS = workers,
    }, nil, { master = true, name = "host" })
    hosts[#hosts + 1] = host
    return host
  end

  setup(function()
    f = Fake.start({ quiet = true })
    local ok, err = pcall(function()
      assert(Nginx.read_file(Nginx.repo_root() .. "/build/5.1/instagram/core.so"), "make build first")
      redis = Redis.start()
      start_host(2)
      start_host(2)
    end)
    if not ok then
      for _, h in ipairs(hosts) do h:stop() end
      if redis then redis:stop() end
      f:stop()
      error(err, 0)
    end
  end)

  teardown(function()
    for _, h in ipairs(hosts) do h:stop() end
    if redis then redis:stop() end
    if f then f:stop() end
  end)

  before_each(function()
    f:reset()
    local s = instagram.store.redis({ port = redis.port, prefix = "ngx:" })
    for _, k in ipairs(assert(s:keys(""))) do s:delete(k) end
  end)

  local function get(host, path, headers)
    local status, h, body = host:get(path, headers)
    return status, h, body
  end

  local function call(host, name, args)
    local q = {}
    for k, v in pairs(args or {}) do q[#q + 1] = k .. "=" .. v end
    local status, _, body = get(host, "/t/" .. name .. (#q > 0 and ("?" .. table.concat(q, "&")) or ""))
    assert(status == 200, name .. ": " .. tostring(status) .. " " .. tostring(body) .. "\n" .. host:log_tail(20))
    local out = cjson.decode(body)
    assert(out.raised == nil, name .. " raised: " .. tostring(out.raised))
    return out
  end

  -- GETs at once (curl in the background), -> array of {status, body, headers text}
  local function parallel(urls, extra)
    local dir = Nginx.mktemp_dir("par")
    local cmds = {}
    for i, url in ipairs(urls) do
      cmds[#cmds + 1] = string.format("curl -s -m 30 %s -D %s/h%d -o %s/b%d %s &", extra or "", dir, i, dir, i,
        Nginx.q(url))
    end
    assert(Nginx.run(Nginx.CLEAN_ENV .. "sh -c " .. Nginx.q(table.concat(cmds, " ") .. " wait")))
    local out = {}
    for i = 1, #urls do
      local head = Nginx.read_file(dir .. "/h" .. i) or ""
      out[i] = { status = tonumber(head:match("^HTTP/%S+ (%d+)")), body = Nginx.read_file(dir .. "/b" .. i),
        head = head }
    end
    Nginx.run("rm -rf " .. Nginx.q(dir))
    return out
  end

  local function fleet_urls(path, per_host)
    local urls = {}
    for _, h in ipairs({ hosts[1], hosts[2] }) do
      for _ = 1, per_host do urls[#urls + 1] = h.base .. path end
    end
    return urls
  end

  -- the spec's own view of the fleet's store
  local function local_store()
    return instagram.store.redis({ port = redis.port, prefix = "ngx:" })
  end

  local function add_due_token(user_id)
    local k = instagram.keeper.new({ client = instagram.new({ app_id = "684477648739411",
      redirect_uri = "https://localhost/auth/", api = "basic_display" }), store = local_store() })
    local s = f:issue_token("jayposiris", { kind = "long", age = 55 * DAY })
    local now = os.time()
    local t = { access_token = s, user_id = user_id, issued_at = now - 55 * DAY, expires_at = now + 5 * DAY }
    assert.equal(user_id, k:add(t))
    return t
  end

  local function stored_token(user_id)
    return cjson.decode(local_store():get("token:" .. user_id)).token
  end

  local function workers(host)
    local p = assert(io.popen("ps -o pid= --ppid " .. host.pid))
    local pids = {}
    for line in p:lines() do pids[#pids + 1] = tonumber(line) end
    p:close()
    return pids
  end

  it("two hosts run two workers each", function()
    assert.equal(2, #workers(hosts[1]))
    assert.equal(2, #workers(hosts[2]))
  end)

  it("2 x 8 concurrent keeper:token on a due token: exactly 1 refresh, all 16 get the new token", function()
    f:config({ refresh_new_token = true })
    local old = add_due_token("7001")
    f:fault("/refresh_access_token", { delay = 0.5 })
    local res = parallel(fleet_urls("/t/token?user_id=7001", 8))
    assert.equal(1, #f:log("/refresh_access_token"))
    local new = stored_token("7001")
    assert.not_equal(old.access_token, new.access_token)
    local pids = {}
    for i, r in ipairs(res) do
      assert.equal(200, r.status, r.body)
      local out = cjson.decode(r.body)
      assert.is_nil(out.err, r.body)
      assert.equal(new.access_token, out.token, "request " .. i)
      pids[out.pid] = true
    end
    local n = 0
    for _ in pairs(pids) do n = n + 1 end
    assert.is_true(n >= 2) -- more than one worker answered
    assert.is_table(f:token_info(new.access_token))
  end)

  it("2 x 8 concurrent keeper:token, Instagram failing: 1 refresh request, all 16 get the token that works", function()
    local old = add_due_token("7101")
    f:fault("/refresh_access_token", { status = 500, delay = 0.3 })
    local res = parallel(fleet_urls("/t/token?user_id=7101", 8))
    assert.equal(1, #f:log("/refresh_access_token"))
    for i, r in ipairs(res) do
      local out = cjson.decode(r.body)
      assert.is_nil(out.err, r.body)
      assert.equal(old.access_token, out.token, "request " .. i)
    end
  end)

  it("2 x 8 concurrent feed gets, cold then stale: exactly 1 media fetch each time", function()
    add_due_token(USER_ID)
    local s = local_store()
    f:fault("/me/media", { delay = 0.5 })
    local res = parallel(fleet_urls("/t/feed_get", 8))
    assert.equal(1, #f:log("/me/media"))
    local fetched_at
    for _, r in ipairs(res) do
      local out = cjson.decode(r.body)
      assert.is_nil(out.err, r.body)
      assert.equal(7, out.n)
      fetched_at = fetched_at or out.fetched_at
      assert.equal(fetched_at, out.fetched_at)
    end
    -- make the stored copy stale (its URLs still valid): one refetch, stale served meanwhile
    local key = s:keys("feed:")[1]
    local rec = cjson.decode(s:get(key))
    rec.fetched_at, rec.expires_at = rec.fetched_at - 7200, rec.fetched_at - 3600
    s:set(key, cjson.encode(rec))
    f:clear_log()
    res = parallel(fleet_urls("/t/feed_get", 8))
    assert.equal(1, #f:log("/me/media"))
    for _, r in ipairs(res) do
      local out = cjson.decode(r.body)
      assert.is_nil(out.err, r.body)
      assert.equal(7, out.n)
    end
    assert.is_true(cjson.decode(s:get(key)).fetched_at >= fetched_at)
  end)

  it("resty.feed: JSON with ETag, 304 on If-None-Match, max-age never past expires_at", function()
    add_due_token(USER_ID)
    local status, h, body = get(hosts[1], "/t/feed_json")
    assert.equal(200, status, body)
    assert.matches("^application/json", h["content-type"])
    local data = cjson.decode(body)
    assert.equal(7, #data.items)
    local etag = h["etag"]
    assert.matches('^"%x+"$', etag)
    local max_age = tonumber(h["cache-control"]:match("max%-age=(%d+)"))
    assert.is_true(max_age <= data.expires_at - os.time() + 1)
    assert.is_true(data.expires_at <= data.fetched_at + 3600)
    local s304, _, b304 = get(hosts[1], "/t/feed_json", { ["if-none-match"] = etag })
    assert.equal(304, s304)
    assert.equal("", b304)
    local s2 = get(hosts[2], "/t/feed_json", { ["if-none-match"] = 'W/"nope", ' .. etag })
    assert.equal(304, s2)
    local s3 = get(hosts[2], "/t/feed_json", { ["if-none-match"] = '"other"' })
    assert.equal(200, s3)
  end)

  it("the shared_dict store keeps the contract across calls in one worker", function()
    local out = call(hosts[1], "dict_contract")
    assert.same({
      absent = true, set = true, get = "one", cas_wrong = false, cas_right = true, cas_absent = true,
      cas_absent_again = false, keys = { "c:1", "c:2" }, owner = true, second = false, foreign_unlock = false,
      lapsed = true, stale_unlock = false, unlock = true, delete = true, after_delete = true,
    }, out)
  end)

  it("the shared_dict keeper: 8 concurrent calls on one host's two workers make 1 refresh", function()
    f:config({ refresh_new_token = true })
    local s = f:issue_token("jayposiris", { kind = "long", age = 55 * DAY })
    local added = call(hosts[1], "add", { store = "dict", user_id = "7101", token = s, age = 55 * DAY })
    assert.equal("7101", added.user_id)
    f:fault("/refresh_access_token", { delay = 0.5 })
    local urls = {}
    for i = 1, 8 do urls[i] = hosts[1].base .. "/t/token?store=dict&user_id=7101" end
    local res = parallel(urls)
    assert.equal(1, #f:log("/refresh_access_token"))
    local first
    for _, r in ipairs(res) do
      local out = cjson.decode(r.body)
      assert.is_nil(out.err, r.body)
      first = first or out.token
      assert.equal(first, out.token)
    end
    assert.not_equal(s, first)
  end)

  it("keeper:schedule sweeps from a timer: a due token is refreshed with no request asking for it", function()
    local single = start_host(1)
    f:config({ refresh_new_token = true })
    local s = f:issue_token("jayposiris", { kind = "long", age = 55 * DAY })
    call(single, "add", { store = "dict", user_id = "7401", token = s, age = 55 * DAY })
    local out = call(single, "schedule", { store = "dict", interval = 1 })
    assert.is_true(out.ok, out.err)
    local deadline = socket.gettime() + 15
    while #f:log("/refresh_access_token") == 0 do
      assert(socket.gettime() < deadline, "no sweep ran\n" .. single:log_tail(10))
      socket.sleep(0.05)
    end
    local got = call(single, "token", { store = "dict", user_id = "7401" })
    assert.is_nil(got.err)
    assert.not_equal(s, got.token)
    assert.equal(1, #f:log("/refresh_access_token"))
    single:stop()
  end)

  it("the Redis store through cosockets", function()
    local out = call(hosts[2], "redis_contract")
    assert.same({ set = true, get = "one", cas = true, cas_wrong = false, keys = { "rc:1" }, owner = true,
      second = false, unlock = true, phase_cosocket = true }, out)
  end)

  it("the Redis store over TLS through cosockets, with the certificate checked", function()
    local dir = f.ca_file:match("^(.*)/[^/]+$")
    local tls = Redis.start({ tls = { cert = dir .. "/server.pem", key = dir .. "/server.key", ca = f.ca_file } })
    local ok, err = pcall(function()
      local out = call(hosts[1], "redis_tls", { port = tls.port, name = "localhost" })
      assert.is_nil(out.err)
      assert.is_true(out.set)
      assert.equal("v", out.get)
      -- a handshake that fails verification at once makes Debian's lua-resty-core raise
      -- ("assertion failed"), on some tries only: each of 12 must be a store error
      for _ = 1, 12 do
        local bad = call(hosts[1], "redis_tls", { port = tls.port, name = "wrong.example" })
        assert.equal("store", bad.err.kind)
        assert.matches("TLS", bad.err.message)
      end
    end)
    tls:stop()
    assert(ok, err)
  end)

  it("a pooled connection never serves a store with another password", function()
    local locked = Redis.start({ password = "right-pass-0123" })
    local ok, err = pcall(function()
      local out = call(hosts[1], "redis_auth",
        { port = locked.port, right = "right-pass-0123", wrong = "wrong-pass-4567" })
      assert.is_true(out.set, cjson.encode(out))
      assert.is_nil(out.other_get)
      assert.equal("store", out.other_err.kind)
      assert.matches("AUTH failed", out.other_err.message)
      assert.not_matches("pass%-", out.other_err.text)
    end)
    locked:stop()
    assert(ok, err)
  end)

  it("Redis down: keeper:token is a store error within its timeout; the feed serves its copy; all recovers", function()
    local single = start_host(1)
    add_due_token(USER_ID)
    add_due_token("7201")
    local first = call(single, "feed_get")
    assert.is_nil(first.err)
    redis:kill("KILL")
    local t0 = socket.gettime()
    local out = call(single, "token", { user_id = "7201" })
    assert.equal("store", out.err.kind)
    assert.is_true(socket.gettime() - t0 < 5) -- generous: a 0.5 s store timeout
    local served = call(single, "feed_get")
    assert.is_nil(served.err)
    assert.equal(first.fetched_at, served.fetched_at)
    local status, _, body = get(single, "/t/feed_json")
    assert.equal(200, status, body .. single:log_tail(10))
    redis:restart() -- empty: no persistence
    -- the store answers again but holds nothing: the local copy still serves while its URLs work
    status, _, body = get(single, "/t/feed_json")
    assert.equal(200, status, body)
    assert.equal(1, #f:log("/me/media"))
    add_due_token("7201")
    out = call(single, "token", { user_id = "7201" })
    assert.is_nil(out.err)
    assert.is_string(out.token)
    add_due_token(USER_ID)
    local again = call(single, "feed_get")
    assert.is_nil(again.err)
    assert.is_false(again.stale)
    assert.equal(2, #f:log("/me/media"))
  end)

  it("a host killed (kill -9) while it holds the lock: the lock lapses, another host refreshes", function()
    f:config({ refresh_new_token = true })
    local old = add_due_token("7301")
    f:fault("/refresh_access_token", { delay = 60, times = 1 })
    -- host 1 starts the refresh and stalls inside it, holding the lock
    local bg = Nginx.mktemp_dir("bg")
    Nginx.run(string.format("curl -s -m 90 -o %s/out %s >/dev/null 2>&1 &", bg, Nginx.q(hosts[1].base
      .. "/t/token?user_id=7301")))
    local deadline = socket.gettime() + 10
    while #f:log("/refresh_access_token") == 0 do
      assert(socket.gettime() < deadline, "host 1 never started the refresh")
      socket.sleep(0.02)
    end
    local victims = workers(hosts[1])
    for _, pid in ipairs(victims) do Nginx.run("kill -9 " .. pid) end
    -- host 2 waits for the lock to lapse (2 s), then refreshes itself
    local out = call(hosts[2], "token", { user_id = "7301" })
    assert.is_nil(out.err)
    assert.not_equal(old.access_token, out.token)
    local stored = stored_token("7301")
    assert.equal(out.token, stored.access_token)
    assert.is_true(stored.issued_at >= old.issued_at)
    assert.equal(2, #f:log("/refresh_access_token"))
    assert.is_table(f:token_info(stored.access_token))
    -- the master respawned host 1's workers; they read the new token and refresh nothing
    local again = call(hosts[1], "token", { user_id = "7301" })
    assert.equal(stored.access_token, again.token)
    assert.equal(2, #f:log("/refresh_access_token"))
    Nginx.run("rm -rf " .. Nginx.q(bg))
  end)
end)
