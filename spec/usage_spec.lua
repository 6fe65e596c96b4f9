-- Rate-limit usage headers (PLATFORM.md §4): X-Business-Use-Case-Usage in Meta's documented array
-- shape and in the object shape seen in the wild, per account; 80002 is rate-limited.
local Fake = require "spec.support.fake"
local Clients = require "spec.support.client"

describe("usage and BUC rate limits", function()
  local fake, token

  setup(function() fake = Fake.start({ quiet = true }) end)
  teardown(function() if fake then fake:stop() end end)

  local function client() return Clients.login(fake, { retries = 0 }) end

  before_each(function()
    fake:reset()
    token = fake:issue_token("biz", { kind = "long" })
  end)

  it("keeps the documented array shape per account", function()
    local ig = client()
    assert.is_nil(ig:usage())
    assert(ig:me(token))
    local usage = ig:usage()
    local entries = usage.business["17841477965412210"]
    assert.equal(1, #entries)
    assert.equal("instagram", entries[1].type)
    assert.is_number(usage.app.call_count)
  end)

  -- the headers are decoded when ig:usage() asks; the next response's replace what was decoded
  it("reports the latest response's usage after an earlier one was read", function()
    local ig = client()
    fake:config({ app_usage = { call_count = 11, total_cputime = 1, total_time = 2 } })
    assert(ig:me(token))
    local first = ig:usage()
    assert.equal(11, first.app.call_count)
    assert.equal(first, ig:usage())
    fake:config({ app_usage = { call_count = 95, total_cputime = 10, total_time = 20 } })
    assert(ig:me(token))
    assert.equal(95, ig:usage().app.call_count)
    assert.equal(11, first.app.call_count)
  end)

  it("accepts the object shape too", function()
    fake:fault("/me", { headers = { ["X-Business-Use-Case-Usage"] =
      '{"17841477965412210":{"type":"instagram","call_count":95,"estimated_time_to_regain_access":0}}' } })
    local ig = client()
    assert(ig:me(token))
    local entries = ig:usage().business["17841477965412210"]
    assert.equal(1, #entries)
    assert.equal(95, entries[1].call_count)
  end)

  for _, shape in ipairs({
    { "array", '{"17841477965412210":[{"type":"instagram","call_count":100,"estimated_time_to_regain_access":7}]}' },
    { "object", '{"17841477965412210":{"type":"instagram","call_count":100,"estimated_time_to_regain_access":7}}' },
  }) do
    it("maps 80002 to rate_limited with retry_after from minutes (" .. shape[1] .. " shape)", function()
      fake:fault("/me", { status = 400, headers = { ["X-Business-Use-Case-Usage"] = shape[2] },
        body = '{"error":{"message":"There have been too many calls to this Instagram account. Wait a bit and '
          .. 'try again.","type":"OAuthException","code":80002,"error_subcode":2446079}}' })
      local me, err = client():me(token)
      assert.is_nil(me)
      assert.is_true(err.rate_limited)
      assert.equal(80002, err.code)
      assert.equal(420, err.retry_after)
    end)
  end

  it("decodes a localized error_user_msg with \\u escapes intact", function()
    fake:fault("/me", { status = 400, body = '{"error":{"message":"\\u0cae\\u0cbe\\u0ca7\\u0ccd\\u0caf\\u0cae",'
      .. '"type":"OAuthException","code":100}}' })
    local _, err = client():me(token)
    assert.equal("ಮಾಧ್ಯಮ", err.message)
  end)
end)
