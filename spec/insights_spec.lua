-- Insights against the fake Instagram (PLATFORM.md §3.2–§3.4): absent stays nil, deprecated
-- metrics never leave the client, long daily ranges are split into windows.
local Fake = require "spec.support.fake"
local Clients = require "spec.support.client"
local instagram = require "instagram"

local DAY = 86400

describe("insights", function()
  local fake, token, media_id

  setup(function() fake = Fake.start({ quiet = true }) end)
  teardown(function() if fake then fake:stop() end end)

  local function client() return Clients.login(fake) end

  before_each(function()
    fake:reset()
    token = fake:issue_token("biz", { kind = "long" })
    media_id = assert(client():media(token, { fields = "id", limit = 1 })).data[1].id
    fake:clear_log()
  end)

  local function insight_requests()
    return fake:log(function(r) return r.path:match("/insights$") end)
  end

  it("returns total values and breakdowns, and leaves a missing metric nil, never 0", function()
    fake:config({ insights = { missing = { "follows_and_unfollows" } } })
    local r = assert(client():account_insights(token, { metrics = { "reach", "views", "follows_and_unfollows" },
      period = "day", metric_type = "total_value", breakdown = "media_product_type" }))
    assert.is_number(r.reach.value)
    assert.equal(math.type and "integer" or "number", math.type and math.type(r.reach.value) or type(r.reach.value))
    assert.is_number(r.views.value)
    assert.is_nil(r.follows_and_unfollows)
    assert.equal(2, #r.reach.breakdown)
    assert.same({ "media_product_type_a" }, r.reach.breakdown[1].dimension_values)
    assert.equal("reach,views,follows_and_unfollows", insight_requests()[1].args.metric)
  end)

  it("media insights: lifetime values, missing stays nil", function()
    fake:config({ insights = { missing = { "saved" } } })
    local r = assert(client():media_insights(token, media_id, "reach,likes,saved"))
    assert.is_number(r.reach.value)
    assert.equal(1, #r.reach.series)
    assert.is_number(r.likes.value)
    assert.is_nil(r.saved)
  end)

  it("refuses a deprecated metric before any request, naming its replacement", function()
    local ig = client()
    assert.has_error(function() ig:media_insights(token, media_id, { "reach", "impressions" }) end,
      "ig:media_insights: metric 'impressions' was removed by Instagram in 2025: use 'views'")
    assert.has_error(function() ig:account_insights(token, { metrics = "video_views" }) end,
      "ig:account_insights: metric 'video_views' was removed by Instagram in 2025: use 'views'")
    assert.equal(0, #fake:log())
  end)

  it("the fake itself refuses impressions on a raw call (the v22 error)", function()
    local body, err = client():get(token, "me/insights", { metric = "impressions" })
    assert.is_nil(body)
    assert.equal(100, err.code)
  end)

  it("splits a 75-day daily series into windows Meta allows and joins the series", function()
    local since = 1767225600 -- 2026-01-01
    local r = assert(client():account_insights(token, { metrics = { "reach" }, period = "day",
      since = since, ["until"] = since + 75 * DAY }))
    local log = insight_requests()
    assert.equal(3, #log)
    for _, e in ipairs(log) do
      assert.is_true(tonumber(e.args["until"]) - tonumber(e.args.since) <= 30 * DAY)
    end
    assert.equal(75, #r.reach.series)
    local sum = 0
    for _, p in ipairs(r.reach.series) do sum = sum + p.value end
    assert.equal(sum, r.reach.value)
  end)

  it("has a catalogue per media product type", function()
    local reels = instagram.insights.metrics_for("REELS")
    assert.truthy(table.concat(reels, ","):find("ig_reels_avg_watch_time", 1, true))
    for _, kind in ipairs({ "FEED", "REELS", "STORY", "ACCOUNT" }) do
      for _, name in ipairs(instagram.insights.metrics_for(kind)) do
        assert.is_nil(instagram.insights.DEPRECATED[name], kind .. " lists " .. name)
      end
    end
    assert.is_nil(instagram.insights.metrics_for("HOLOGRAM"))
  end)
end)
