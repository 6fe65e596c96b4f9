-- Content publishing against the fake Instagram's container state machine (PLATFORM.md §2):
-- one media_publish per post, reconcile when the answer was lost, local validation first.
local Fake = require "spec.support.fake"
local Clients = require "spec.support.client"
local instagram = require "instagram"

local IMG = "https://cdn.example.com/photo.jpg"
local VID = "https://cdn.example.com/clip.mp4"

describe("publishing", function()
  local fake, token, sleeps

  setup(function() fake = Fake.start({ quiet = true }) end)
  teardown(function() if fake then fake:stop() end end)

  before_each(function()
    fake:reset()
    token = fake:issue_token("biz", { kind = "long" })
    sleeps = {}
  end)

  local function client(extra)
    return Clients.login(fake, { sleep = function(s) sleeps[#sleeps + 1] = s end }, extra)
  end

  local function requests(suffix)
    return fake:log(function(r) return r.path:sub(-#suffix) == suffix end)
  end

  local function publishes() return requests("/media_publish") end

  local function media_count(ig)
    local n = 0
    for item, err in ig:each_media(token, { fields = "id" }) do
      assert.is_nil(err)
      if item then n = n + 1 end
    end
    return n
  end

  describe("local validation, before any request", function()
    local cases = {
      { "no type", { image_url = IMG }, "spec.type must be" },
      { "unknown type", { type = "VIDEO", video_url = VID }, "spec.type must be" },
      { "http URL", { type = "IMAGE", image_url = "http://cdn.example.com/a.jpg" }, "https://" },
      { "URL with a space", { type = "IMAGE", image_url = "https://cdn.example.com/a b.jpg" }, "https://" },
      { "caption of 2201 characters", { type = "IMAGE", image_url = IMG, caption = ("é"):rep(2201) }, "2200" },
      { "31 hashtags", { type = "IMAGE", image_url = IMG, caption = ("#tag "):rep(31) }, "30 hashtags" },
      { "21 mentions", { type = "IMAGE", image_url = IMG, caption = ("@someone "):rep(21) }, "20 @%-mentions" },
      { "alt_text on a reel", { type = "REELS", video_url = VID, alt_text = "a dog" }, "only for images" },
      { "carousel of 1", { type = "CAROUSEL", children = { "1" } }, "2 to 10 children" },
      { "carousel of 11", { type = "CAROUSEL", children = { "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11" } },
        "2 to 10 children" },
      { "unknown field", { type = "IMAGE", image_url = IMG, colour = "red" }, "unknown spec field" },
      { "caption on a story", { type = "STORIES", image_url = IMG, caption = "hi" }, "not allowed on STORIES" },
      { "tag without x on an image", { type = "IMAGE", image_url = IMG, user_tags = { { username = "a", y = 0.5 } } },
        "x must be from 0 to 1" },
    }
    for _, c in ipairs(cases) do
      it("refuses " .. c[1], function()
        local ig = client()
        assert.has_error(function() ig:create_container(token, c[2]) end)
        local ok, err = pcall(ig.create_container, ig, token, c[2])
        assert.is_false(ok)
        assert.matches("^ig:create_container: ", err)
        assert.matches(c[3], err)
        assert.equal(0, #fake:log())
      end)
    end

    it("accepts 2200 characters, 30 hashtags and 20 mentions", function()
      local caption = ("#t "):rep(30) .. ("@u "):rep(20)
      caption = caption .. ("é"):rep(2200 - #caption)
      local c = assert(client():create_container(token, { type = "IMAGE", image_url = IMG, caption = caption,
        alt_text = "a photo" }))
      assert.matches("^%d+$", c.id)
      local form = requests("/media")[1].form
      assert.equal(caption, form.caption)
      assert.equal("a photo", form.alt_text)
      assert.is_nil(form.media_type) -- IMAGE is the default on the wire
    end)

    it("refuses 11 carousel items locally, before creating any child", function()
      local items = {}
      for i = 1, 11 do items[i] = { image_url = IMG .. "?i=" .. i } end
      local ig = client()
      assert.has_error(function() ig:post_carousel(token, { items = items }) end,
        "ig:post_carousel: a carousel has 2 to 10 items, not 11")
      assert.equal(0, #fake:log())
    end)
  end)

  it("sends the token in the form body of a POST, never in the URL", function()
    local c = assert(client():create_container(token, { type = "IMAGE", image_url = IMG }))
    local r = requests("/media")[1]
    assert.equal("POST", r.method)
    assert.equal("", r.query)
    assert.equal(token, r.form.access_token)
    assert.equal(IMG, r.form.image_url)
    assert.is_string(c.id)
  end)

  it("waits with growing intervals until FINISHED, then publishes once", function()
    local ig = client()
    local c = assert(ig:create_container(token, { type = "IMAGE", image_url = "https://cdn.example.com/slow.jpg" }))
    local st = assert(ig:wait_container(token, c.id, { initial = 1, max_interval = 60 }))
    assert.equal("FINISHED", st.status_code)
    assert.same({ 1, 2, 4 }, sleeps) -- IN_PROGRESS three times
    assert.equal(4, #requests("/" .. c.id))
    local media = assert(ig:publish(token, c.id))
    assert.matches("^%d+$", media.id)
    assert.equal(1, #publishes())
    assert.equal(1, fake:business().published)
  end)

  it("retries a publish only on 'not ready yet', and one media is created", function()
    local ig = client()
    local c = assert(ig:create_container(token, { type = "IMAGE", image_url = IMG }))
    -- published before any status read: the container is still IN_PROGRESS
    fake:fault("/me/media_publish", { status = 400, times = 1,
      body = '{"error":{"message":"The media is not ready for publishing, please wait for a moment",'
        .. '"type":"OAuthException","code":9007,"error_subcode":2207027}}' })
    assert(ig:wait_container(token, c.id, { initial = 0.5 }))
    local media = assert(ig:publish(token, c.id, { initial = 0.5 }))
    assert.is_string(media.id)
    assert.equal(2, #publishes())
    assert.equal(1, fake:business().published)
  end)

  it("never re-sends a publish whose connection dropped: outcome_unknown, then reconcile says published", function()
    local ig = client()
    local before = media_count(ig)
    local c = assert(ig:create_container(token, { type = "IMAGE", image_url = IMG }))
    assert(ig:wait_container(token, c.id, { initial = 0 }))
    fake:fault("/me/media_publish", { mode = "drop_after" })
    local media, err = ig:publish(token, c.id)
    assert.is_nil(media)
    assert.equal("network", err.kind)
    assert.is_true(err.outcome_unknown)
    assert.equal(1, #publishes())
    assert.equal("published", ig:reconcile(token, c.id))
    assert.equal(1, #publishes())
    assert.equal(1, fake:business().published)
    assert.equal(before + 1, media_count(ig))
  end)

  it("post_image reconciles a lost answer into {published = true} with no second publish", function()
    local ig = client()
    local seen
    fake:fault("/me/media_publish", { mode = "drop_after" })
    local r = assert(ig:post_image(token, { image_url = IMG, caption = "hello", wait = { initial = 0 },
      on_container = function(id) seen = id end }))
    assert.is_true(r.published)
    assert.is_nil(r.id)
    assert.equal(seen, r.container_id)
    assert.equal(1, #publishes())
    assert.equal(1, fake:business().published)
  end)

  it("reports a 4/2207051 block on a container that went live as published", function()
    fake:config({ publishing = { block_on_publish = true } })
    local ig = client()
    local r = assert(ig:post_image(token, { image_url = IMG, wait = { initial = 0 } }))
    assert.is_true(r.published)
    assert.equal(1, #publishes())
    -- the bare publish shows the flags: blocked, not rate-limited
    local c = assert(ig:create_container(token, { type = "IMAGE", image_url = IMG }))
    assert(ig:wait_container(token, c.id, { initial = 0 }))
    local _, err = ig:publish(token, c.id)
    assert.is_true(err.blocked)
    assert.is_nil(err.rate_limited)
    assert.equal("blocked", err.action)
    assert.equal("published", ig:reconcile(token, c.id))
  end)

  it("post_* returns {id, container_id} and calls on_container before publishing", function()
    local ig = client()
    local order = {}
    local r = assert(ig:post_reel(token, { video_url = VID, caption = "reel", share_to_feed = true,
      wait = { initial = 0 }, on_container = function(id) order[#order + 1] = "container " .. id
        order[#order + 1] = #publishes() end }))
    assert.matches("^%d+$", r.id)
    assert.same({ "container " .. r.container_id, 0 }, order)
    local form = requests("/media")[1].form
    assert.equal("REELS", form.media_type)
    assert.equal("true", form.share_to_feed)
  end)

  it("classifies ERROR (subcode only in status, empty status_code) and EXPIRED as kind container", function()
    local ig = client()
    local c = assert(ig:create_container(token,
      { type = "IMAGE", image_url = "https://cdn.example.com/error2207082.jpg" }))
    local st, err = ig:wait_container(token, c.id, { initial = 0 })
    assert.is_nil(st)
    assert.equal("container", err.kind)
    assert.equal("ERROR", err.status_code)
    assert.equal(2207082, err.subcode)
    c = assert(ig:create_container(token, { type = "IMAGE", image_url = "https://cdn.example.com/expired.jpg" }))
    st, err = ig:wait_container(token, c.id, { initial = 0 })
    assert.is_nil(st)
    assert.equal("container", err.kind)
    assert.equal("EXPIRED", err.status_code)
    assert.equal("expired", ig:reconcile(token, c.id))
    local r
    r, err = ig:post_image(token, { image_url = "https://cdn.example.com/expired.jpg", wait = { initial = 0 } })
    assert.is_nil(r)
    assert.equal("container", err.kind)
    assert.equal(0, #publishes())
  end)

  it("gives up with kind timeout when the budget runs out", function()
    local ig = client()
    local c = assert(ig:create_container(token, { type = "IMAGE", image_url = "https://cdn.example.com/stuck.jpg" }))
    local st, err = ig:wait_container(token, c.id, { initial = 1, max_interval = 4, budget = 20 })
    assert.is_nil(st)
    assert.equal("timeout", err.kind)
    assert.same({ 1, 2, 4, 4, 4, 4 }, sleeps)
    assert.equal("pending", ig:reconcile(token, c.id))
  end)

  it("creates a carousel's parent only after every child is FINISHED, polling children together", function()
    local ig = client()
    local r = assert(ig:post_carousel(token, { caption = "album", wait = { initial = 1, max_interval = 8 },
      items = { { image_url = IMG }, { image_url = "https://cdn.example.com/slow.jpg" }, { video_url = VID } } }))
    assert.matches("^%d+$", r.id)
    local creates = requests("/me/media")
    assert.equal(4, #creates)
    local parent = creates[4]
    assert.equal("CAROUSEL", parent.form.media_type)
    -- every child status read came before the parent was created (the log is in arrival order;
    -- start times have only millisecond resolution, so they cannot tell)
    local child_reads = 0
    for _, e in ipairs(fake:log()) do
      if e.method == "POST" and e.form and e.form.media_type == "CAROUSEL" then break end
      if e.method == "GET" and e.args.fields == "status_code,status" then child_reads = child_reads + 1 end
    end
    -- rounds of 3, 3 (two finish), 1, 1 (the slow one finishes): a FINISHED child is not read again
    assert.equal(8, child_reads)
    assert.same({ 1, 2, 4 }, { sleeps[1], sleeps[2], sleeps[3] })
    -- the children are created concurrently: they reach the fake in any order
    local videos = 0
    for i = 1, 3 do
      assert.equal("true", creates[i].form.is_carousel_item)
      if creates[i].form.video_url then
        videos = videos + 1
        assert.equal("VIDEO", creates[i].form.media_type)
      end
    end
    assert.equal(1, videos)
    assert.equal(1, #publishes())
  end)

  it("does not create the parent while a child is stuck IN_PROGRESS", function()
    local ig = client()
    local r, err = ig:post_carousel(token, { wait = { initial = 1, budget = 3 },
      items = { { image_url = IMG }, { image_url = "https://cdn.example.com/stuck.jpg" } } })
    assert.is_nil(r)
    assert.equal("timeout", err.kind)
    assert.equal(2, #requests("/me/media")) -- the two children, no parent
    assert.equal(0, #publishes())
  end)

  it("reads the publishing limit and refuses a post up front when it is used up (opt-in)", function()
    fake:config({ publishing = { quota_total = 50, quota_used = 50 } })
    local ig = client()
    assert.same({ used = 50, total = 50, window = 86400 }, ig:publishing_limit(token))
    local r, err = ig:post_image(token, { image_url = IMG, check_limit = true })
    assert.is_nil(r)
    assert.is_true(err.quota)
    assert.equal(0, #requests("/me/media"))
    -- without the pre-check Instagram refuses the publish itself: 9/2207042, flagged quota
    r, err = ig:post_image(token, { image_url = IMG, wait = { initial = 0 } })
    assert.is_nil(r)
    assert.is_true(err.quota)
    assert.equal("quota", err.action)
  end)

  it("retries a container creation that failed with the flaky 9004/2207052, using one container", function()
    fake:fault("/me/media", { status = 400, times = 2,
      body = '{"error":{"message":"The media could not be fetched from this uri","type":"OAuthException",'
        .. '"code":9004,"error_subcode":2207052}}' })
    local ig = client()
    local c = assert(ig:create_container(token, { type = "IMAGE", image_url = IMG }))
    assert.is_string(c.id)
    assert.equal(3, #requests("/me/media"))
    assert.equal(2, #sleeps)
  end)

  it("classifies publishing errors by subcode", function()
    local classify = instagram.publishing.classify
    assert.equal("wait", classify({ code = 9007, subcode = 2207027 }))
    assert.equal("blocked", classify({ code = 4, subcode = 2207051 }))
    assert.equal("quota", classify({ code = 9, subcode = 2207042 }))
    assert.equal("fix_request", classify({ code = 36003, subcode = 2207009 }))
    assert.equal("new_container", classify({ code = -2, subcode = 2207020 }))
    assert.equal("retry", classify({ code = -1, subcode = 2207001 }))
    assert.is_nil(classify({ code = 190 }))
  end)
end)
