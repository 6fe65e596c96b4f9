-- Media, paging, children and plain Graph GETs against the fake Instagram.
local Fake = require "spec.support.fake"
local Clients = require "spec.support.client"

describe("media", function()
  local fake, token

  setup(function() fake = Fake.start({ quiet = true }) end)
  teardown(function() if fake then fake:stop() end end)

  before_each(function()
    fake:reset()
    token = fake:issue_token("jayposiris", { kind = "long" })
  end)

  local function client(extra)
    return Clients.new(fake, extra)
  end

  local function media_requests()
    return fake:log(function(r) return r.path:match("/media$") end)
  end

  it("returns one page with the default fields", function()
    local page = assert(client():media(token, { limit = 3 }))
    assert.equal(3, #page.data)
    for _, item in ipairs(page.data) do
      assert.matches("^%d+$", item.id)
      assert.is_string(item.media_type)
    end
    assert.is_string(page.paging.next)
    assert.matches("media_type", media_requests()[1].args.fields)
  end)

  it("honours fields as an array or a string", function()
    local ig = client()
    local page = assert(ig:media(token, { fields = { "id", "timestamp" }, limit = 2 }))
    assert.is_string(page.data[1].timestamp)
    assert.is_nil(page.data[1].media_url)
    assert(ig:media(token, { fields = "id,caption" }))
    local log = media_requests()
    assert.equal("id,timestamp", log[1].args.fields)
    assert.equal("id,caption", log[2].args.fields)
  end)

  it("visits a 7-item, 3-page set exactly once with each_media", function()
    local ig = client({ graph_version = "v21.0" })
    local seen, count = {}, 0
    for item, err in ig:each_media(token, { limit = 3 }) do
      assert.is_nil(err)
      assert.is_nil(seen[item.id], "visited twice: " .. item.id)
      seen[item.id] = true
      count = count + 1
    end
    assert.equal(7, count)
    local log = media_requests()
    assert.equal(3, #log)
    for _, r in ipairs(log) do
      assert.matches("^/v21%.0/", r.path)
      assert.equal("3", r.args.limit)
    end
  end)

  it("walks pages with next_page and ends with nil", function()
    local ig = client()
    local page = assert(ig:media(token, { limit = 5 }))
    local second = assert(ig:next_page(page))
    assert.equal(2, #second.data)
    assert.is_nil(ig:next_page(second))
  end)

  it("never sends the token to a foreign paging.next host", function()
    fake:config({ foreign_next = true })
    local ig = client()
    local count = 0
    for item in ig:each_media(token, { limit = 3 }) do
      assert.is_string(item.id)
      count = count + 1
    end
    assert.equal(7, count)
    local alt_port = tonumber(fake.alt:match(":(%d+)$"))
    assert.equal(0, #fake:log(function(r) return r.port == alt_port end))
    for _, r in ipairs(media_requests()) do
      assert.is_not.equal(alt_port, r.port)
    end
  end)

  describe("next_page follows a Graph link as it was sent", function()
    local function first_page(ig, path, next_url, cursors)
      local body = require("cjson").encode({ data = { { id = "1" } },
        paging = { next = next_url, cursors = cursors } })
      fake:fault(path, { status = 200, body = body, times = 1 })
      return assert(ig:media(token))
    end

    it("never follows . or .. segments, raw or percent-encoded, out of a base path", function()
      local ig = client({ endpoints = { graph = fake.https .. "/ig" } })
      for _, link in ipairs({ "/ig/../admin?after=X", "/ig/me/../../admin", "/ig/%2e%2e/admin",
          "/ig/me/%2E/media", "/ig/./me/media" }) do
        fake:clear_log()
        local page = first_page(ig, "/ig/me/media", fake.https .. link)
        local nxt, err = ig:next_page(page)
        assert.is_nil(nxt, link)
        assert.equal("response", err.kind, link)
        assert.equal(1, #fake:log(), link) -- only the first page was requested
      end
      -- with a cursor, the page after is asked for on the client's own path instead
      fake:clear_log()
      local page = first_page(ig, "/ig/me/media", fake.https .. "/ig/../admin", { after = "CUR" })
      fake:fault("/ig/me/media", { status = 200, body = '{"data":[]}', times = 1 })
      assert(ig:next_page(page))
      local log = fake:log()
      assert.equal(2, #log)
      assert.equal("/ig/me/media", log[2].path)
      assert.equal("CUR", log[2].args.after)
    end)

    it("follows only links under the base path, not under a longer name that starts with it", function()
      local ig = client({ endpoints = { graph = fake.https .. "/ig" } })
      -- /igx/... is outside /ig: never rewritten into /ig/x/...; without a cursor it is an error
      local page = first_page(ig, "/ig/me/media", fake.https .. "/igx/me/media?after=X")
      local nxt, err = ig:next_page(page)
      assert.is_nil(nxt)
      assert.equal("response", err.kind)
      assert.equal(1, #fake:log())
      -- with a cursor, the page after is asked for on the client's own path
      fake:clear_log()
      page = first_page(ig, "/ig/me/media", fake.https .. "/igx/me/media?after=X", { after = "CUR" })
      fake:fault("/ig/me/media", { status = 200, body = '{"data":[]}', times = 1 })
      assert(ig:next_page(page))
      local log = fake:log()
      assert.equal(2, #log)
      assert.equal("/ig/me/media", log[2].path)
      assert.equal("CUR", log[2].args.after)
      -- the base path itself, and a link under it, are followed
      fake:clear_log()
      page = first_page(ig, "/ig/me/media", fake.https .. "/ig/me/media?after=L")
      fake:fault("/ig/me/media", { status = 200, body = '{"data":[]}', times = 1 })
      assert(ig:next_page(page))
      log = fake:log()
      assert.equal("/ig/me/media", log[2].path)
      assert.equal("L", log[2].args.after)
    end)

    it("decodes each segment once before encoding it, and keeps + and escapes in the query as sent", function()
      local ig = client()
      local page = first_page(ig, "/me/media", fake.https .. "/me/me%64ia?after=a+b%2Bc%3d&limit=3&access_token=X")
      fake:fault("/me/media", { status = 200, body = '{"data":[]}', times = 1 })
      assert(ig:next_page(page))
      local log = fake:log("/me/media")
      assert.equal(2, #log)
      assert.matches("after=a+b%2Bc%3D", log[2].query, 1, true)
      assert.matches("limit=3", log[2].query, 1, true)
      assert.equal(1, select(2, log[2].query:gsub("access_token=", "")))
      assert.equal(token, log[2].args.access_token)
    end)
  end)

  it("stops with an error on a cursor loop", function()
    fake:config({ cursor_loop = true })
    local ig = client()
    local items, failure = 0, nil
    for item, err in ig:each_media(token, { limit = 3 }) do
      if not item then
        failure = err
      else
        items = items + 1
      end
    end
    assert.is_table(failure)
    assert.equal("response", failure.kind)
    assert.matches("loop", failure.message)
    assert.is_true(items >= 3)
    assert.is_true(#media_requests() <= 3)
  end)

  it("yields the error once when the first page fails", function()
    local ig = client()
    local calls, failure = 0, nil
    for item, err in ig:each_media("IGQVJbad") do
      calls = calls + 1
      assert.is_false(item)
      failure = err
    end
    assert.equal(1, calls)
    assert.equal(190, failure.code)
  end)

  it("skips data items that are not objects, so item == false always comes with err", function()
    fake:fault("/me/media", { status = 200, times = 1,
      body = '{"data":[{"id":"1"},false,null,0,"x",{"id":"2"}],"paging":{}}' })
    local ids = {}
    for item, err in client():each_media(token) do
      assert.is_nil(err)
      assert.is_table(item)
      ids[#ids + 1] = item.id
    end
    assert.same({ "1", "2" }, ids)
  end)

  it("rejects a page without a data array, with its status", function()
    fake:fault("/me/media", { status = 200, body = '{"paging":{}}' })
    local page, err = client():media(token)
    assert.is_nil(page)
    assert.equal("response", err.kind)
    assert.equal(200, err.status)
  end)

  it("lists a carousel's children", function()
    local ig = client()
    local album
    for item in ig:each_media(token) do
      if item.media_type == "CAROUSEL_ALBUM" then album = item end
    end
    assert.is_table(album)
    local children = assert(ig:children(token, album.id))
    assert.equal(3, #children.data)
    for _, child in ipairs(children.data) do assert.matches("^%d+$", child.id) end
  end)

  it("reads any Graph path with get, and remembers the usage headers", function()
    local ig = client()
    assert.is_nil(ig:usage())
    local me = assert(ig:get(token, "me", { fields = { "id", "username" } }))
    assert.equal("jayposiris", me.username)
    local usage = ig:usage()
    assert.is_table(usage)
    assert.is_number(usage.app.call_count)
  end)

  it("raises on misuse", function()
    local ig = client()
    assert.has_error(function() ig:get(token, "https://evil.example/me") end)
    assert.has_error(function() ig:get(token, "me?x=1") end)
    assert.has_error(function() ig:get(token, "me", { access_token = "x" }) end)
    assert.has_error(function() ig:media(token, { limit = 0 }) end, "ig:media: opts.limit must be a positive integer")
    assert.has_error(function() ig:next_page({ data = {} }) end,
      "ig:next_page: page must be a page returned by this client")
    assert.has_error(function() ig:children(token, {}) end)
  end)
end)
