-- instagram.keeper against the fake Instagram (real HTTPS on loopback) and its movable clock,
-- with the file store on a real directory and the Redis store on a real redis-server.
local keeper_mod = require "instagram.keeper"
local store = require "instagram.store"
local json = require "instagram.json"
local socket = require "socket"
local Fake = require "spec.support.fake"
local Clients = require "spec.support.client"
local Nginx = require "spec.support.nginx"
local Proc = require "spec.support.proc"
local Redis = require "spec.support.redis"

local DAY, HOUR = 86400, 3600
local USER = "jayposiris"

describe("instagram.keeper", function()
  local fake, dirs = nil, {}

  setup(function() fake = Fake.start({ quiet = true }) end)
  teardown(function()
    if fake then fake:stop() end
    for _, d in ipairs(dirs) do Nginx.run("rm -rf " .. Nginx.q(d)) end
  end)
  before_each(function() fake:reset() end)

  local function now() return fake:clock().now end

  local function client(extra)
    return Clients.new(fake, { clock = function() return math.floor(socket.gettime()) end,
      sleep = function(s) socket.sleep(s) end }, extra)
  end

  local function file_store()
    local d = Nginx.mktemp_dir("keeper")
    dirs[#dirs + 1] = d
    return store.file({ dir = d .. "/tokens" }), d .. "/tokens"
  end

  -- a long-lived token the fake issued `age` seconds ago, as the app stored it (user_id is ours)
  local function token(user_id, age, stored_age)
    local s = fake:issue_token(USER, { kind = "long", age = age })
    local t0 = math.floor(socket.gettime()) - (stored_age or age)
    return { access_token = s, token_type = "bearer", user_id = user_id, issued_at = t0,
      expires_in = 60 * DAY, expires_at = t0 + 60 * DAY }
  end

  local function refreshes() return #fake:log("/refresh_access_token") end

  it("leaves a 23 h old token alone", function()
    local k = keeper_mod.new({ client = client(), store = file_store() })
    local t = token("1001", 23 * HOUR)
    assert.equal("1001", k:add(t))
    local got = assert(k:token("1001"))
    assert.equal(t.access_token, got.access_token)
    assert.equal(t.issued_at, got.issued_at)
    assert.equal(0, refreshes())
  end)

  it("refreshes a 55 days old token once, and stores it", function()
    local s = file_store()
    local k = keeper_mod.new({ client = client(), store = s })
    local t = token("1002", 55 * DAY)
    k:add(t)
    local got = assert(k:token("1002"))
    assert.equal(1, refreshes())
    assert.is_true(got.issued_at >= t.issued_at + 55 * DAY - 5)
    assert.equal("1002", got.user_id)
    local info = fake:token_info(got.access_token)
    assert.is_true(info.expires_at > now() + 59 * DAY)
    local again = assert(k:token("1002"))
    assert.equal(got.issued_at, again.issued_at)
    assert.equal(1, refreshes())
    assert.equal(got.issued_at, json.decode(s:get("token:1002")).token.issued_at)
  end)

  it("a 190 marks the account dead, fires on_dead once, and never sends the token again", function()
    local calls = {}
    local s = file_store()
    local k = keeper_mod.new({ client = client(), store = s, on_dead = function(id, err)
      calls[#calls + 1] = { id = id, err = err }
    end })
    local t = token("1003", 55 * DAY)
    t.access_token = "IGQVJnever-issued-by-the-fake-" .. string.rep("x", 40) -- the fake answers 190
    k:add(t)
    local got, err = k:token("1003")
    assert.is_nil(got)
    assert.is_true(err.token_invalid)
    assert.equal(190, err.code)
    assert.equal(1, #calls)
    assert.equal("1003", calls[1].id)
    assert.equal(190, calls[1].err.code)
    assert.equal(1, refreshes())
    local got2, err2 = k:token("1003")
    assert.is_nil(got2)
    assert.is_true(err2.token_invalid)
    assert.not_matches("never%-issued", tostring(err2))
    local counts = assert(k:sweep())
    assert.same({ refreshed = 0, not_due = 0, dead = 1, failed = 0, busy = 0 }, counts)
    assert.equal(1, refreshes())
    assert.equal(1, #calls)
    local st = assert(k:status())
    assert.equal(1, #st)
    assert.equal("dead", st[1].state)
    assert.is_string(st[1].reason)
    -- a new login revives the account
    k:add(token("1003", 0))
    assert.equal("ok", k:status()[1].state)
  end)

  it("an expired token is dead without a request", function()
    local dead = 0
    local k = keeper_mod.new({ client = client(), store = file_store(), on_dead = function() dead = dead + 1 end })
    k:add(token("1004", 61 * DAY))
    local got, err = k:token("1004")
    assert.is_nil(got)
    assert.is_true(err.token_invalid)
    assert.equal(463, err.subcode)
    assert.equal(0, refreshes())
    assert.equal(1, dead)
  end)

  it("when Instagram fails, a due token that has not expired is still served", function()
    fake:fault("/refresh_access_token", { status = 500 })
    local k = keeper_mod.new({ client = client({ retries = 0 }), store = file_store() })
    local t = token("1005", 55 * DAY)
    k:add(t)
    local got = assert(k:token("1005"))
    assert.equal(t.issued_at, got.issued_at)
    assert.equal(1, refreshes())
    assert.equal("due", k:status()[1].state)
  end)

  it("an unknown account is a store error", function()
    local k = keeper_mod.new({ client = client(), store = file_store() })
    local got, err = k:token("999")
    assert.is_nil(got)
    assert.equal("store", err.kind)
  end)

  it("a sweep of 50 accounts with 3 dead and 2 failing refreshes the other 45", function()
    local dead_ids = {}
    local k = keeper_mod.new({ client = client({ retries = 0 }), store = file_store(), concurrency = 8, jitter = 0,
      on_dead = function(id) dead_ids[#dead_ids + 1] = id end })
    local expect = {}
    for i = 1, 50 do
      local id = tostring(2000 + i)
      local t
      if i == 17 or i == 34 or i == 50 then
        -- revoked: the fake does not know the token and answers 190
        t = token(id, 55 * DAY)
        t.access_token = "IGQVJrevoked-" .. i .. string.rep("y", 30)
        expect[id] = "dead"
      elseif i == 10 or i == 20 then
        -- stored as 55 days old, but Instagram issued it just now: refused with code 100
        t = token(id, 0, 55 * DAY)
        expect[id] = "failed"
      else
        t = token(id, 55 * DAY)
        expect[id] = "refreshed"
      end
      k:add(t)
    end
    local counts = assert(k:sweep())
    assert.same({ refreshed = 45, not_due = 0, dead = 3, failed = 2, busy = 0 }, counts)
    assert.equal(50, refreshes())
    table.sort(dead_ids)
    assert.same({ "2017", "2034", "2050" }, dead_ids)
    for _, st in ipairs(k:status()) do
      local want = ({ refreshed = "ok", dead = "dead", failed = "due" })[expect[st.user_id]]
      assert.equal(want, st.state, st.user_id)
    end
    local again = assert(k:sweep())
    assert.same({ refreshed = 0, not_due = 45, dead = 3, failed = 2, busy = 0 }, again)
    assert.equal(3, #dead_ids)
  end)

  it("two processes sweeping one directory refresh each token once", function()
    local _, dir = file_store()
    local k = keeper_mod.new({ client = client(), store = store.file({ dir = dir }) })
    for i = 1, 12 do k:add(token(tostring(3000 + i), 55 * DAY)) end
    fake:fault("/refresh_access_token", { delay = 0.2 })
    local cfg = Clients.config(fake)
    local code = string.format([[
      local ig = require("instagram").new({ app_id = %q, app_secret = %q, redirect_uri = %q, api = "basic_display",
        endpoints = { graph = %q, token = %q, authorize = %q }, ca_file = %q })
      local k = require("instagram.keeper").new({ client = ig, store = require("instagram.store").file({ dir = %q }),
        jitter = 0.05, concurrency = 3 })
      while not io.open(%q) do require("instagram.core").sleep(0.01) end
      local c = assert(k:sweep())
      print(string.format("refreshed=%%d not_due=%%d busy=%%d failed=%%d", c.refreshed, c.not_due, c.busy, c.failed))
    ]], cfg.app_id, cfg.app_secret, cfg.redirect_uri, cfg.endpoints.graph, cfg.endpoints.token,
      cfg.endpoints.authorize, cfg.ca_file, dir, dir .. "/../go")
    local a, b = Proc.spawn(code), Proc.spawn(code)
    io.open(dir .. "/../go", "w"):close()
    local out_a, out_b = Proc.wait(a), Proc.wait(b)
    local total = 0
    for _, out in ipairs({ out_a, out_b }) do
      local r = tonumber(out:match("refreshed=(%d+)"))
      assert(r, out)
      total = total + r
      assert.equal("0", out:match("failed=(%d+)"))
    end
    assert.equal(12, total)
    local log = fake:log("/refresh_access_token")
    assert.equal(12, #log)
    local seen = {}
    for _, e in ipairs(log) do
      assert.is_nil(seen[e.args.access_token])
      seen[e.args.access_token] = true
    end
    for _, st in ipairs(k:status()) do assert.equal("ok", st.state) end
  end)

  it("misuse raises", function()
    assert.has_error(function() keeper_mod.new({ client = client() }) end,
      "instagram.keeper.new: store must be a store (instagram.store.*)")
    assert.has_error(function() keeper_mod.new({ client = {}, store = file_store() }) end,
      "instagram.keeper.new: client must be an instagram client (instagram.new)")
    local k = keeper_mod.new({ client = client(), store = file_store() })
    assert.has_error(function() k:add({ access_token = "x" }) end, "keeper:add: token.user_id must be an ID string")
    assert.has_error(function() k:add("x") end, "keeper:add: token must be a token table")
    assert.has_error(function() k.token(nil, "1") end, "keeper:token: call it as a method (keeper:token(...))")
    assert.has_error(function() k:token({}) end, "keeper:token: user_id must be an ID string")
  end)

  describe("on Redis", function()
    local redis
    setup(function() redis = Redis.start() end)
    teardown(function() if redis then redis:stop() end end)

    it("four processes asking for one due token make one refresh, and all get the new token", function()
      local s = store.redis({ port = redis.port, prefix = "k4:" })
      local k = keeper_mod.new({ client = client(), store = s })
      fake:config({ refresh_new_token = true })
      local t = token("4001", 55 * DAY)
      k:add(t)
      fake:fault("/refresh_access_token", { delay = 0.5 })
      local cfg = Clients.config(fake)
      local go = os.tmpname()
      os.remove(go)
      local code = string.format([[
        local ig = require("instagram").new({ app_id = %q, app_secret = %q, redirect_uri = %q, api = "basic_display",
          endpoints = { graph = %q, token = %q, authorize = %q }, ca_file = %q })
        local k = require("instagram.keeper").new({ client = ig,
          store = require("instagram.store").redis({ port = %d, prefix = "k4:" }) })
        while not io.open(%q) do require("instagram.core").sleep(0.01) end
        local t = assert(k:token("4001"))
        print("token=" .. t.access_token)
      ]], cfg.app_id, cfg.app_secret, cfg.redirect_uri, cfg.endpoints.graph, cfg.endpoints.token,
        cfg.endpoints.authorize, cfg.ca_file, redis.port, go)
      local kids = {}
      for i = 1, 4 do kids[i] = Proc.spawn(code) end
      io.open(go, "w"):close()
      local tokens = {}
      for i = 1, 4 do
        local out = Proc.wait(kids[i])
        tokens[i] = out:match("token=(%S+)")
        assert(tokens[i], out)
      end
      os.remove(go)
      assert.equal(1, refreshes())
      for i = 1, 4 do assert.equal(tokens[1], tokens[i]) end
      assert.not_equal(t.access_token, tokens[1])
      assert.equal(tokens[1], json.decode(s:get("token:4001")).token.access_token)
    end)

    it("a slow refresher whose lock lapsed never puts back an older token", function()
      local s = store.redis({ port = redis.port, prefix = "slow:" })
      local fast = keeper_mod.new({ client = client({ clock = socket.gettime }), store = s, lock_ttl = 0.5 })
      local t = token("4101", 55 * DAY)
      fast:add(t)
      -- the first refresh (the slow process's) is answered after 1.5 s; its lock lapses after 0.5 s
      fake:fault("/refresh_access_token", { delay = 1.5, times = 1 })
      local cfg = Clients.config(fake)
      local slow = Proc.spawn(string.format([[
        -- token times are whole seconds: this process's clock runs a second ahead, so that its later
        -- answer is stamped later even when both refreshes land within one second
        local ig = require("instagram").new({ app_id = %q, app_secret = %q, redirect_uri = %q, api = "basic_display",
          endpoints = { graph = %q, token = %q, authorize = %q }, ca_file = %q,
          clock = function() return require("socket").gettime() + 1 end })
        local k = require("instagram.keeper").new({ client = ig, lock_ttl = 0.5,
          store = require("instagram.store").redis({ port = %d, prefix = "slow:" }) })
        local t = assert(k:token("4101"))
        print(string.format("issued_at=%%.6f", t.issued_at))
      ]], cfg.app_id, cfg.app_secret, cfg.redirect_uri, cfg.endpoints.graph, cfg.endpoints.token,
        cfg.endpoints.authorize, cfg.ca_file, redis.port))
      local deadline = socket.gettime() + 10
      while #fake:log("/refresh_access_token") == 0 do
        assert(socket.gettime() < deadline, "the slow process never started its refresh")
        socket.sleep(0.02)
      end
      -- this keeper waits out the lapsed lock and refreshes first
      local mine = assert(fast:token("4101"))
      local stored_after_mine = json.decode(s:get("token:4101")).token.issued_at
      assert.is_true(stored_after_mine >= mine.issued_at - 1e-3) -- JSON keeps 14 digits
      -- a day passes for Instagram before it gets to the slow request, so that one succeeds too,
      -- with a token newer than ours
      fake:advance(25 * HOUR)
      local out = Proc.wait(slow)
      local theirs = tonumber(out:match("issued_at=([%d.]+)"))
      assert(theirs, out)
      assert.equal(2, refreshes())
      -- the slow one finished last with the newer token: the store holds it, never an older one
      local final = json.decode(s:get("token:4101")).token.issued_at
      assert.is_true(final >= stored_after_mine - 1e-3)
      assert.is_true(theirs > mine.issued_at)
      assert.is_true(math.abs(final - theirs) < 1e-3)
    end)

    it("Redis down: keeper:token returns kind store within its timeout, then recovers", function()
      local s = store.redis({ port = redis.port, prefix = "kd:", timeout = 0.5 })
      local k = keeper_mod.new({ client = client(), store = s })
      k:add(token("5001", 55 * DAY))
      redis:kill("KILL")
      local t0 = socket.gettime()
      local got, err = k:token("5001")
      assert.is_nil(got)
      assert.equal("store", err.kind)
      assert.is_true(socket.gettime() - t0 < 3) -- generous bound over a 0.5 s timeout
      redis:restart() -- no persistence: the account must be added again
      assert.equal("5001", k:add(token("5001", 55 * DAY)))
      assert(k:token("5001"))
      assert.equal(1, refreshes())
    end)
  end)
end)
