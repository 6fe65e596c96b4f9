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

  it("raises on calls that name no request method", function()
    local ig = client()
    assert.has_error(function() ig:batch({ { "close" } }) end)
    assert.has_error(function() ig:batch({ "me" }) end)
    assert.has_error(function() ig:batch({}, { concurrency = 0 }) end)
  end)
end)
