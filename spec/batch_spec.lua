-- ig:batch over libcurl's multi interface, measured on the fake's request log (never on wall time).
local Fake = require "spec.support.fake"
local Clients = require "spec.support.client"

-- the longest chain of requests where each starts after the previous one finished:
-- 1 for fully parallel calls, n for n sequential ones
local function rounds(log)
  table.sort(log, function(a, b) return a.finished < b.finished end)
  local best = {}
  local longest = 0
  for i, r in ipairs(log) do
    best[i] = 1
    for j = 1, i - 1 do
      if log[j].finished <= r.started and best[j] + 1 > best[i] then best[i] = best[j] + 1 end
    end
    if best[i] > longest then longest = best[i] end
  end
  return longest
end

local function max_in_flight(log)
  local events = {}
  for _, r in ipairs(log) do
    events[#events + 1] = { r.started, 1 }
    events[#events + 1] = { r.finished, -1 }
  end
  table.sort(events, function(a, b)
    if a[1] == b[1] then return a[2] < b[2] end
    return a[1] < b[1]
  end)
  local now, top = 0, 0
  for _, e in ipairs(events) do
    now = now + e[2]
    if now > top then top = now end
  end
  return top
end

describe("ig:batch", function()
  local fake

  setup(function() fake = Fake.start({ quiet = true }) end)
  teardown(function() if fake then fake:stop() end end)
  before_each(function() fake:reset() end)

  local function client()
    return Clients.new(fake, { retries = 0 })
  end

  it("runs 20 delayed calls at concurrency 8 in about 3 rounds, in call order, one bad token among them", function()
    fake:fault("/me", { delay = 0.2 })
    local good = fake:issue_token("jayposiris", { kind = "long" })
    local calls = {}
    for i = 1, 20 do
      calls[i] = { "me", i == 7 and "IGQVJbad-token" or good, i % 2 == 0 and { "id" } or nil }
    end
    local results = client():batch(calls, { concurrency = 8 })
    assert.equal(20, #results)
    for i, r in ipairs(results) do
      if i == 7 then
        assert.is_false(r.ok)
        assert.equal(190, r.err.code)
      else
        assert.is_true(r.ok, "call " .. i)
        assert.equal("17841405793187219", r.value.id)
        assert.equal(i % 2 == 1 and "jayposiris" or nil, r.value.username)
      end
    end
    local log = fake:log("/me")
    assert.equal(20, #log)
    assert.equal(8, max_in_flight(log))
    local n = rounds(log)
    assert.is_true(n >= 3 and n <= 4, "rounds: " .. n)
    -- connections are reused across the batch: at most one per concurrent slot, not one per call
    local connections = {}
    for _, r in ipairs(log) do connections[r.connection] = true end
    local count = 0
    for _ in pairs(connections) do count = count + 1 end
    assert.is_true(count <= 8, "connections: " .. count)
  end)

  it("mixes methods and keeps going past failures", function()
    local ig = client()
    local good = fake:issue_token("jayposiris", { kind = "long" })
    local results = ig:batch({
      { "me", good },
      { "media", good, { limit = 2 } },
      { "user", good, "17841405793187219" },
      { "get", "IGQVJbad", "me" },
    })
    assert.is_true(results[1].ok)
    assert.equal(2, #results[2].value.data)
    assert.equal("jayposiris", results[3].value.username)
    assert.is_false(results[4].ok)
    assert.is_true(results[4].err.token_invalid)
  end)

  it("keeps a legitimate nil (the end, from next_page) and further returns (refreshed)", function()
    local now = 1800000000
    local ig = Clients.new(fake, { retries = 0, clock = function() return now end })
    local good = fake:issue_token("jayposiris", { kind = "long" })
    local last = assert(ig:media(good, { limit = 10 }))
    local old = fake:issue_token("jayposiris", { kind = "long", age = 55 * 86400 })
    local due = { access_token = old, issued_at = now - 55 * 86400, expires_at = now + 5 * 86400 }
    local fresh = { access_token = good, issued_at = now - 86400 * 2, expires_at = now + 58 * 86400 }
    local results = ig:batch({
      { "next_page", last },
      { "refresh_if_needed", due },
      { "refresh_if_needed", fresh },
      { "me", "IGQVJbad" },
    })
    assert.same({ ok = true, n = 1, values = {} }, results[1])
    assert.is_nil(results[1].value)
    assert.is_true(results[2].ok)
    assert.equal(2, results[2].n)
    assert.is_true(results[2].values[2])
    assert.equal(results[2].value, results[2].values[1])
    assert.is_true(results[2].value.expires_at > due.expires_at)
    assert.same({ ok = true, value = fresh, n = 2, values = { fresh, false } }, results[3])
    assert.is_false(results[4].ok)
    assert.equal(190, results[4].err.code)
  end)

  it("raises a call's misuse, and abandons the other calls without sending their requests", function()
    local ig = client()
    local good = fake:issue_token("jayposiris", { kind = "long" })
    assert.has_error(function() ig:batch({ { "me", good }, { "me", 42 } }) end,
      "ig:me: token must be an access-token string or a token table")
    assert.equal(0, #fake:log("/me"))
    -- the client still works
    assert.is_true(ig:batch({ { "me", good } })[1].ok)
  end)

  describe("passes a yield of a user sleep or clock up to the caller's scheduler", function()
    -- a tiny scheduler: runs fn in a coroutine, records what it yields, answers each yield
    local function schedule(fn)
      local co = coroutine.create(fn)
      local seen, answer = {}, nil
      while true do
        local ok, a, b = coroutine.resume(co, answer)
        assert(ok, a)
        if coroutine.status(co) == "dead" then return a, seen end
        seen[#seen + 1] = a
        answer = "answer-" .. #seen
        assert.is_nil(b)
      end
    end

    it("sleep between retries: the retry still happens, the call ends with its real result", function()
      fake:fault("/me", { status = 503, times = 2 })
      local got
      local ig = Clients.new(fake, { retries = 1, sleep = function() got = coroutine.yield("scheduler-tick") end })
      local good = fake:issue_token("jayposiris", { kind = "long" })
      local results, seen = schedule(function() return ig:batch({ { "me", good }, { "me", good } }) end)
      assert.same({ "scheduler-tick", "scheduler-tick" }, seen)
      assert.equal("answer-2", got)
      for i = 1, 2 do
        assert.is_true(results[i].ok)
        assert.equal("17841405793187219", results[i].value.id)
      end
      assert.equal(4, #fake:log("/me"))
    end)

    it("clock: the token table gets the time the clock returns", function()
      local ig = Clients.new(fake, { retries = 0, clock = function()
        coroutine.yield("clock-tick")
        return 1800000000
      end })
      local old = fake:issue_token("jayposiris", { kind = "long", age = 2 * 86400 })
      local results, seen = schedule(function() return ig:batch({ { "refresh_token", old } }) end)
      assert.same({ "clock-tick" }, seen)
      assert.is_true(results[1].ok)
      assert.equal(1800000000, results[1].value.issued_at)
    end)
  end)

  it("raises on calls that name no request method", function()
    local ig = client()
    assert.has_error(function() ig:batch({ { "close" } }) end)
    assert.has_error(function() ig:batch({ "me" }) end)
    assert.has_error(function() ig:batch({}, { concurrency = 0 }) end)
  end)
end)
