-- instagram.store: the file and Redis backends against the same contract, on a real directory
-- and a real redis-server on loopback (the shared_dict one runs inside nginx: spec/ngx/keeper_spec.lua).
local store = require "instagram.store"
local core = require "instagram.core"
local Nginx = require "spec.support.nginx"
local Proc = require "spec.support.proc"
local Redis = require "spec.support.redis"
local Fake = require "spec.support.fake"
local socket = require "socket"

local function contract(name, make)
  describe(name .. " store contract", function()
    local s
    before_each(function() s = make() end)

    it("get of an absent key is nil without an error", function()
      local v, err = s:get("absent:key")
      assert.is_nil(v)
      assert.is_nil(err)
    end)

    it("set then get returns the value, byte for byte", function()
      local value = '{"a":"\\u00e9 \0 bytes","n":1}'
      assert.is_true(s:set("token:1", value))
      assert.equal(value, s:get("token:1"))
      assert.is_true(s:set("token:1", "second"))
      assert.equal("second", s:get("token:1"))
    end)

    it("cas swaps only from the expected value, and nil means absent", function()
      assert.is_true(s:cas("c:1", nil, "one"))
      assert.is_false(s:cas("c:1", nil, "two"))
      assert.is_false(s:cas("c:1", "zero", "two"))
      assert.equal("one", s:get("c:1"))
      assert.is_true(s:cas("c:1", "one", "two"))
      assert.equal("two", s:get("c:1"))
    end)

    it("delete removes; deleting an absent key is fine", function()
      s:set("d:1", "x")
      assert.is_true(s:delete("d:1"))
      assert.is_nil(s:get("d:1"))
      assert.is_true(s:delete("d:1"))
    end)

    it("keys lists by prefix, sorted, without locks", function()
      for _, k in ipairs({ "token:3", "token:1", "feed:1", "token:2" }) do s:set(k, "v") end
      assert(s:lock("token:9", 5))
      assert.same({ "token:1", "token:2", "token:3" }, s:keys("token:"))
      assert.same({ "feed:1" }, s:keys("feed:"))
      assert.same({}, s:keys("nothing:"))
    end)

    it("a lock has one holder; only the owner releases it", function()
      local owner = s:lock("L:1", 5)
      assert.is_string(owner)
      assert.is_false(s:lock("L:1", 5))
      assert.is_false(s:unlock("L:1", "not-the-owner"))
      assert.is_false(s:lock("L:1", 5))
      assert.is_true(s:unlock("L:1", owner))
      assert.is_false(s:unlock("L:1", owner))
      local again = s:lock("L:1", 5)
      assert.is_string(again)
      assert.not_equal(owner, again)
      assert.is_true(s:unlock("L:1", again))
    end)

    it("misuse raises, naming the method", function()
      assert.has_error(function() s:get("") end, "store:get: key must be a non-empty printable string without spaces")
      assert.has_error(function() s:set("k k", "v") end,
        "store:set: key must be a non-empty printable string without spaces")
      assert.has_error(function() s:set("k", 1) end, "store:set: value must be a string")
      assert.has_error(function() s:lock("k", 0) end, "store:lock: ttl must be a positive number of seconds")
    end)
  end)
end

describe("instagram.store", function()
  it("is a table of backends; unknown options raise", function()
    assert.has_error(function() store.file({ dir = "/tmp/x", nope = 1 }) end,
      "instagram.store.file: unknown option 'nope'")
    assert.has_error(function() store.file({}) end, "instagram.store.file: dir must be a non-empty path")
    assert.has_error(function() store.redis({ port = 0 }) end, "instagram.store.redis: port must be an integer 1-65535")
    assert.has_error(function() store.shared_dict({ dict = "x" }) end,
      "instagram.store.shared_dict: dict 'x' is not a lua_shared_dict")
  end)
end)

describe("file store", function()
  local dirs = {}
  local function tmpdir()
    local d = Nginx.mktemp_dir("store")
    dirs[#dirs + 1] = d
    return d
  end
  teardown(function()
    for _, d in ipairs(dirs) do Nginx.run("rm -rf " .. Nginx.q(d)) end
  end)

  contract("file", function() return store.file({ dir = tmpdir() .. "/s" }) end)

  it("makes its directory 0700 and its files 0600", function()
    local dir = tmpdir() .. "/private"
    local s = store.file({ dir = dir })
    assert.is_true(s:set("token:1", "secret-ish"))
    assert.equal(tonumber("700", 8), (core.fs_mode(dir)))
    assert.equal(tonumber("600", 8), (core.fs_mode(dir .. "/token%3A1.json")))
    assert(s:lock("token:1", 5))
    assert.equal(tonumber("600", 8), (core.fs_mode(dir .. "/token%3A1.lock")))
  end)

  it("a key too long for a file name raises", function()
    local s = store.file({ dir = tmpdir() })
    assert.has_error(function() s:get(string.rep(":", 100)) end, "store:get: key too long for the file store")
  end)

  it("one JSON file per key, readable as is", function()
    local dir = tmpdir()
    local s = store.file({ dir = dir })
    s:set("token:42", '{"token":{}}')
    assert.equal('{"token":{}}', Nginx.read_file(dir .. "/token%3A42.json"))
  end)

  it("a directory it cannot create is a store error, not a raise", function()
    local s = store.file({ dir = "/proc/no/such/dir" })
    local v, err = s:get("k")
    assert.is_nil(v)
    assert.equal("store", err.kind)
    local ok, err2 = s:set("k", "v")
    assert.is_nil(ok)
    assert.equal("store", err2.kind)
  end)

  it("a writer killed between write and rename leaves the old value, valid", function()
    local dir = tmpdir()
    local s = store.file({ dir = dir })
    s:set("token:1", '{"v":"old"}')
    -- the child writes a new value, then SIGKILLs itself right before the rename
    local child = Proc.spawn(string.format([[
      local store = require "instagram.store"
      local s = store.file({ dir = %q, _before_commit = function()
        io.open(%q, "w"):close()
        os.execute("kill -9 $PPID")
        while true do end
      end })
      s:set("token:1", '{"v":"new"}')
    ]], dir, dir .. "/ready"))
    Proc.wait(child)
    assert(Nginx.read_file(dir .. "/ready"), "the child never reached the rename")
    assert.equal('{"v":"old"}', s:get("token:1"))
    -- the leftover temp file holds the new value in full, and nobody takes it for a key
    local temps = 0
    for _, name in ipairs(core.fs_list(dir)) do
      if name:match("^%.tmp%-") then
        temps = temps + 1
        assert.equal('{"v":"new"}', Nginx.read_file(dir .. "/" .. name))
      end
    end
    assert.equal(1, temps)
    assert.same({ "token:1" }, s:keys(""))
    assert.is_true(s:set("token:1", '{"v":"newer"}'))
    assert.equal('{"v":"newer"}', s:get("token:1"))
  end)

  it("a lock held by another process is refused, and freed when that process is killed", function()
    local dir = tmpdir()
    local s = store.file({ dir = dir })
    local child = Proc.spawn(string.format([[
      local s = require("instagram.store").file({ dir = %q })
      assert(s:lock("token:7", 30))
      io.open(%q, "w"):close()
      while true do require("instagram.core").sleep(1) end
    ]], dir, dir .. "/held"))
    Proc.wait_file(dir .. "/held")
    assert.is_false(s:lock("token:7", 30))
    Proc.kill(child, "KILL")
    Proc.wait(child)
    local owner = s:lock("token:7", 30)
    assert.is_string(owner)
    assert.is_true(s:unlock("token:7", owner))
  end)
end)

describe("core file functions (src/fileio.c)", function()
  local dir
  before_each(function() dir = Nginx.mktemp_dir("fileio") end)
  after_each(function() Nginx.run("rm -rf " .. Nginx.q(dir)) end)

  it("fail with nil and a message, never raise, on bad paths", function()
    local ok, err = core.fs_list(dir .. "/missing")
    assert.is_nil(ok)
    assert.matches("^opendir: ", err)
    local f = io.open(dir .. "/file", "w")
    f:close()
    ok, err = core.fs_mkdir(dir .. "/file")
    assert.is_nil(ok)
    assert.equal("not a directory", err)
    ok, err = core.fs_write_temp(dir .. "/missing", "x")
    assert.is_nil(ok)
    assert.matches("^mkstemp: ", err)
    ok, err = core.fs_commit(dir .. "/no-tmp", dir .. "/x", dir)
    assert.is_nil(ok)
    assert.matches("^rename: ", err)
    ok, err = core.fs_lock(dir .. "/missing/l", false)
    assert.is_nil(ok)
    assert.matches("^open lock file: ", err)
    local why
    ok, err, why = core.fs_mode(dir .. "/missing")
    assert.is_nil(ok)
    assert.matches("^stat: ", err)
    assert.equal("missing", why) -- ENOENT, told apart from other failures
    ok, err, why = core.fs_mode(dir .. "/file/x")
    assert.is_nil(ok)
    assert.matches("^stat: ", err)
    assert.equal("error", why) -- ENOTDIR
    ok, err, why = core.fs_write(dir .. "/missing/v", "x")
    assert.is_nil(ok)
    assert.matches("^mkstemp: ", err)
    assert.equal("missing", why)
    ok, err, why = core.fs_write(dir .. "/v\0x", "x")
    assert.is_nil(ok)
    assert.matches("^mkstemp: ", err)
    assert.equal("error", why)
    assert.same({ "file" }, core.fs_list(dir))
  end)

  it("fs_mode: permission bits, kind and owner", function()
    local mode, kind, uid = core.fs_mode(dir)
    assert.equal(tonumber("700", 8), mode)
    assert.equal("dir", kind)
    local p = io.popen("id -u")
    assert.equal(tonumber(p:read("*l")), uid)
    p:close()
    assert.is_true(core.fs_write(dir .. "/f", "x"))
    assert.same({ tonumber("600", 8), "file", uid }, { core.fs_mode(dir .. "/f") })
    assert.equal("other", select(2, core.fs_mode("/dev/null")))
  end)

  it("fs_write: every byte, 0600, over the old file, no temp file left; fs_isatty is a boolean", function()
    local data = "a\0b" .. string.rep("x", 100000)
    assert.is_true(core.fs_write(dir .. "/v", "old"))
    assert.is_true(core.fs_write(dir .. "/v", data))
    assert.equal(data, Nginx.read_file(dir .. "/v"))
    assert.equal(tonumber("600", 8), (core.fs_mode(dir .. "/v")))
    assert.same({ "v" }, core.fs_list(dir))
    assert.has_error(function() core.fs_write(dir .. "/v", nil) end)
    assert.is_boolean(core.fs_isatty(2))
    assert.is_false(core.fs_isatty(-1))
    assert.is_false(core.fs_isatty(5000))
  end)

  it("raise on misuse", function()
    assert.has_error(function() core.fs_list(nil) end)
    assert.has_error(function() core.fs_write_temp(dir, nil) end)
  end)

  it("write_temp keeps every byte, NULs included; a lock unlocks once", function()
    local data = "a\0b" .. string.rep("x", 100000)
    local tmp = assert(core.fs_write_temp(dir, data))
    assert.is_true(core.fs_commit(tmp, dir .. "/v", dir))
    assert.equal(data, Nginx.read_file(dir .. "/v"))
    local lock = assert(core.fs_lock(dir .. "/l", false))
    assert.is_false(core.fs_lock(dir .. "/l", false))
    assert.is_true(lock:unlock())
    assert.is_false(lock:unlock())
    assert.is_truthy(core.fs_lock(dir .. "/l", false))
    assert.same({}, (function()
      local extra = {}
      for _, name in ipairs(core.fs_list(dir)) do
        if name ~= "v" and name ~= "l" then extra[#extra + 1] = name end
      end
      return extra
    end)())
  end)
end)

describe("redis store", function()
  local server
  setup(function() server = Redis.start({ password = "redis-pass-a1b2c3" }) end)
  teardown(function() if server then server:stop() end end)

  local n = 0
  contract("redis", function()
    n = n + 1
    return store.redis({ port = server.port, password = "redis-pass-a1b2c3", prefix = "spec" .. n .. ":", db = 3 })
  end)

  it("keeps prefixes apart", function()
    local a = store.redis({ port = server.port, password = "redis-pass-a1b2c3", prefix = "A:" })
    local b = store.redis({ port = server.port, password = "redis-pass-a1b2c3", prefix = "B:" })
    a:set("token:1", "a")
    assert.is_nil(b:get("token:1"))
    assert.same({}, b:keys("token:"))
  end)

  it("a key with glob characters lists only itself", function()
    local s = store.redis({ port = server.port, password = "redis-pass-a1b2c3", prefix = "glob:" })
    s:set("t*", "1")
    s:set("tx", "2")
    assert.same({ "t*" }, s:keys("t*"))
  end)

  it("a lock lapses after its ttl, and the first owner cannot release the next one's", function()
    local s = store.redis({ port = server.port, password = "redis-pass-a1b2c3", prefix = "ttl:" })
    local first = assert(s:lock("L", 0.2))
    socket.sleep(0.4)
    local second = s:lock("L", 30)
    assert.is_string(second)
    assert.is_false(s:unlock("L", first))
    assert.is_false(s:lock("L", 30))
    assert.is_true(s:unlock("L", second))
  end)

  it("takes the password from the environment, and never shows it", function()
    local s = store.redis({ port = server.port, password_env = "HOME" }) -- a wrong one
    local v, err = s:get("k")
    assert.is_nil(v)
    assert.equal("store", err.kind)
    assert.matches("AUTH failed", err.message)
    assert.not_matches(os.getenv("HOME"), tostring(err), 1, true)
    local wrong = store.redis({ port = server.port, password = "wrong-password-xyz" })
    local _, err2 = wrong:get("k")
    assert.not_matches("wrong%-password%-xyz", tostring(err2))
    assert.not_matches("redis%-pass", tostring(wrong))
  end)

  it("a server that is down is a store error within the timeout; it recovers when the server is back", function()
    local s = store.redis({ port = server.port, password = "redis-pass-a1b2c3", prefix = "down:", timeout = 0.5 })
    assert.is_true(s:set("k", "v"))
    server:kill("KILL")
    local t0 = socket.gettime()
    local v, err = s:get("k")
    assert.is_nil(v)
    assert.equal("store", err.kind)
    local ok, err2 = s:lock("k", 5)
    assert.is_nil(ok)
    assert.equal("store", err2.kind)
    assert.is_true(socket.gettime() - t0 < 5) -- generous: two calls of a 0.5 s timeout
    server:restart()
    assert.is_true(s:set("k", "back"))
    assert.equal("back", s:get("k"))
  end)

  it("a silent server (accepts, never answers) times out as a store error", function()
    local listener = assert(socket.bind("127.0.0.1", 0))
    local _, port = listener:getsockname()
    local s = store.redis({ port = tonumber(port), timeout = 0.3 })
    local v, err = s:get("k")
    listener:close()
    assert.is_nil(v)
    assert.equal("store", err.kind)
  end)
end)

describe("redis store over TLS", function()
  local fake, server
  setup(function()
    fake = Fake.start({ quiet = true }) -- for its test CA and server certificate (127.0.0.1, localhost)
    local dir = fake.ca_file:match("^(.*)/[^/]+$")
    server = Redis.start({ tls = { cert = dir .. "/server.pem", key = dir .. "/server.key", ca = fake.ca_file } })
  end)
  teardown(function()
    if server then server:stop() end
    if fake then fake:stop() end
  end)

  it("works with ssl = true against a trusted certificate", function()
    local s = store.redis({ port = server.port, ssl = true, ca_file = fake.ca_file, prefix = "tls:" })
    assert.is_true(s:set("k", "v"))
    assert.equal("v", s:get("k"))
  end)

  it("refuses a certificate from an unknown CA, or for another name", function()
    local s = store.redis({ port = server.port, ssl = true, ca_file = fake.untrusted_ca_file })
    local v, err = s:get("k")
    assert.is_nil(v)
    assert.equal("store", err.kind)
    assert.matches("TLS", err.message)
    local wrong = store.redis({ port = server.port, ssl = true, ca_file = fake.ca_file, server_name = "wrong.example" })
    local v2, err2 = wrong:get("k")
    assert.is_nil(v2)
    assert.matches("does not name wrong.example", err2.message)
  end)

  it("plain text to a TLS port is a store error, not a hang", function()
    local s = store.redis({ port = server.port, timeout = 0.5 })
    local v, err = s:get("k")
    assert.is_nil(v)
    assert.equal("store", err.kind)
  end)
end)
