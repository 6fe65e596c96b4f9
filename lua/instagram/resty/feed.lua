-- OpenResty: answers a location with a feed as JSON (API.md "Stores, the token keeper, the feed").
--   location = /feed.json { content_by_lua_block { require("instagram.resty.feed").serve{feed = feed} } }
-- The body is {"items":[...],"fetched_at":t,"expires_at":t,"stale":b}. It carries a strong ETag
-- (If-None-Match -> 304) and Cache-Control: max-age that never outlives expires_at, so no cache in
-- front of it keeps image URLs past their expiry. A failure answers 502 (503 for a store failure)
-- with {"error":{"kind":...}} and no detail: the details go to the error log.
local core = require "instagram.core"
local json = require "instagram.json"

local M = {}

local function raise(fname, msg)
  error(fname .. ": " .. msg, 0)
end

-- Canonical JSON: object keys sorted, so every worker and host writes the same bytes (and the
-- same ETag) for the same feed, whatever order its tables were built in.
local function canonical(v, depth)
  local t = type(v)
  if t == "table" and depth < 32 then
    local n = #v
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    if n > 0 and #keys == n then
      local parts = {}
      for i = 1, n do parts[i] = canonical(v[i], depth + 1) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local parts = {}
    for _, k in ipairs(keys) do
      if type(k) == "string" then parts[#parts + 1] = k end
    end
    table.sort(parts)
    for i, k in ipairs(parts) do parts[i] = json.encode(k) .. ":" .. canonical(v[k], depth + 1) end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "number" and v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
    return string.format("%d", v)
  elseif t == "string" or t == "number" or t == "boolean" then
    return json.encode(v)
  end
  return "null"
end

local function body_of(data)
  local items = #data.items > 0 and canonical(data.items, 0) or "[]"
  return string.format('{"items":%s,"fetched_at":%d,"expires_at":%d,"stale":%s}', items,
    math.floor(data.fetched_at), math.floor(data.expires_at), data.stale and "true" or "false")
end

local function matches(header, etag)
  if type(header) == "table" then header = table.concat(header, ",") end
  if type(header) ~= "string" then return false end
  for tag in header:gmatch("[^,]+") do
    tag = tag:gsub("^%s+", ""):gsub("%s+$", ""):gsub("^W/", "")
    if tag == etag or tag == "*" then return true end
  end
  return false
end

function M.serve(opts)
  local fname = "instagram.resty.feed.serve"
  if type(opts) ~= "table" then raise(fname, "options must be a table") end
  local feed = opts.feed
  if type(feed) ~= "table" or type(feed.get) ~= "function" then raise(fname, "feed must be an instagram.feed") end
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or not ngx.header then raise(fname, "needs OpenResty (a content phase)") end

  local data, err = feed:get()
  if not data then
    ngx.log(ngx.ERR, "instagram.resty.feed: ", tostring(err))
    ngx.status = err and err.kind == "store" and 503 or 502
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Cache-Control"] = "no-store"
    ngx.print(string.format('{"error":{"kind":%s}}', json.encode(err and err.kind or "unknown")))
    return ngx.exit(ngx.status)
  end

  local body = body_of(data)
  local etag = '"' .. core.hmac_sha256_hex("instagram.resty.feed", body):sub(1, 32) .. '"'
  local max_age = math.max(0, math.floor(data.expires_at - feed:_now()))
  ngx.header["ETag"] = etag
  ngx.header["Cache-Control"] = "public, max-age=" .. max_age
  ngx.header["Vary"] = "Accept-Encoding"
  if matches(ngx.req.get_headers()["if-none-match"], etag) then
    return ngx.exit(304)
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Content-Length"] = #body
  if ngx.req.get_method() ~= "HEAD" then ngx.print(body) end
  return ngx.exit(200)
end

return M
