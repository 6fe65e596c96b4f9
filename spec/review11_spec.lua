-- Review of issue 11 (stores, the token keeper, the feed) with conditions the first specs did not
-- use: an unusual umask, a store directory other users can write, symlinks planted in the
-- directory, keys that start with a dot, a Redis db number that is a float (a JSON config), and a
-- token Instagram rejects on a feed read rather than on a refresh.
local instagram = require "instagram"
local core = require "instagram.core"
local json = require "instagram.json"
local socket = require "socket"
local Fake = require "spec.support.fake"
local Clients = require "spec.support.client"
local Nginx = require "spec.support.nginx"
local Proc = require "spec.support.proc"
local Redis = require "spec.support.redis"

local DAY = 86400
local ROOT = Nginx.repo_root()
local CPATH = rawget(_G, "jit") and "build/5.1/?.so" or "build/5.4/?.so"

-- runs `code` in a child interpreter under `umask`; -> its output
local function run_with_umask(umask, code)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(string.format("package.path = %q .. package.path\npackage.cpath = %q .. package.cpath\n",
    ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;", ROOT .. "/" .. CPATH .. ";"), code)
  f:close()
  local p = assert(io.popen(string.format("umask %s; %s%s %s 2>&1", umask, Nginx.CLEAN_ENV, Proc.LUA, Nginx.q(script))))
  local out = p:read("*a")
  p:close()
  os.remove(script)
  return out
end

describe("review 11: file store", function()
  local dirs = {}
  local function tmpdir()
    local d = Nginx.mktemp_dir("review11")
    dirs[#dirs + 1] = d
    return d
  end
  teardown(function()
    for _, d in ipairs(dirs) do Nginx.run("rm -rf " .. Nginx.q(d)) end
  end)

  it("is 0700 with 0600 files whatever the umask, and works under umask 0277 or 0777", function()
    for _, umask in ipairs({ "0277", "0777" }) do
      local dir = tmpdir() .. "/s"
      local out = run_with_umask(umask, string.format([[
        local s = require("instagram.store").file({ dir = %q })
        print("set", (s:set("token:1", "v1")))
        print("set", (s:set("token:1", "v2")))
        print("get", s:get("token:1"))
        print("lock", type(s:lock("token:1", 5)))
      ]], dir))
      assert.matches("set\ttrue\nset\ttrue\nget\tv2\nlock\tstring\n", out, 1, true)
      assert.equal(tonumber("700", 8), core.fs_mode(dir), umask)
      assert.equal(tonumber("600", 8), core.fs_mode(dir .. "/token%3A1.json"), umask)
      assert.equal(tonumber("600", 8), core.fs_mode(dir .. "/token%3A1.lock"), umask)
    end
  end)

  it("the instagram command's token file, through the same functions: 0700 directories and a 0600 "
    .. "file under umask 0277 or 0777", function()
    local function mode_kind(path)
      local mode, kind = core.fs_mode(path)
      return { mode, kind }
    end
    for _, umask in ipairs({ "0277", "0777" }) do
      local dir = tmpdir()
      local out = run_with_umask(umask, string.format([[
        local tokenfile = require("instagram.cli.tokenfile")
        print("save", tokenfile.save(%q, { access_token = "IGQVJx" }))
        print("again", tokenfile.save(%q, { access_token = "IGQVJy" }))
      ]], dir .. "/a/b/token.json", dir .. "/a/b/token.json"))
      assert.equal("save\ttrue\nagain\ttrue\n", out, umask)
      assert.same({ tonumber("700", 8), "dir" }, mode_kind(dir .. "/a"), umask)
      assert.same({ tonumber("700", 8), "dir" }, mode_kind(dir .. "/a/b"), umask)
      assert.same({ tonumber("600", 8), "file" }, mode_kind(dir .. "/a/b/token.json"), umask)
      assert.same({ "token.json" }, core.fs_list(dir .. "/a/b"), umask)
    end
  end)

  it("refuses a directory that other users can write, with a store error and no raise", function()
    for _, mode in ipairs({ "0777", "1777", "0770" }) do
      local dir = tmpdir() .. "/shared"
      assert(Nginx.run("mkdir " .. Nginx.q(dir) .. " && chmod " .. mode .. " " .. Nginx.q(dir)))
      local s = instagram.store.file({ dir = dir })
      local ok, err = s:set("token:1", '{"token":1}')
      assert.is_nil(ok, mode)
      assert.equal("store", err.kind)
      assert.matches("writable by other users", err.message, 1, true)
      local v, gerr = s:get("token:1")
      assert.is_nil(v)
      assert.equal("store", gerr.kind)
      local owner, lerr = s:lock("token:1", 5)
      assert.is_nil(owner)
      assert.equal("store", lerr.kind)
      assert.same({}, core.fs_list(dir))
      Nginx.run("rm -rf " .. Nginx.q(dir))
    end
  end)

  it("never follows a symlink planted in its directory to create or write another file", function()
    local base = tmpdir()
    local dir = base .. "/s"
    local s = instagram.store.file({ dir = dir })
    assert.is_true(s:set("warm", "up"))
    local outside = base .. "/outside"
    assert(Nginx.run("mkdir " .. Nginx.q(outside)))
    local victim = outside .. "/victim"
    local f = assert(io.open(victim, "w"))
    f:write("precious")
    f:close()
    local function plant(name, target)
      assert(Nginx.run("ln -s " .. Nginx.q(target) .. " " .. Nginx.q(dir .. "/" .. name)))
    end
    plant("token%3A1.json", victim)            -- a value file: a write replaces the link, not the target
    plant("token%3A2.guard", outside .. "/by-guard")
    plant("token%3A3.lock", outside .. "/by-lock")
    plant("token%3A4.lock", victim)

    assert.is_true(s:set("token:1", "mine"))
    assert.equal("mine", s:get("token:1"))
    local ok, err = s:set("token:2", "v")
    assert.is_nil(ok)
    assert.equal("store", err.kind)
    local owner, lerr = s:lock("token:3", 5)
    assert.is_nil(owner)
    assert.equal("store", lerr.kind)
    owner, lerr = s:lock("token:4", 5)
    assert.is_nil(owner)
    assert.equal("store", lerr.kind)

    assert.equal("precious", Nginx.read_file(victim))
    assert.same({ "victim" }, core.fs_list(outside))
    -- the victim was never locked either: another process can flock it at once
    local held = assert(core.fs_lock(victim, false))
    held:unlock()
  end)

  it("lists keys that start with a dot, and keeps them apart from its temp files", function()
    local s = instagram.store.file({ dir = tmpdir() .. "/s" })
    for _, k in ipairs({ ".hidden", "../x", "..", ".tmp-AAAAAA", "plain" }) do
      assert.is_true(s:set(k, "v:" .. k))
    end
    assert.same({ "..", "../x", ".hidden", ".tmp-AAAAAA", "plain" }, s:keys(""))
    assert.same({ "../x" }, s:keys("../"))
    for _, k in ipairs({ ".hidden", "../x", "..", ".tmp-AAAAAA", "plain" }) do
      assert.equal("v:" .. k, s:get(k))
    end
  end)
end)

describe("review 11: redis store", function()
  local redis
  setup(function() redis = Redis.start({ password = "review11-pw" }) end)
  teardown(function() if redis then redis:stop() end end)

  it("takes a db number that is a float with an integer value (a decoded JSON config)", function()
    local config = json.decode(string.format('{"port": %d, "db": 2, "prefix": "r11:"}', redis.port))
    config.password = "review11-pw"
    local s = instagram.store.redis(config)
    assert.is_true(s:set("k", "in db 2"))
    assert.equal("in db 2", s:get("k"))
    local other = instagram.store.redis({ port = redis.port, password = "review11-pw", db = 0, prefix = "r11:" })
    assert.is_nil(other:get("k"))
    assert.equal("in db 2", instagram.store.redis({ port = redis.port, password = "review11-pw", db = 2,
      prefix = "r11:" }):get("k"))
  end)

  it("the first call after a restart works on a new connection (outside nginx)", function()
    local s = instagram.store.redis({ port = redis.port, password = "review11-pw", prefix = "rs:", timeout = 1 })
    assert.is_true(s:set("k", "before"))
    redis:kill("TERM")
    redis:restart() -- no persistence: the value is gone, the server is up
    local v, err = s:get("k")
    assert.is_nil(err)
    assert.is_nil(v)
    assert.is_true(s:set("k", "after"))
    redis:kill("KILL")
    redis:restart()
    local owner = s:lock("L", 5)
    assert.is_string(owner)
    assert.is_true(s:unlock("L", owner))
    -- down for good: a store error, quickly, and no second connection attempt hangs it
    redis:kill("KILL")
    local t0 = socket.gettime()
    local none, derr = s:get("k")
    assert.is_nil(none)
    assert.equal("store", derr.kind)
    assert.is_true(socket.gettime() - t0 < 3)
    redis:restart()
  end)

  it("misuse of its options raises, naming the function", function()
    assert.has_error(function() instagram.store.redis({ pool_size = "many" }) end,
      "instagram.store.redis: pool_size must be a positive integer")
    assert.has_error(function() instagram.store.redis({ pool_size = 0 }) end,
      "instagram.store.redis: pool_size must be a positive integer")
    assert.has_error(function() instagram.store.redis({ server_name = 5 }) end,
      "instagram.store.redis: server_name must be a non-empty string")
    assert.has_error(function() instagram.store.redis({ ca_file = false }) end,
      "instagram.store.redis: ca_file must be a non-empty string")
  end)
end)

describe("review 11: a token Instagram rejects on a feed read", function()
  local fake, dirs = nil, {}
  local USER_ID = "17841405793187219"
  setup(function() fake = Fake.start({ quiet = true }) end)
  teardown(function()
    if fake then fake:stop() end
    for _, d in ipairs(dirs) do Nginx.run("rm -rf " .. Nginx.q(d)) end
  end)
  before_each(function() fake:reset() end)

  local function file_store()
    local d = Nginx.mktemp_dir("review11")
    dirs[#dirs + 1] = d
    return instagram.store.file({ dir = d .. "/s" })
  end

  -- a keeper holding a token that is not due (2 days old) but that Instagram no longer takes
  -- (the password changed): the feed is the first to learn it
  local function setup_feed(access_token)
    local ig = Clients.new(fake, { retries = 0, clock = function() return math.floor(socket.gettime()) end,
      sleep = function(s) socket.sleep(s) end })
    local dead = {}
    local k = instagram.keeper.new({ client = ig, store = file_store(),
      on_dead = function(user_id, err) dead[#dead + 1] = { user_id = user_id, err = err } end })
    local now = ig:_now()
    k:add({ access_token = access_token, user_id = USER_ID, issued_at = now - 2 * DAY, expires_at = now + 58 * DAY })
    return instagram.feed.new({ keeper = k, user_id = USER_ID, store = file_store() }), k, dead
  end

  it("marks the account dead, fires on_dead once, and never sends the token again", function()
    local revoked = "IGQVJrevokedreview11" .. string.rep("x", 40)
    local feed, k, dead = setup_feed(revoked)
    local got, err = feed:get()
    assert.is_nil(got)
    assert.equal(190, err.code)
    assert.is_true(err.token_invalid)
    assert.equal(1, #dead)
    assert.equal(USER_ID, dead[1].user_id)
    for _ = 1, 3 do
      got, err = feed:get()
      assert.is_nil(got)
      assert.is_true(err.token_invalid)
    end
    local none, kerr = k:token(USER_ID)
    assert.is_nil(none)
    assert.is_true(kerr.token_invalid)
    assert.equal(1, #fake:log("/me/media"))
    assert.equal(1, #dead)
    assert.equal("dead", k:status()[1].state)
    assert.is_nil(tostring(err):find(revoked, 1, true))
    -- a new login revives it
    local fresh = fake:issue_token("jayposiris", { kind = "long", age = 2 * DAY })
    local now = os.time()
    k:add({ access_token = fresh, user_id = USER_ID, issued_at = now - 2 * DAY, expires_at = now + 58 * DAY })
    assert(feed:get())
  end)

  it("a token the store no longer holds is not marked dead (another login replaced it)", function()
    local feed, k, dead = setup_feed("IGQVJrevokedreview11" .. string.rep("y", 40))
    local good = fake:issue_token("jayposiris", { kind = "long", age = 2 * DAY })
    local stale = assert(k:token(USER_ID))
    local now = os.time()
    k:add({ access_token = good, user_id = USER_ID, issued_at = now - 2 * DAY, expires_at = now + 58 * DAY })
    local _, err = k.client:media(stale)
    assert.is_true(err.token_invalid)
    assert.is_false(k:_rejected(USER_ID, stale, err))
    assert.equal(0, #dead)
    assert(feed:get())
  end)
end)

describe("review 11: the feed's clock", function()
  local BASE = 1800000000
  local HOUR = 3600

  -- a client whose transport answers /me/media from `respond`, and whose clock is BASE + offset
  local function scripted(respond)
    local clock = { offset = 0 }
    local ig = instagram.new({
      app_id = "990602627938098", app_secret = "a1b2c3d4e5f60718293a4b5c6d7e8f90",
      redirect_uri = "https://localhost/auth/", api = "instagram_login", retries = 0, sleep = function() end,
      clock = function() return BASE + clock.offset end,
      transport = function(req) return respond(req, clock) end,
    })
    return ig, clock
  end

  local function media_page(oe)
    return { status = 200, headers = { ["content-type"] = "application/json" }, body = json.encode({
      data = { { id = "17900000000000001", media_type = "IMAGE",
        media_url = string.format("https://cdn.example/a.jpg?oh=00_x&oe=%X", oe) } } }) }
  end

  it("a refetch that fails after the copy's oe has passed returns the error, not the copy", function()
    local fail = false
    local ig, clock = scripted(function(_, c)
      if not fail then return media_page(BASE + 3 * HOUR) end
      c.offset = c.offset + HOUR -- the failing request took an hour of this clock
      return { status = 500, headers = { ["content-type"] = "application/json" },
        body = '{"error":{"message":"down","type":"OAuthException","code":2}}' }
    end)
    local dir = Nginx.mktemp_dir("review11")
    local s = instagram.store.file({ dir = dir .. "/s" })
    local k = instagram.keeper.new({ client = ig, store = s })
    k:add({ access_token = "IGQVJfreshreview11" .. string.rep("z", 40), user_id = "17841400000000001",
      issued_at = BASE - 2 * DAY, expires_at = BASE + 58 * DAY })
    local feed = instagram.feed.new({ keeper = k, user_id = "17841400000000001", max_ttl = HOUR, margin = 0 })
    local first = assert(feed:get())
    assert.equal(BASE + HOUR, first.expires_at)
    clock.offset = 2.5 * HOUR -- stale, its URL good for 30 more minutes
    fail = true
    local got, err = feed:get()
    Nginx.run("rm -rf " .. Nginx.q(dir))
    assert.is_nil(got)
    assert.equal(2, err.code)
  end)
end)

describe("review 11: the blocking Redis client on odd replies", function()
  local server, port, ready

  -- a RESP server in a child process: each command gets the canned reply of its name
  setup(function()
    port = Nginx.free_ports(1)[1]
    ready = os.tmpname()
    os.remove(ready)
    server = Proc.spawn(string.format([[
      local socket = require "socket"
      local big = string.rep("x", 3 * 1024 * 1024)
      local REPLIES = {
        GET = "$13\r\nline\r\nbreak\r\n\r\n",      -- a bulk string with CRLFs inside
        MGET = "*3\r\n$-1\r\n$1\r\na\r\n-ERR inner\r\n",
        STRLEN = "$" .. #big .. "\r\n" .. big .. "\r\n",
        SET = "-ERR read only replica\r\n",
        DEL = ":-5\r\n",
        EXISTS = "*-1\r\n",
        SCAN = "*2\r\n$1\r\n0\r\n*3\r\n$9\r\nr11:v:one\r\n$-1\r\n:7\r\n",
        TYPE = "%%2\r\n",
      }
      local srv = assert(socket.bind("127.0.0.1", %d))
      io.open(%q, "w"):close()
      while true do
        local c = srv:accept()
        c:settimeout(5)
        while true do
          local head = c:receive("*l")
          if not head then break end
          local args = {}
          for i = 1, tonumber(head:match("^%%*(%%d+)")) do
            local len = tonumber(c:receive("*l"):match("^%%$(%%d+)"))
            args[i] = c:receive(len + 2):sub(1, len)
          end
          c:send(REPLIES[args[1]:upper()] or "-ERR unknown command\r\n")
        end
        c:close()
      end
    ]], port, ready))
    Proc.wait_file(ready)
  end)
  teardown(function()
    if server then Proc.kill(server) end
    os.remove(ready)
  end)

  it("reads bulk strings with CRLFs inside, nil bulks, errors, integers and large values", function()
    local resp = require "instagram.store.resp"
    local c = assert(resp.connect({ host = "127.0.0.1", port = port, connect_timeout = 1, read_timeout = 2 }))
    assert.equal("line\r\nbreak\r\n", c:get("k"))
    local arr = c:mget("a", "b", "c")
    assert.equal(resp.NULL, arr[1])
    assert.equal("a", arr[2])
    assert.equal(resp.NULL, arr[3])
    assert.equal(3 * 1024 * 1024, #c:strlen("k"))
    local ok, err = c:set("k", "v")
    assert.is_false(ok)
    assert.equal("ERR read only replica", err)
    assert.equal(-5, c:del("k"))
    assert.equal(resp.NULL, c:exists("k"))
    local none, uerr = c:type("k")
    assert.is_nil(none)
    assert.equal("unknown reply type", uerr)
    c:close()
  end)

  it("the store turns error replies and odd SCAN entries into kind store, never a raise", function()
    local s = instagram.store.redis({ port = port, prefix = "r11:", timeout = 2 })
    local ok, err = s:set("k", "v")
    assert.is_nil(ok)
    assert.equal("store", err.kind)
    assert.matches("ERR read only replica", err.message, 1, true)
    assert.equal("line\r\nbreak\r\n", s:get("k"))
    local keys, kerr = s:keys("")
    assert.is_nil(kerr)
    assert.same({ "one" }, keys)
  end)
end)

describe("review 11: numbers read back from a store", function()
  -- under Lua 5.4, decoded Graph data and the client's token tables hold integers; what the
  -- keeper and the feed read back from their store must too (LuaJIT has one number type)
  local function integer(v)
    return math.type == nil or math.type(v) == "integer"
  end

  it("the keeper's token and the feed's times are integers, as the client's are", function()
    local BASE = 1800000000
    local ig = instagram.new({
      app_id = "990602627938098", app_secret = "a1b2c3d4e5f60718293a4b5c6d7e8f90",
      redirect_uri = "https://localhost/auth/", api = "instagram_login", retries = 0, sleep = function() end,
      clock = function() return BASE end,
      transport = function()
        return { status = 200, headers = { ["content-type"] = "application/json" }, body = json.encode({
          data = { { id = "17900000000000001", media_type = "IMAGE", like_count = 3,
            media_url = string.format("https://cdn.example/a.jpg?oe=%X", BASE + 4 * DAY) } } }) }
      end,
    })
    local dir = Nginx.mktemp_dir("review11")
    local k = instagram.keeper.new({ client = ig, store = instagram.store.file({ dir = dir .. "/s" }) })
    k:add({ access_token = "IGQVJintreview11" .. string.rep("z", 40), user_id = "17841400000000001",
      issued_at = BASE - 2 * DAY, expires_in = 60 * DAY, expires_at = BASE + 58 * DAY })
    local t = assert(k:token("17841400000000001"))
    local feed = instagram.feed.new({ keeper = k, user_id = "17841400000000001" })
    local first = assert(feed:get())
    local fresh_feed = instagram.feed.new({ keeper = k, user_id = "17841400000000001" })
    local again = assert(fresh_feed:get()) -- read back from the store
    local st = k:status()[1]
    Nginx.run("rm -rf " .. Nginx.q(dir))
    for _, v in ipairs({ t.issued_at, t.expires_at, t.expires_in, first.fetched_at, again.fetched_at,
      again.expires_at, again.items[1].like_count, st.expires_at }) do
      assert.is_true(integer(v), tostring(v))
    end
    assert.equal(first.fetched_at, again.fetched_at)
  end)
end)

describe("review 11: a refresh that fails (Instagram down)", function()
  local fake, dirs = nil, {}
  setup(function() fake = Fake.start({ quiet = true }) end)
  teardown(function()
    if fake then fake:stop() end
    for _, d in ipairs(dirs) do Nginx.run("rm -rf " .. Nginx.q(d)) end
  end)
  before_each(function() fake:reset() end)

  local function tmpdir()
    local d = Nginx.mktemp_dir("review11")
    dirs[#dirs + 1] = d
    return d
  end

  local function due_token(user_id)
    local now = os.time()
    return { access_token = fake:issue_token("jayposiris", { kind = "long", age = 55 * DAY }), user_id = user_id,
      issued_at = now - 55 * DAY, expires_at = now + 5 * DAY }
  end

  it("is not tried again by every caller: the due token is served as is for retry_after", function()
    local offset = 0
    local ig = Clients.new(fake, { retries = 0, clock = function() return os.time() + offset end })
    local k = instagram.keeper.new({ client = ig, store = instagram.store.file({ dir = tmpdir() .. "/s" }) })
    local t = due_token("8001")
    k:add(t)
    fake:fault("/refresh_access_token", { status = 500 })
    for _ = 1, 5 do
      local got = assert(k:token("8001"))
      assert.equal(t.access_token, got.access_token)
    end
    assert.equal(1, #fake:log("/refresh_access_token"))
    offset = 61 -- past the default retry_after (60 s): tried again, once
    for _ = 1, 3 do assert(k:token("8001")) end
    assert.equal(2, #fake:log("/refresh_access_token"))
    fake:clear_faults()
    offset = 122
    local new = assert(k:token("8001"))
    assert.equal(3, #fake:log("/refresh_access_token"))
    assert.is_true(new.issued_at >= os.time())
    assert.equal("ok", k:status()[1].state)
    assert.has_error(function() instagram.keeper.new({ client = ig, store = k.store, retry_after = -1 }) end,
      "instagram.keeper.new: retry_after must be a number >= 0")
  end)

  it("never hands out a token that expired while its refresh was backing off", function()
    local offset = 0
    local ig = Clients.new(fake, { retries = 0, clock = function() return os.time() + offset end })
    local k = instagram.keeper.new({ client = ig, store = instagram.store.file({ dir = tmpdir() .. "/s" }) })
    local t = due_token("8201")
    t.expires_at = os.time() + 30
    k:add(t)
    fake:fault("/refresh_access_token", { status = 500 })
    assert(k:token("8201"))
    offset = 31
    local none, err = k:token("8201")
    assert.is_nil(none)
    assert.is_true(err.token_invalid)
  end)

  it("four processes waiting on one failing refresh make one request and all get the token that still works", function()
    local dir = tmpdir() .. "/s"
    local k = instagram.keeper.new({ client = Clients.new(fake), store = instagram.store.file({ dir = dir }) })
    local t = due_token("8101")
    k:add(t)
    fake:fault("/refresh_access_token", { status = 500, delay = 0.5 })
    local cfg = Clients.config(fake)
    local go = dir .. "/../go"
    local code = string.format([[
      local ig = require("instagram").new({ app_id = %q, app_secret = %q, redirect_uri = %q, api = "basic_display",
        endpoints = { graph = %q, token = %q, authorize = %q }, ca_file = %q, retries = 0 })
      local k = require("instagram.keeper").new({ client = ig, store = require("instagram.store").file({ dir = %q }) })
      while not io.open(%q) do require("instagram.core").sleep(0.01) end
      local t, err = k:token("8101")
      print("token=" .. tostring(t and t.access_token) .. " err=" .. tostring(err))
    ]], cfg.app_id, cfg.app_secret, cfg.redirect_uri, cfg.endpoints.graph, cfg.endpoints.token,
      cfg.endpoints.authorize, cfg.ca_file, dir, go)
    local kids = {}
    for i = 1, 4 do kids[i] = Proc.spawn(code) end
    io.open(go, "w"):close()
    for i = 1, 4 do
      local out = Proc.wait(kids[i])
      assert.equal(t.access_token, out:match("token=(%S+)"), out)
    end
    assert.equal(1, #fake:log("/refresh_access_token"))
  end)
end)
