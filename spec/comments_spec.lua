-- Comments, replies and moderation against the fake Instagram (PLATFORM.md §3.1).
local Fake = require "spec.support.fake"
local Clients = require "spec.support.client"

local DAY = 86400

describe("comments", function()
  local fake, token, sleeps, media_id, restricted_id

  setup(function() fake = Fake.start({ quiet = true }) end)
  teardown(function() if fake then fake:stop() end end)

  local function client(extra)
    return Clients.login(fake, { sleep = function(s) sleeps[#sleeps + 1] = s end }, extra)
  end

  before_each(function()
    fake:reset()
    token = fake:issue_token("biz", { kind = "long" })
    sleeps = {}
    local page = assert(client():media(token, { fields = "id", limit = 2 }))
    media_id, restricted_id = page.data[1].id, page.data[2].id
    fake:clear_log()
  end)

  local function requests(method, suffix)
    return fake:log(function(r) return r.method == method and (not suffix or r.path:sub(-#suffix) == suffix) end)
  end

  it("pages through top-level comments with next_page and each_comment", function()
    local ig = client()
    local page = assert(ig:comments(token, media_id, { limit = 2 }))
    assert.equal(2, #page.data)
    assert.matches("^%d+$", page.data[1].id)
    assert.is_string(page.data[1].text)
    local second = assert(ig:next_page(page))
    assert.equal(1, #second.data)
    assert.is_nil(ig:next_page(second))
    local ids = {}
    for c, err in ig:each_comment(token, media_id, { limit = 1 }) do
      assert.is_nil(err)
      ids[#ids + 1] = c.id
    end
    assert.equal(3, #ids)
    assert.is_nil(page.maybe_restricted)
  end)

  it("lists replies of a comment", function()
    local ig = client()
    local first = assert(ig:comments(token, media_id)).data[1]
    local replies = assert(ig:replies(token, first.id))
    assert.equal(2, #replies.data)
    local n = 0
    for r, err in ig:each_reply(token, first.id, { limit = 1 }) do
      assert.is_nil(err)
      assert.equal(first.id, r.parent_id)
      n = n + 1
    end
    assert.equal(2, n)
  end)

  it("flags an empty page whose media says it has comments as maybe_restricted", function()
    local page = assert(client():comments(token, restricted_id))
    assert.same({}, page.data)
    assert.is_true(page.maybe_restricted)
  end)

  it("refuses a paging.next to another host", function()
    fake:config({ foreign_next = true })
    local ig = client()
    local page = assert(ig:comments(token, media_id, { limit = 1 }))
    assert(ig:next_page(page)) -- followed by cursor on the Graph host
    assert.equal(0, #fake:log(function(e) return e.port == fake.ports.alt end))
  end)

  it("replies once; a reply to a reply lands on the top-level comment", function()
    local ig = client()
    local top = assert(ig:comments(token, media_id)).data[1]
    local reply_to_reply = assert(ig:replies(token, top.id)).data[1]
    local r = assert(ig:reply(token, reply_to_reply.id, "thanks!"))
    assert.matches("^%d+$", r.id)
    local after = assert(ig:replies(token, top.id))
    assert.equal(3, #after.data)
    assert.equal("thanks!", requests("POST", "/replies")[1].form.message)
  end)

  it("never re-sends a reply whose answer was lost: outcome_unknown", function()
    local ig = client()
    local top = assert(ig:comments(token, media_id)).data[1]
    fake:fault("/" .. top.id .. "/replies", { mode = "drop_after" })
    local r, err = ig:reply(token, top.id, "hello")
    assert.is_nil(r)
    assert.is_true(err.outcome_unknown)
    assert.equal(1, #requests("POST", "/replies"))
    assert.same({}, sleeps)
  end)

  it("refuses to reply to a hidden comment (Instagram's 400)", function()
    local ig = client()
    local top = assert(ig:comments(token, media_id)).data[2]
    assert.is_true(ig:hide_comment(token, top.id, true))
    local r, err = ig:reply(token, top.id, "hi")
    assert.is_nil(r)
    assert.equal("api", err.kind)
    assert.equal(100, err.code)
    assert.is_true(ig:hide_comment(token, top.id, false))
    assert(ig:reply(token, top.id, "hi"))
  end)

  it("retries a hide whose connection dropped (idempotent)", function()
    local ig = client()
    local top = assert(ig:comments(token, media_id)).data[1]
    fake:fault("/" .. top.id, { mode = "close", times = 1 })
    assert.is_true(ig:hide_comment(token, top.id, true))
    assert.equal(2, #requests("POST", "/" .. top.id))
    assert.equal(1, #sleeps)
  end)

  it("treats 'does not exist' on a retried DELETE as success", function()
    local ig = client()
    local top = assert(ig:comments(token, media_id)).data[3]
    fake:fault("/" .. top.id, { mode = "drop_after", times = 1 })
    assert.is_true(ig:delete_comment(token, top.id))
    assert.equal(2, #requests("DELETE", "/" .. top.id))
    -- but a first-try "does not exist" is an error: nothing was deleted by us
    local ok, err = ig:delete_comment(token, top.id)
    assert.is_nil(ok)
    assert.equal(100, err.code)
  end)

  it("switches comments off and on", function()
    local ig = client()
    assert.is_true(ig:set_comments_enabled(token, media_id, false))
    assert.equal("false", requests("POST", "/" .. media_id)[1].form.comment_enabled)
    assert.has_error(function() ig:set_comments_enabled(token, media_id, "no") end,
      "ig:set_comments_enabled: enabled must be a boolean")
  end)

  it("sends a private reply once, and refuses one past the 7-day window", function()
    local ig = client()
    local comments = assert(ig:comments(token, media_id)).data
    local r = assert(ig:private_reply(token, comments[3], "We sent you a DM"))
    assert.is_string(r.id)
    local sent = requests("POST", "/messages")
    assert.equal(1, #sent)
    assert.equal(comments[3].id, require("cjson").decode(sent[1].form.recipient).comment_id)

    -- known timestamp, 8 days old by the client's clock: refused without a request
    local old = client({ clock = function() return os.time() + 8 * DAY end })
    local none, err = old:private_reply(token, comments[3], "late")
    assert.is_nil(none)
    assert.is_true(err.window_expired)
    assert.equal(1, #requests("POST", "/messages"))

    -- only the ID: Instagram refuses it, mapped to window_expired
    fake:advance(8 * DAY)
    none, err = ig:private_reply(token, comments[2].id, "late")
    assert.is_nil(none)
    assert.is_true(err.window_expired)
    assert.equal(2, #requests("POST", "/messages"))
  end)

  it("never retries a private reply", function()
    local ig = client()
    local top = assert(ig:comments(token, media_id)).data[1]
    fake:fault("/me/messages", { status = 503 })
    local r, err = ig:private_reply(token, top.id, "hi")
    assert.is_nil(r)
    assert.is_true(err.transient)
    assert.equal(1, #requests("POST", "/messages"))
  end)
end)

describe("client-side rate limits (rate_limits)", function()
  local fake
  setup(function() fake = Fake.start({ quiet = true }) end)
  teardown(function() if fake then fake:stop() end end)

  it("holds private replies to {n, seconds} per account, without a request, and refills with time", function()
    fake:reset()
    local now = 1000000
    local ig = Clients.login(fake, { clock = function() return now end, rate_limits = { private_reply = { 2, 3600 } } })
    local a = { access_token = fake:issue_token("biz", { kind = "long" }), user_id = "1" }
    local b = { access_token = a.access_token, user_id = "2" }
    local media = assert(ig:media(a, { fields = "id", limit = 1 })).data[1].id
    local comments = assert(ig:comments(a, media)).data
    fake:clear_log()
    assert(ig:private_reply(a, comments[1].id, "one"))
    assert(ig:private_reply(a, comments[2].id, "two"))
    local r, err = ig:private_reply(a, comments[3].id, "three")
    assert.is_nil(r)
    assert.is_true(err.rate_limited)
    assert.equal(1800, err.retry_after)
    assert.equal(2, #fake:log("/me/messages"))
    assert(ig:private_reply(b, comments[3].id, "another account")) -- a bucket per account
    local reply_id = assert(ig:replies(a, comments[1].id)).data[1].id
    r, err = ig:private_reply(a, reply_id, "still too soon")
    assert.is_nil(r)
    assert.is_true(err.local_limit)
    now = now + 1800 -- one call's worth refilled
    assert(ig:private_reply(a, reply_id, "four"))
    assert.equal(4, #fake:log("/me/messages"))
    assert.has_error(function() Clients.new(fake, { rate_limits = { replies = { 1, 1 } } }) end,
      "instagram.new: unknown rate limit 'replies'")
  end)
end)
