-- instagram.singleflight with an in-memory backend (the nginx one is in spec/ngx/singleflight_spec.lua).
local singleflight = require "instagram.singleflight"
local errors = require "instagram.errors"

local function memory(can_sleep)
  local b = { data = {}, ttls = {}, sleeps = 0 }
  function b.add(self, key, value, ttl)
    if self.data[key] ~= nil then return false end
    self.data[key], self.ttls[key] = value, ttl
    return true
  end
  function b.get(self, key) return self.data[key] end
  function b.set(self, key, value, ttl) self.data[key], self.ttls[key] = value, ttl end
  function b.release(self, key, owner)
    if self.data[key] == owner then self.data[key] = nil end
  end
  function b.sleep(self)
    self.sleeps = self.sleeps + 1
    return can_sleep
  end
  return b
end

describe("instagram.singleflight", function()
  local OPTS = { ttl = 2, what = "the test" }

  it("runs fn once under a random lock, keeps its value for later callers, and releases the lock", function()
    local b, calls = memory(true), 0
    local v = singleflight.run(b, "k", OPTS, function()
      calls = calls + 1
      assert.is_string(b.data.k)
      assert.is_true(#b.data.k >= 16)
      assert.equal(2, b.ttls.k)
      return { n = 1 }, true
    end)
    assert.same({ n = 1 }, v)
    assert.is_nil(b.data.k)
    assert.equal(60, b.ttls["k:result"])
    local again, second = singleflight.run(b, "k", OPTS, function() calls = calls + 1 end)
    assert.same({ n = 1 }, again)
    assert.is_nil(second)
    assert.equal(1, calls)
  end)

  it("keeps a failure briefly, and hands it to waiters as an error object", function()
    local b = memory(true)
    local _, err = singleflight.run(b, "k", OPTS, function()
      return nil, errors.new("api", "boom", { code = 2, transient = true, status = 500 })
    end)
    assert.equal("boom", err.message)
    assert.equal(5, b.ttls["k:result"])
    local v, cached = singleflight.run(b, "k", OPTS, function() error("must not run") end)
    assert.is_nil(v)
    assert.is_true(errors.is_error(cached))
    assert.equal("api", cached.kind)
    assert.equal(2, cached.code)
    assert.equal(500, cached.status)
    assert.is_true(cached.transient)
  end)

  it("releases the lock when fn raises, and raises on", function()
    local b = memory(true)
    assert.has_error(function()
      singleflight.run(b, "k", OPTS, function() error("inner misuse", 0) end)
    end, "inner misuse")
    assert.is_nil(b.data.k)
    assert.is_nil(b.data["k:result"])
  end)

  it("never deletes a lock another owner took meanwhile", function()
    local b = memory(true)
    singleflight.run(b, "k", OPTS, function()
      b.data.k = "another-owner"
      return {}
    end)
    assert.equal("another-owner", b.data.k)
  end)

  it("a waiter returns nil, err (kind timeout) where it cannot sleep, or after ttl", function()
    local b = memory(false)
    b.data.k = "holder"
    local v, err = singleflight.run(b, "k", OPTS, function() error("must not run") end)
    assert.is_nil(v)
    assert.equal("timeout", err.kind)
    assert.matches("the test is in progress elsewhere", err.message, 1, true)
    b = memory(true)
    b.data.k = "holder"
    v, err = singleflight.run(b, "k", OPTS, function() error("must not run") end)
    assert.is_nil(v)
    assert.equal("timeout", err.kind)
    assert.is_true(b.sleeps >= 2 / 0.05)
  end)

  it("runs fn without a lock when the backend cannot take one", function()
    local b = memory(true)
    function b.add() return nil, "no memory" end
    local v, second = singleflight.run(b, "k", OPTS, function() return { x = 1 }, true end)
    assert.same({ x = 1 }, v)
    assert.is_true(second)
  end)

  it("a waiter takes over when the lock goes without a result", function()
    local b = memory(true)
    b.data.k = "holder"
    function b.sleep(self)
      self.data.k = nil -- the holder raised, or its lock expired
      return true
    end
    local v = singleflight.run(b, "k", OPTS, function() return { mine = true } end)
    assert.same({ mine = true }, v)
  end)
end)
