-- Insights (PLATFORM.md §3.2–§3.4): account and media metrics, normalized so that a metric
-- Instagram did not report stays nil (never 0), with a catalogue that refuses the metrics
-- removed in 2025 before any request.
local M = {}

local DAY = 86400
local MAX_RANGE = 30 * DAY -- "There cannot be more than 30 days (2592000 s) between since and until"

-- removed in v22.0 (2025); each names what replaces it
M.DEPRECATED = {
  impressions = "views", plays = "views", video_views = "views", clips_replays_count = "views",
  ig_reels_aggregated_all_plays_count = "views", total_likes = "likes", total_comments = "comments",
  total_views = "views",
}

local CATALOGUE = {
  ACCOUNT = {
    "reach", "views", "accounts_engaged", "total_interactions", "likes", "comments", "saves", "shares",
    "replies", "reposts", "follows_and_unfollows", "profile_links_taps", "follower_count",
    "online_followers", "follower_demographics", "engaged_audience_demographics",
    "reached_audience_demographics",
  },
  FEED = {
    "comments", "likes", "saved", "shares", "reach", "views", "follows", "reposts", "profile_visits",
    "profile_activity", "total_interactions",
  },
  REELS = {
    "comments", "likes", "saved", "shares", "reach", "views", "reposts", "total_interactions",
    "ig_reels_avg_watch_time", "ig_reels_video_view_total_time", "reels_skip_rate", "crossposted_views",
  },
  STORY = {
    "reach", "views", "replies", "shares", "follows", "navigation", "profile_visits", "profile_activity",
    "total_interactions",
  },
}
CATALOGUE.AD = CATALOGUE.FEED

-- metrics_for(media_product_type) -> the metrics Instagram reports for that kind of media
-- ("FEED", "REELS", "STORY", "AD"; "ACCOUNT" for the account), or nil for an unknown kind
function M.metrics_for(media_product_type)
  if type(media_product_type) ~= "string" then
    error("instagram.insights.metrics_for: media_product_type must be a string", 2)
  end
  local list = CATALOGUE[media_product_type:upper()]
  if not list then return nil end
  local copy = {}
  for i, name in ipairs(list) do copy[i] = name end
  return copy
end

local function number(v)
  -- a count above 2^53 arrives quoted (instagram.json keeps long integers exact)
  if type(v) == "string" and v:match("^%-?%d+$") then v = tonumber(v) end
  if type(v) == "number" then
    if v == math.floor(v) and v >= -2 ^ 53 and v <= 2 ^ 53 then return math.floor(v) end
    return v
  end
  return nil
end

-- Folds one response's data into result: {name -> {value, series, breakdown}}
-- a point's value: a number, or an object of numbers (online_followers: hour -> count), else nil
local function point_value(v)
  if type(v) ~= "table" then return number(v) end
  local out, any = {}, false
  for k, x in pairs(v) do
    local n = number(x)
    if type(k) == "string" and n then out[k], any = n, true end
  end
  return any and out or nil
end

local function fold(result, body)
  if type(body) ~= "table" or type(body.data) ~= "table" then return end
  for _, d in ipairs(body.data) do
    if type(d) == "table" and type(d.name) == "string" then
      local entry = result[d.name] or { series = {} }
      local total = type(d.total_value) == "table" and d.total_value or nil
      if total then
        entry.value = number(total.value)
        local b = type(total.breakdowns) == "table" and total.breakdowns[1]
        if type(b) == "table" and type(b.results) == "table" then
          local list = {}
          for _, r in ipairs(b.results) do
            if type(r) == "table" then
              list[#list + 1] = {
                dimension_values = type(r.dimension_values) == "table" and r.dimension_values or {},
                value = number(r.value),
              }
            end
          end
          entry.breakdown = list
          entry.dimension_keys = type(b.dimension_keys) == "table" and b.dimension_keys or nil
        end
      end
      if type(d.values) == "table" then
        for _, v in ipairs(d.values) do
          if type(v) == "table" then
            entry.series[#entry.series + 1] = { value = point_value(v.value),
              end_time = type(v.end_time) == "string" and v.end_time or nil }
          end
        end
        -- the sum over the series (a lifetime metric has one value); nil if none was a number
        local sum
        for _, point in ipairs(entry.series) do
          if type(point.value) == "number" then sum = (sum or 0) + point.value end
        end
        if not total then entry.value = sum end
      end
      entry.period = type(d.period) == "string" and d.period or entry.period
      result[d.name] = entry
    end
  end
end

return setmetatable(M, { __call = function(_, Client, h)
  local function metric_list(fname, metrics)
    if type(metrics) == "string" then
      local list = {}
      for name in metrics:gmatch("[^,%s]+") do list[#list + 1] = name end
      metrics = list
    end
    if type(metrics) ~= "table" or #metrics == 0 then
      h.raise(fname, "metrics must be a non-empty array of names or a comma-separated string")
    end
    for i, name in ipairs(metrics) do
      if type(name) ~= "string" or not name:match("^[%w_]+$") then
        h.raise(fname, "metrics[" .. i .. "] must be a metric name")
      end
      local replacement = M.DEPRECATED[name:lower()]
      if replacement then
        h.raise(fname, "metric '" .. name .. "' was removed by Instagram in 2025: use '" .. replacement .. "'")
      end
    end
    return table.concat(metrics, ",")
  end

  local function unix(fname, what, v)
    if v == nil then return nil end
    if type(v) ~= "number" or v ~= math.floor(v) or v < 0 or v > 2 ^ 40 then
      h.raise(fname, what .. " must be a Unix time in seconds")
    end
    return math.floor(v)
  end

  local ACCOUNT_OPTS = { metrics = true, period = true, metric_type = true, breakdown = true, timeframe = true,
    since = true, ["until"] = true, user_id = true }

  function Client:account_insights(token, opts)
    local fname = "ig:account_insights"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    if type(opts) ~= "table" then h.raise(fname, "opts must be a table with metrics") end
    for k in pairs(opts) do
      if not ACCOUNT_OPTS[k] then h.raise(fname, "unknown option '" .. tostring(k) .. "'") end
    end
    local params = { metric = metric_list(fname, opts.metrics), period = opts.period or "day" }
    for _, k in ipairs({ "period", "metric_type", "breakdown", "timeframe" }) do
      if opts[k] ~= nil then params[k] = h.check_string(fname, "opts." .. k, opts[k]) end
    end
    local since, until_ = unix(fname, "opts.since", opts.since), unix(fname, "opts.until", opts["until"])
    if since and until_ and until_ < since then h.raise(fname, "opts.until is before opts.since") end
    local user = opts.user_id == nil and "me" or h.id_string(fname, "opts.user_id", opts.user_id)
    local path = user .. "/insights"

    -- a daily series over a long range goes out as windows Meta allows, concurrently
    local windows = { { since, until_ } }
    if since and until_ and until_ - since > MAX_RANGE and params.metric_type ~= "total_value" then
      windows = {}
      local from = since
      while from < until_ do
        local to = math.min(from + MAX_RANGE, until_)
        windows[#windows + 1] = { from, to }
        from = to
      end
    end
    local calls = {}
    for i, w in ipairs(windows) do
      local p = {}
      for k, v in pairs(params) do p[k] = v end
      p.since = w[1] and string.format("%d", w[1]) or nil
      p["until"] = w[2] and string.format("%d", w[2]) or nil
      calls[i] = { "get", token, path, p }
    end
    local result = {}
    if #calls == 1 then
      local body, err = self:get(token, path, calls[1][4])
      if not body then return nil, err end
      fold(result, body)
    else
      for _, r in ipairs(self:batch(calls)) do
        if not r.ok then return nil, r.err end
        fold(result, r.value)
      end
    end
    return result
  end

  function Client:media_insights(token, media_id, metrics)
    local fname = "ig:media_insights"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    media_id = h.id_string(fname, "media_id", media_id)
    local body, err = self:get(token, media_id .. "/insights", { metric = metric_list(fname, metrics) })
    if not body then return nil, err end
    local result = {}
    fold(result, body)
    return result
  end

  for _, name in ipairs({ "account_insights", "media_insights" }) do h.BATCHABLE[name] = true end
end })
