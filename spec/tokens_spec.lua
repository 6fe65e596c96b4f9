-- Long-lived tokens and their refresh, against the fake Instagram and its movable clock.
local Fake = require "spec.support.fake"
local Clients = require "spec.support.client"
local cjson = require "cjson"

local SECRET = "eb8c7a1b2c3d4e5f60718293a4b5c6d7" -- the fake's basic_display app
local DAY = 86400

describe("long-lived tokens", function()
  local fake, now

  setup(function() fake = Fake.start({ quiet = true }) end)
  teardown(function() if fake then fake:stop() end end)

  before_each(function()
    fake:reset()
    now = 1800000000
  end)

  local function client(extra)
    return Clients.new(fake, { clock = function() return now end }, extra)
  end

  -- a token table as the application would have stored it, `age` seconds ago
  local function stored_long(age)
    local s = fake:issue_token("jayposiris", { kind = "long", age = age })
    return { access_token = s, token_type = "bearer", user_id = "17841405793187219",
      issued_at = now - age, expires_in = 60 * DAY, expires_at = now - age + 60 * DAY }
  end

  it("exchanges a short-lived token for a long-lived one", function()
    local ig = client()
    local short = fake:issue_token("jayposiris", { kind = "short" })
    local long = assert(ig:exchange_token({ access_token = short, user_id = "17841405793187219" }))
    assert.is_string(long.access_token)
    assert.not_equal(short, long.access_token)
    assert.equal("bearer", long.token_type)
    assert.equal(now, long.issued_at)
    assert.is_true(long.expires_in > 59 * DAY and long.expires_in <= 60 * DAY)
    assert.equal(long.issued_at + long.expires_in, long.expires_at)
    assert.equal("17841405793187219", long.user_id)
    assert.same(long, cjson.decode(cjson.encode(long)))
    local req = fake:log("/access_token")[1]
    assert.equal("GET", req.method)
    assert.same({ grant_type = "ig_exchange_token", client_secret = SECRET, access_token = short }, req.args)
    assert(ig:me(long))
  end)

  it("keeps expires_in, expires_at and issued_at integers (Lua 5.4), even with a fractional clock", function()
    local ig = client({ clock = function() return now + 0.25 end })
    local short = fake:issue_token("jayposiris", { kind = "short" })
    local long = assert(ig:exchange_token(short))
    local refreshed = assert(ig:refresh_token(stored_long(2 * DAY)))
    for _, t in ipairs({ long, refreshed }) do
      for _, k in ipairs({ "expires_in", "expires_at", "issued_at" }) do
        assert.equal(t[k], math.floor(t[k]), k)
        assert.not_matches("%.", tostring(t[k]), k .. " = " .. tostring(t[k]))
        if math.type then assert.equal("integer", math.type(t[k]), k) end
      end
      assert.equal(now, t.issued_at)
    end
  end)

  it("cannot exchange an expired short-lived token", function()
    local ig = client()
    local short = fake:issue_token("jayposiris", { kind = "short" })
    fake:advance(3601)
    local long, err = ig:exchange_token(short)
    assert.is_nil(long)
    assert.equal("api", err.kind)
    assert.equal(190, err.code)
    assert.is_true(err.token_invalid)
    assert.is_nil(tostring(err):find(short, 1, true))
    assert.is_nil(tostring(err):find(SECRET, 1, true))
  end)

  it("refreshes a long-lived token at least a day old", function()
    local ig = client()
    local old = stored_long(2 * DAY)
    local new = assert(ig:refresh_token(old))
    assert.equal(now, new.issued_at)
    assert.is_true(new.expires_in > 59 * DAY)
    assert.equal("17841405793187219", new.user_id)
    local req = fake:log("/refresh_access_token")[1]
    assert.same({ grant_type = "ig_refresh_token", access_token = old.access_token }, req.args)
    assert.is_nil(req.args.client_secret)
  end)

  it("surfaces Instagram's refusal to refresh a token younger than 24 h", function()
    local ig = client()
    local _, err = ig:refresh_token(stored_long(3600))
    assert.equal("api", err.kind)
    assert.is_number(err.code)
  end)

  it("retries the idempotent GET after a 5xx", function()
    fake:fault("/refresh_access_token", { status = 502, times = 1 })
    local ig = client()
    assert(ig:refresh_token(stored_long(2 * DAY)))
    assert.equal(2, #fake:log("/refresh_access_token"))
  end)

  describe("refresh_if_needed", function()
    it("leaves a fresh token alone and makes no request", function()
      local ig = client()
      local t = stored_long(2 * DAY)
      local same, refreshed = ig:refresh_if_needed(t)
      assert.equal(t, same)
      assert.is_false(refreshed)
      assert.equal(0, #fake:log("/refresh_access_token"))
    end)

    it("refreshes a token that expires within 7 days", function()
      local ig = client()
      local t = stored_long(55 * DAY)
      local new, refreshed = ig:refresh_if_needed(t)
      assert.is_true(refreshed)
      assert.equal(now + new.expires_in, new.expires_at)
      assert.is_true(new.expires_at > t.expires_at)
      assert.equal(1, #fake:log("/refresh_access_token"))
    end)

    it("honours opts.within", function()
      local ig = client()
      local _, refreshed = ig:refresh_if_needed(stored_long(2 * DAY), { within = 59 * DAY })
      assert.is_true(refreshed)
    end)

    it("never refreshes a token younger than 24 h, even close to expiry", function()
      local ig = client()
      local t = stored_long(3600)
      t.expires_at = now + 3600
      local same, refreshed = ig:refresh_if_needed(t)
      assert.equal(t, same)
      assert.is_false(refreshed)
      assert.equal(0, #fake:log("/refresh_access_token"))
    end)

    it("refuses an expired token with an error the caller must see", function()
      local ig = client()
      local t = stored_long(61 * DAY)
      local new, err = ig:refresh_if_needed(t)
      assert.is_nil(new)
      assert.equal("api", err.kind)
      assert.is_true(err.token_invalid)
      assert.is_nil(tostring(err):find(t.access_token, 1, true))
      assert.equal(0, #fake:log("/refresh_access_token"))
    end)

    it("raises on misuse", function()
      local ig = client()
      assert.has_error(function() ig:refresh_if_needed("IGQVJx") end,
        "ig:refresh_if_needed: token must be a token table")
      assert.has_error(function() ig:refresh_if_needed(stored_long(DAY * 2), { within = "week" }) end,
        "ig:refresh_if_needed: opts.within must be a number of seconds")
    end)
  end)
end)
