-- instagram.feed and instagram.cdn_expiry, against the fake Instagram and its CDN (signed URLs
-- with oe=, 403 "URL signature expired" past it by the fake clock), with real stores.
local instagram = require "instagram"
local json = require "instagram.json"
local socket = require "socket"
local Fake = require "spec.support.fake"
local Clients = require "spec.support.client"
local Nginx = require "spec.support.nginx"
local Redis = require "spec.support.redis"

local DAY, HOUR = 86400, 3600

describe("instagram.cdn_expiry", function()
  it("reads oe as hex Unix seconds, either case", function()
    assert.equal(1772765039, instagram.cdn_expiry("https://scontent.cdninstagram.com/v/a.jpg?oh=00_x&oe=69AA3F6F"))
    assert.equal(1772765039, instagram.cdn_expiry("https://scontent.cdninstagram.com/v/a.jpg?oe=69aa3f6f&oh=00_x"))
    assert.equal(255, instagram.cdn_expiry("https://x/a?oe=ff#frag"))
  end)
  it("is nil without a well-formed oe", function()
    assert.is_nil(instagram.cdn_expiry("https://x/a.jpg"))
    assert.is_nil(instagram.cdn_expiry("https://x/a.jpg?noe=69AA3F6F"))
    assert.is_nil(instagram.cdn_expiry("https://x/a.jpg?oe="))
    assert.is_nil(instagram.cdn_expiry("https://x/a.jpg?oe=69AA3F6G"))
    assert.is_nil(instagram.cdn_expiry("https://x/a.jpg?oe=-1"))
    assert.is_nil(instagram.cdn_expiry("https://x/a.jpg?oe=" .. string.rep("F", 40)))
    assert.is_nil(instagram.cdn_expiry("https://x/a.jpg#?oe=69AA3F6F"))
    assert.is_nil(instagram.cdn_expiry("https://x/oe=69AA3F6F"))
    assert.is_nil(instagram.cdn_expiry(nil))
    assert.is_nil(instagram.cdn_expiry(42))
  end)
end)

describe("instagram.feed", function()
  local fake, offset, dirs = nil, 0, {}
  local USER_ID = "17841405793187219"

  setup(function() fake = Fake.start({ quiet = true }) end)
  teardown(function()
    if fake then fake:stop() end
    for _, d in ipairs(dirs) do Nginx.run("rm -rf " .. Nginx.q(d)) end
  end)
  before_each(function()
    fake:reset()
    offset = 0
  end)

  local function advance(seconds)
    offset = fake:advance(seconds)
  end

  local function client()
    return Clients.new(fake, { retries = 0, clock = function() return math.floor(socket.gettime()) + offset end,
      sleep = function(s) socket.sleep(s) end })
  end

  local function file_store()
    local d = Nginx.mktemp_dir("feed")
    dirs[#dirs + 1] = d
    return instagram.store.file({ dir = d .. "/s" })
  end

  local function setup_feed(opts)
    local ig = client()
    local k = instagram.keeper.new({ client = ig, store = file_store() })
    local s = fake:issue_token("jayposiris", { kind = "long", age = 2 * DAY })
    local now = ig:_now()
    k:add({ access_token = s, user_id = USER_ID, issued_at = now - 2 * DAY, expires_at = now + 58 * DAY })
    local o = { keeper = k, user_id = USER_ID, store = file_store() }
    for key, v in pairs(opts or {}) do o[key] = v end
    return instagram.feed.new(o), ig
  end

  local function fetches() return #fake:log("/me/media") end

  local function earliest(items)
    local best, where
    local function scan(item, depth)
      for _, f in ipairs({ "media_url", "thumbnail_url" }) do
        local oe = instagram.cdn_expiry(item[f])
        if oe and (not best or oe < best) then best, where = oe, depth end
      end
      for _, c in ipairs(item.children or {}) do scan(c, "child") end
    end
    for _, item in ipairs(items) do scan(item, "item") end
    return best, where
  end

  it("gets the items with their carousel children; expires_at counts the children's oe", function()
    -- one child's thumbnail expires first: 8 h, against 4 days for the rest
    fake:config({ cdn = { ttls = { ["jayposiris/2-3-thumb.jpg"] = 8 * HOUR } } })
    local feed = setup_feed({ max_ttl = 3 * HOUR, margin = 6 * HOUR })
    local got = assert(feed:get())
    assert.equal(7, #got.items)
    assert.is_false(got.stale)
    local album = got.items[2]
    assert.equal("CAROUSEL_ALBUM", album.media_type)
    assert.equal(3, #album.children)
    assert.is_string(album.children[3].thumbnail_url)
    local oe, where = earliest(got.items)
    assert.equal("child", where)
    assert.equal(oe - 6 * HOUR, got.expires_at)
    assert.is_true(got.expires_at <= got.fetched_at + 3 * HOUR)
    assert.is_string(got.items[1].id)
    assert.equal(1, fetches())
  end)

  it("expires_at is max_ttl after the fetch when the URLs live long", function()
    local feed = setup_feed()
    local got = assert(feed:get())
    assert.equal(got.fetched_at + 3600, got.expires_at)
    assert.is_true(got.expires_at <= earliest(got.items) - 6 * HOUR)
  end)

  it("serves the cached copy until expires_at, then fetches again", function()
    local feed = setup_feed()
    local first = assert(feed:get())
    local again = assert(feed:get())
    assert.equal(first.fetched_at, again.fetched_at)
    assert.equal(1, fetches())
    advance(3601)
    local third = assert(feed:get())
    assert.is_false(third.stale)
    assert.is_true(third.fetched_at > first.fetched_at)
    assert.equal(2, fetches())
  end)

  it("an upstream 500 with unexpired URLs serves the stale copy", function()
    local feed = setup_feed()
    local first = assert(feed:get())
    advance(2 * HOUR)
    fake:fault("/me/media", { status = 500 })
    local got, err = feed:get()
    assert.is_nil(err)
    assert.is_true(got.stale)
    assert.equal(first.fetched_at, got.fetched_at)
    assert.equal(2, fetches())
  end)

  it("an upstream 500 with expired URLs returns the error, never broken images", function()
    local feed = setup_feed()
    local first = assert(feed:get())
    advance(earliest(first.items) - first.fetched_at + 1)
    fake:fault("/me/media", { status = 500 })
    local got, err = feed:get()
    assert.is_nil(got)
    assert.equal(500, err.status)
  end)

  it("refresh_item after a CDN 403 gets a fresh URL", function()
    local feed, ig = setup_feed()
    local first = assert(feed:get())
    local item = first.items[1]
    local res = assert(ig:_transport():request({ method = "GET", url = item.media_url }))
    assert.equal(200, res.status)
    advance(4 * DAY + HOUR)
    res = assert(ig:_transport():request({ method = "GET", url = item.media_url }))
    assert.equal(403, res.status)
    assert.equal("URL signature expired", res.body)
    local fresh = assert(feed:refresh_item(item.id))
    assert.equal(item.id, fresh.id)
    assert.not_equal(item.media_url, fresh.media_url)
    assert.is_true(instagram.cdn_expiry(fresh.media_url) > ig:_now())
    res = assert(ig:_transport():request({ method = "GET", url = fresh.media_url }))
    assert.equal(200, res.status)
    -- a carousel child: its album is re-read, the child comes back
    local child = first.items[2].children[2]
    local fresh_child = assert(feed:refresh_item(child.id))
    assert.equal(child.id, fresh_child.id)
    assert.is_true(instagram.cdn_expiry(fresh_child.media_url) > ig:_now())
  end)

  it("the mirror hook swaps URLs for the site's own", function()
    local seen = 0
    local feed = setup_feed({ mirror = function(url, item)
      seen = seen + 1
      assert.is_string(item.id)
      return "https://static.example/" .. item.id .. (url:match("thumb") and "-thumb" or "") .. ".jpg"
    end })
    local got = assert(feed:get())
    assert.equal("https://static.example/" .. got.items[1].id .. ".jpg", got.items[1].media_url)
    assert.equal("https://static.example/" .. got.items[2].children[1].id .. ".jpg",
      got.items[2].children[1].media_url)
    assert.is_true(seen >= 7 + 3)
    assert.equal(got.fetched_at + 3600, got.expires_at)
  end)

  it("misuse raises", function()
    local feed = setup_feed()
    assert.has_error(function() instagram.feed.new({ user_id = "1" }) end,
      "instagram.feed.new: keeper must be an instagram.keeper")
    assert.has_error(function() instagram.feed.new({ keeper = feed.keeper, user_id = "1", limit = 0 }) end,
      "instagram.feed.new: limit must be a number >= 1")
    assert.has_error(function() instagram.feed.new({ keeper = feed.keeper, user_id = "1", ttl = 5 }) end,
      "instagram.feed.new: unknown option 'ttl'")
    assert.has_error(function() feed.get() end, "feed:get: call it as a method (feed:get(...))")
    assert.has_error(function() feed:refresh_item("abc") end, "feed:refresh_item: media_id must be a media ID string")
  end)

  describe("on Redis", function()
    local redis
    setup(function() redis = Redis.start() end)
    teardown(function() if redis then redis:stop() end end)

    it("Redis down: the local copy is served while its URLs are valid; it recovers when Redis is back", function()
      local feed = setup_feed({ store = instagram.store.redis({ port = redis.port, prefix = "fd:", timeout = 0.5 }) })
      local first = assert(feed:get())
      redis:kill("KILL")
      local got = assert(feed:get())
      assert.is_false(got.stale)
      assert.equal(first.fetched_at, got.fetched_at)
      advance(2 * HOUR)
      got = assert(feed:get())
      assert.is_true(got.stale)
      advance(earliest(first.items) - first.fetched_at)
      local none, err = feed:get()
      assert.is_nil(none)
      assert.equal("store", err.kind)
      redis:restart()
      got = assert(feed:get())
      assert.is_false(got.stale)
      assert.is_true(got.fetched_at > first.fetched_at)
      assert.equal(2, fetches())
      local stored = json.decode(instagram.store.redis({ port = redis.port, prefix = "fd:" }):get(feed.key))
      assert.equal(got.fetched_at, stored.fetched_at)
    end)
  end)
end)
