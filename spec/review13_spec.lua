-- Review of issue 13 (publishing, comments, insights) with servers and data the first specs did not
-- use: answers that reached the client but say nothing usable, odd container and insights shapes,
-- and specs that must raise before any request.
local Fake = require "spec.support.fake"
local Clients = require "spec.support.client"
local instagram = require "instagram"

local IMG = "https://cdn.example.com/photo.jpg"
local VID = "https://cdn.example.com/clip.mp4"
local TOKEN = "IGQVJreviewtoken0123456789abcdefghijklmnop"

-- a client on a function transport: respond(req) -> res; every request is kept in `sent`
local function scripted(respond, extra)
  local sent = {}
  local config = {
    app_id = "990602627938098", app_secret = "a1b2c3d4e5f60718293a4b5c6d7e8f90",
    redirect_uri = "https://localhost/auth/", api = "instagram_login", sleep = function() end,
    transport = function(req)
      sent[#sent + 1] = req
      return respond(req)
    end,
  }
  for k, v in pairs(extra or {}) do config[k] = v end
  return instagram.new(config), sent
end

local function json_answer(body, status)
  return function()
    return { status = status or 200, headers = { ["content-type"] = "application/json" }, body = body }
  end
end

describe("review 13: a write whose answer reached the client but was unusable", function()
  local fake, token

  setup(function() fake = Fake.start({ quiet = true }) end)
  teardown(function() if fake then fake:stop() end end)
  before_each(function()
    fake:reset()
    token = fake:issue_token("biz", { kind = "long" })
  end)

  local function client()
    return Clients.login(fake, { retries = 2 })
  end

  local function count(suffix)
    return #fake:log(function(r) return r.method == "POST" and r.path:sub(-#suffix) == suffix end)
  end

  local function finished(ig)
    local c = assert(ig:create_container(token, { type = "IMAGE", image_url = IMG }))
    assert(ig:wait_container(token, c.id, { initial = 0 }))
    return c.id
  end

  it("a publish answered 200 with a cut JSON body (it went live) says outcome_unknown", function()
    local ig = client()
    local id = finished(ig)
    fake:fault("/me/media_publish", { mode = "truncated_json" })
    local media, err = ig:publish(token, id)
    assert.is_nil(media)
    assert.equal("response", err.kind)
    assert.is_true(err.outcome_unknown)
    assert.equal(1, count("/media_publish"))
    assert.equal(1, fake:business().published)
    assert.equal("published", ig:reconcile(token, id))
  end)

  it("post_image reconciles a publish answered 200 with a cut body into published, one publish", function()
    local ig = client()
    fake:fault("/me/media_publish", { mode = "truncated_json" })
    local r, err = ig:post_image(token, { image_url = IMG, wait = { initial = 0 } })
    assert.is_nil(err)
    assert.is_true(r.published)
    assert.equal(1, count("/media_publish"))
    assert.equal(1, fake:business().published)
  end)

  it("a reply answered 200 with a cut JSON body says outcome_unknown, sent once", function()
    local ig = client()
    local media = assert(ig:media(token, { fields = "id", limit = 1 })).data[1].id
    local comment = assert(ig:comments(token, media)).data[1].id
    fake:fault("/" .. comment .. "/replies", { mode = "truncated_json" })
    local r, err = ig:reply(token, comment, "thanks")
    assert.is_nil(r)
    assert.is_true(err.outcome_unknown)
    assert.equal(1, count("/replies"))
  end)

  it("a publish answered by a gateway's HTML 502 or 504 says outcome_unknown, sent once", function()
    local ig = client()
    local id = finished(ig)
    for _, status in ipairs({ 502, 504 }) do
      fake:clear_log()
      fake:fault("/me/media_publish", { mode = "html_500", status = status })
      local media, err = ig:publish(token, id)
      assert.is_nil(media)
      assert.equal("http", err.kind)
      assert.is_true(err.outcome_unknown, tostring(status))
      assert.equal(1, count("/media_publish"))
    end
  end)

  it("a publish whose answer is larger than max_response_bytes says outcome_unknown", function()
    local ig = Clients.login(fake, { max_response_bytes = 4096 })
    local id = finished(ig)
    fake:fault("/me/media_publish", { mode = "oversize", bytes = 100000 })
    local media, err = ig:publish(token, id)
    assert.is_nil(media)
    assert.equal("response", err.kind)
    assert.is_true(err.outcome_unknown)
    assert.equal(1, count("/media_publish"))
  end)

  it("returns a publish's numeric media id above 2^53 as the exact string", function()
    local ig = client()
    local id = finished(ig)
    fake:fault("/me/media_publish", { status = 200, body = '{"id":18000000000000000123}' })
    local media = assert(ig:publish(token, id))
    assert.equal("18000000000000000123", media.id)
  end)

  it("a Graph API error to a publish is an answer: no outcome_unknown", function()
    local ig = client()
    local id = finished(ig)
    fake:fault("/me/media_publish", { status = 400 })
    local _, err = ig:publish(token, id)
    assert.equal("api", err.kind)
    assert.is_nil(err.outcome_unknown)
  end)
end)

describe("review 13: writes inside ig:batch on libcurl", function()
  local fake, token

  setup(function() fake = Fake.start({ quiet = true }) end)
  teardown(function() if fake then fake:stop() end end)
  before_each(function()
    fake:reset()
    token = fake:issue_token("biz", { kind = "long" })
  end)

  -- hides: how often the idempotent hide is sent (a cut 2xx body is an answer, kind response: not retried)
  for _, fault in ipairs({ { mode = "drop_after", hides = 3 }, { mode = "reset_mid_body", hides = 3 },
    { mode = "truncated_json", hides = 1 } }) do
    it("sends a reply and a private reply once when their answers are lost (" .. fault.mode .. ")", function()
      local ig = Clients.login(fake, { retries = 2 })
      local media = assert(ig:media(token, { fields = "id", limit = 1 })).data[1].id
      local page = assert(ig:comments(token, media))
      -- the hide goes to another comment: a reply to a hidden comment is refused
      local comment, other = page.data[1].id, page.data[2].id
      fake:clear_log()
      local spec = { mode = fault.mode }
      fake:fault("/" .. comment .. "/replies", spec)
      fake:fault("/me/messages", spec)
      fake:fault("/" .. other, spec)
      local r = ig:batch({ { "reply", token, comment, "a" }, { "private_reply", token, comment, "b" },
        { "hide_comment", token, other, true }, { "me", token } })
      assert.is_true(r[1].err.outcome_unknown)
      assert.is_true(r[2].err.outcome_unknown)
      assert.is_true(r[4].ok)
      local function posts(path)
        return #fake:log(function(e) return e.method == "POST" and e.path == path end)
      end
      assert.equal(1, posts("/" .. comment .. "/replies"))
      assert.equal(1, posts("/me/messages"))
      -- the hide is idempotent: retried on a lost answer
      assert.equal(fault.hides, posts("/" .. other))
      assert.is_nil(r[3].err.outcome_unknown)
    end)
  end
end)

describe("review 13: specs that raise before any request", function()
  local function refuses(fname, call, pattern)
    local ig, sent = scripted(json_answer('{"id":"1"}'))
    local ok, err = pcall(call, ig)
    assert.is_false(ok, "did not raise")
    assert.matches("^" .. fname:gsub("%p", "%%%0") .. ": ", tostring(err))
    if pattern then assert.matches(pattern, tostring(err)) end
    assert.equal(0, #sent)
  end

  it("a user tag at NaN", function()
    refuses("ig:create_container", function(ig)
      return ig:create_container(TOKEN, { type = "IMAGE", image_url = IMG,
        user_tags = { { username = "a", x = 0 / 0, y = 0.5 } } })
    end, "x must be from 0 to 1")
  end)

  it("a thumb_offset that is not a finite integer", function()
    for _, v in ipairs({ math.huge, 2 ^ 63, -1 }) do
      refuses("ig:create_container", function(ig)
        return ig:create_container(TOKEN, { type = "REELS", video_url = VID, thumb_offset = v })
      end, "thumb_offset")
    end
  end)

  it("trial_params that cannot be encoded", function()
    refuses("ig:create_container", function(ig)
      return ig:create_container(TOKEN, { type = "REELS", video_url = VID, trial_params = { f = print } })
    end, "trial_params")
  end)

  it("a caption that is not UTF-8", function()
    refuses("ig:create_container", function(ig)
      return ig:create_container(TOKEN, { type = "IMAGE", image_url = IMG, caption = "caf\233 \255" })
    end, "UTF%-8")
  end)

  it("a carousel whose children array has holes", function()
    refuses("ig:create_container", function(ig)
      return ig:create_container(TOKEN, { type = "CAROUSEL", children = { "1", nil, "3" } })
    end)
  end)

  it("a carousel item that names another type", function()
    refuses("ig:post_carousel", function(ig)
      return ig:post_carousel(TOKEN, { items = { { type = "IMAGE", image_url = IMG }, { image_url = IMG } } })
    end, "items%[1%]")
  end)
end)

describe("review 13: misuse of the business options raises", function()
  local function raises(pattern, fn)
    local ig, sent = scripted(json_answer('{"id":"1","status_code":"FINISHED"}'))
    local ok, err = pcall(fn, ig)
    assert.is_false(ok, "did not raise")
    assert.matches(pattern, tostring(err))
    assert.equal(0, #sent)
  end

  it("a misspelt wait option", function()
    raises("^ig:wait_container: unknown option opts%.budjet", function(ig)
      return ig:wait_container(TOKEN, "1", { budjet = 60 })
    end)
    raises("^ig:post_image: unknown option spec%.wait%.budjet", function(ig)
      return ig:post_image(TOKEN, { image_url = IMG, wait = { budjet = 60 } })
    end)
  end)

  it("a post_* spec whose type is another kind", function()
    raises("^ig:post_image: spec%.type must be IMAGE", function(ig)
      return ig:post_image(TOKEN, { type = "REELS", image_url = IMG })
    end)
  end)

  it("rate_limits that are not finite", function()
    for _, spec in ipairs({ { 1, 0 / 0 }, { 1, math.huge }, { math.huge, 60 } }) do
      local ok, err = pcall(instagram.new, { app_id = "1", redirect_uri = "https://localhost/",
        rate_limits = { publish = spec } })
      assert.is_false(ok)
      assert.matches("^instagram%.new: rate_limits%.publish", tostring(err))
    end
  end)
end)

describe("review 13: post_* waits for a not-ready publish within spec.wait", function()
  it("stops retrying 9007 when spec.wait.budget runs out", function()
    local sleeps = {}
    local ig = scripted(function(req)
      if req.url:find("media_publish", 1, true) then
        return { status = 400, body = '{"error":{"message":"The media is not ready for publishing",'
          .. '"type":"OAuthException","code":9007,"error_subcode":2207027}}' }
      end
      if req.method == "POST" then return { status = 200, body = '{"id":"17900001"}' } end
      return { status = 200, body = '{"status_code":"FINISHED"}' }
    end, { sleep = function(s) sleeps[#sleeps + 1] = s end })
    local r, err = ig:post_image(TOKEN, { image_url = IMG, wait = { initial = 1, max_interval = 2, budget = 5 } })
    assert.is_nil(r)
    assert.equal(9007, err.code)
    assert.same({ 1, 2, 2 }, sleeps)
  end)
end)

describe("review 13: post_* reads the container back after any publish error but not-ready", function()
  local function publishing(publish_answer, container_after)
    local published = false
    local ig, sent = scripted(function(req)
      if req.url:find("media_publish", 1, true) then
        published = true
        return publish_answer
      end
      if req.method == "POST" then return { status = 200, body = '{"id":"17900001"}' } end
      return { status = 200, body = '{"status_code":"' .. (published and container_after or "FINISHED") .. '"}' }
    end)
    return ig, sent
  end

  it("an Instagram server error (-1/2207001) on a post that went live is published", function()
    local ig, sent = publishing({ status = 400, body = '{"error":{"message":"Instagram server error. Try again.",'
      .. '"type":"OAuthException","code":-1,"error_subcode":2207001}}' }, "PUBLISHED")
    local r, err = ig:post_image(TOKEN, { image_url = IMG, wait = { initial = 0 } })
    assert.is_nil(err)
    assert.same({ published = true, container_id = "17900001" }, r)
    local publishes = 0
    for _, req in ipairs(sent) do
      if req.url:find("media_publish", 1, true) then publishes = publishes + 1 end
    end
    assert.equal(1, publishes)
  end)

  it("a 400 on a post that did not go live is the error, with what the container says", function()
    local ig = publishing({ status = 400, body = '{"error":{"message":"Create media fail",'
      .. '"type":"OAuthException","code":-1,"error_subcode":2207032}}' }, "FINISHED")
    local r, err = ig:post_image(TOKEN, { image_url = IMG, wait = { initial = 0 } })
    assert.is_nil(r)
    assert.equal(2207032, err.subcode)
    assert.equal("ready", err.reconciled)
  end)
end)

describe("review 13: odd answers", function()
  it("parses the subcode of a container ERROR from a whole 7-digit number only", function()
    local ig = scripted(json_answer('{"status_code":"ERROR","status":"Error 12345678: code 2207082"}'))
    local st = assert(ig:container_status(TOKEN, "1"))
    assert.equal(2207082, st.subcode)
  end)

  it("reads the state from `status` when status_code is empty, absent or in lower case", function()
    local cases = {
      { '{"status_code":"","status":"In Progress: Media is still being processed."}', "IN_PROGRESS" },
      { '{"status":"Finished: Media has been uploaded and it is ready to be published."}', "FINISHED" },
      { '{"status_code":null,"status":"Published: Media has been successfully published."}', "PUBLISHED" },
      { '{"status_code":"","status":"Expired: not published within 24 hours"}', "EXPIRED" },
      { '{"status_code":"","status":"Error: Media download has failed. 2207003"}', "ERROR" },
      { '{"status_code":"finished"}', "FINISHED" },
    }
    for _, c in ipairs(cases) do
      local ig = scripted(json_answer(c[1]))
      local st, err = ig:container_status(TOKEN, "1")
      assert.is_nil(err, c[1])
      assert.equal(c[2], st.status_code, c[1])
    end
    for _, body in ipairs({ '{"status_code":"SCHEDULED"}', '{"status":"Errors happen"}', '{}' }) do
      local ig = scripted(json_answer(body))
      local st, err = ig:container_status(TOKEN, "1")
      assert.is_nil(st, body)
      assert.equal("response", err.kind, body)
    end
  end)

  it("decodes the usage headers with integer counts", function()
    local ig = scripted(function()
      return { status = 200, body = '{"id":"1"}', headers = { ["X-App-Usage"] = '{"call_count":28,"total_time":5}',
        ["X-Business-Use-Case-Usage"] = '{"17841400000000001":[{"type":"instagram","call_count":95,'
          .. '"estimated_time_to_regain_access":0}]}' } }
    end)
    assert(ig:me(TOKEN))
    local usage = ig:usage()
    assert.equal("28", tostring(usage.app.call_count))
    assert.equal("95", tostring(usage.business["17841400000000001"][1].call_count))
  end)

  it("keeps a metric whose values are objects (online_followers: hour -> count)", function()
    local ig = scripted(json_answer('{"data":[{"name":"online_followers","period":"lifetime","values":'
      .. '[{"value":{"0":12,"1":7},"end_time":"2025-05-01T07:00:00+0000"}]}]}'))
    local r = assert(ig:account_insights(TOKEN, { metrics = "online_followers", period = "lifetime" }))
    assert.is_table(r.online_followers)
    assert.same({ ["0"] = 12, ["1"] = 7 }, r.online_followers.series[1].value)
    assert.is_nil(r.online_followers.value)
  end)

  it("keeps a missing value nil and a reported 0 zero", function()
    local ig = scripted(json_answer('{"data":[{"name":"reach","period":"day","total_value":{"value":0}},'
      .. '{"name":"views","period":"day","total_value":{}}]}'))
    local r = assert(ig:account_insights(TOKEN, { metrics = "reach,views,likes", metric_type = "total_value" }))
    assert.equal(0, r.reach.value)
    assert.is_nil(r.views.value)
    assert.is_nil(r.likes)
  end)

  it("refuses a deprecated metric in any case", function()
    local ig, sent = scripted(json_answer('{"data":[]}'))
    local ok, err = pcall(ig.media_insights, ig, TOKEN, "1", "reach,Impressions")
    assert.is_false(ok)
    assert.matches("^ig:media_insights: .*views", tostring(err))
    assert.equal(0, #sent)
  end)
end)
