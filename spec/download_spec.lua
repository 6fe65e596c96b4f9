-- ig:download against the fake's CDN (signed /cdn/... links on its HTTPS port, oe= expiry):
-- streamed to a file by the C core, or to a function; every refusal and failure leaves no file.
local Fake = require "spec.support.fake"
local Nginx = require "spec.support.nginx"
local Client = require "spec.support.client"

local HOSTS = { "127.0.0.1" } -- the fake CDN's host

local function listing(dir)
  local p = io.popen("ls -A " .. Nginx.q(dir))
  local out = p:read("*a")
  p:close()
  return out
end

describe("ig:download on a transport that does not stream (a function; cosockets alike)", function()
  local instagram = require "instagram"
  local dir
  before_each(function() dir = Nginx.mktemp_dir("download") end)
  after_each(function() Nginx.run("rm -rf " .. Nginx.q(dir)) end)

  it("keeps opts.max_bytes: a larger body fails (kind response) and leaves no file", function()
    local seen
    local ig = instagram.new({ app_id = "1", redirect_uri = "https://localhost/", transport = function(req)
      seen = req
      return { status = 200, headers = {}, body = string.rep("v", 5000) }
    end })
    local res = assert(ig:download("https://scontent.cdninstagram.com/v.mp4?oe=1", dir .. "/ok.mp4"))
    assert.equal(5000, res.bytes)
    assert.is_nil(seen.url:find("access_token", 1, true))
    local none, err = ig:download("https://scontent.cdninstagram.com/v.mp4?oe=1", dir .. "/big.mp4",
      { max_bytes = 1000 })
    assert.is_nil(none)
    assert.equal("response", err.kind)
    assert.matches("larger than 1000 bytes", err.message, 1, true)
    assert.equal("ok.mp4", listing(dir):gsub("%s+$", ""))
  end)
end)

describe("ig:download", function()
  local f, ig, dir, token, items
  setup(function()
    f = Fake.start({ quiet = true })
  end)
  teardown(function() if f then f:stop() end end)
  before_each(function()
    f:reset()
    ig = Client.new(f)
    dir = Nginx.mktemp_dir("download")
    token = f:issue_token("jayposiris")
    items = assert(ig:media(token, { fields = "id,media_type,media_url,thumbnail_url" })).data
  end)
  after_each(function()
    ig:close()
    Nginx.run("rm -rf " .. Nginx.q(dir))
  end)

  local function path_of(url) return (url:match("^https://[^/]+(/[^?]+)")) end

  it("writes the file, sends no token, and says how many bytes", function()
    local url = items[1].media_url
    assert.matches("^https://127%.0%.0%.1:%d+/cdn/.*[?&]oe=%x+", url)
    f:clear_log()
    local res = assert(ig:download(url, dir .. "/1.jpg", { hosts = HOSTS }))
    local body = assert(Nginx.read_file(dir .. "/1.jpg"))
    assert.same({ bytes = #body, status = 200 }, res)
    assert.matches("^FAKE%-MEDIA ", body)
    assert.equal("1.jpg", listing(dir):gsub("%s+$", "")) -- no temp file left
    local log = f:log(path_of(url))
    assert.equal(1, #log)
    assert.is_nil(log[1].args.access_token)
    assert.is_nil(log[1].headers.authorization)
    assert.not_matches(token, log[1].query, 1, true)
  end)

  it("a large file streams to disk; over max_bytes it fails and leaves nothing", function()
    local url = items[1].media_url
    f:fault(path_of(url), { mode = "oversize", bytes = 3 * 1024 * 1024 })
    local res = assert(ig:download(url, dir .. "/big", { hosts = HOSTS }))
    assert.equal(3 * 1024 * 1024, res.bytes)
    assert.equal(3 * 1024 * 1024, #assert(Nginx.read_file(dir .. "/big")))
    local none, err = ig:download(url, dir .. "/small", { hosts = HOSTS, max_bytes = 1024 * 1024 })
    assert.is_nil(none)
    assert.equal("response", err.kind)
    assert.matches("larger than 1048576 bytes", err.message, 1, true)
    -- chunked, without a length: counted as it comes
    f:fault(path_of(url), { mode = "oversize", bytes = 3 * 1024 * 1024, length = false })
    none, err = ig:download(url, dir .. "/small", { hosts = HOSTS, max_bytes = 1024 * 1024 })
    assert.is_nil(none)
    assert.equal("response", err.kind)
    assert.equal("big", listing(dir):gsub("%s+$", ""))
  end)

  it("a slow file arrives whole; a truncated one fails and leaves nothing", function()
    local url = items[1].media_url
    f:fault(path_of(url), { mode = "trickle", interval = 0.01 })
    local res = assert(ig:download(url, dir .. "/slow", { hosts = HOSTS }))
    assert.matches("^FAKE%-MEDIA ", assert(Nginx.read_file(dir .. "/slow")))
    assert.equal(#Nginx.read_file(dir .. "/slow"), res.bytes)
    for _, mode in ipairs({ "fin_mid_body", "reset_mid_body", "bad_length_long" }) do
      f:fault(path_of(url), { mode = mode })
      local none, err = ig:download(url, dir .. "/cut", { hosts = HOSTS })
      assert.is_nil(none, mode)
      assert.equal("network", err.kind, mode)
    end
    assert.equal("slow", listing(dir):gsub("%s+$", ""))
  end)

  it("an expired signature is recognisable (err.expired_url), and nothing is written", function()
    local url = items[1].media_url
    f:advance(5 * 86400)
    local none, err = ig:download(url, dir .. "/x.jpg", { hosts = HOSTS })
    assert.is_nil(none)
    assert.equal("http", err.kind)
    assert.equal(403, err.status)
    assert.is_true(err.expired_url)
    assert.equal("instagram: http error 403: URL signature expired", tostring(err))
    assert.equal("", listing(dir))
    -- a fresh read of the item gives a URL that works again
    local fresh = assert(ig:get(token, items[1].id, { fields = "media_url" }))
    assert.truthy(ig:download(fresh.media_url, dir .. "/x.jpg", { hosts = HOSTS }))
  end)

  it("another 403 is not an expired URL; a redirect is never followed", function()
    local url = items[1].media_url
    local none, err = ig:download(url:gsub("oh=00_%x+", "oh=00_0bad"), dir .. "/x", { hosts = HOSTS })
    assert.is_nil(none)
    assert.equal(403, err.status)
    assert.is_nil(err.expired_url)
    f:fault(path_of(url), { status = 302, headers = { Location = f.alt .. "/elsewhere.jpg" } })
    none, err = ig:download(url, dir .. "/x", { hosts = HOSTS })
    assert.is_nil(none)
    assert.equal(302, err.status)
    assert.equal(0, #f:log(function(e) return e.port == f.ports.alt end))
    assert.equal("", listing(dir))
  end)

  it("to a function: the chunks in order, no file left anywhere", function()
    local url = items[2].media_url or items[1].media_url
    f:fault(path_of(url), { mode = "oversize", bytes = 300000 })
    local chunks = {}
    local res = assert(ig:download(url, function(c) chunks[#chunks + 1] = c end, { hosts = HOSTS }))
    local all = table.concat(chunks)
    assert.equal(300000, #all)
    assert.equal(300000, res.bytes)
    assert.matches('^{"data":"aaa', all)
  end)

  it("a directory it cannot write to: kind store, one message", function()
    local none, err = ig:download(items[1].media_url, dir .. "/missing/x.jpg", { hosts = HOSTS })
    assert.is_nil(none)
    assert.equal("store", err.kind)
    assert.matches("^cannot write " .. dir:gsub("%p", "%%%0") .. "/missing/x%.jpg: No such file or directory$",
      err.message)
  end)

  it("in ig:batch, several at once", function()
    local calls = {}
    for i = 1, 3 do
      calls[i] = { "download", items[i].media_url, dir .. "/" .. i, { hosts = HOSTS } }
    end
    local results = ig:batch(calls)
    for i = 1, 3 do
      assert.is_true(results[i].ok, tostring(results[i].err))
      assert.equal(#Nginx.read_file(dir .. "/" .. i), results[i].value.bytes)
    end
  end)

  it("in ig:batch, a call that raises abandons the others: their temp files are removed", function()
    local calls = { { "download", items[1].media_url, function() error("sink refused", 0) end, { hosts = HOSTS } } }
    for i = 2, 3 do calls[i] = { "download", items[i].media_url, dir .. "/" .. i, { hosts = HOSTS } } end
    assert.has_error(function() ig:batch(calls) end, "sink refused")
    assert.equal("", listing(dir))
  end)

  it("refuses, before any request, what is not https on a media host", function()
    f:clear_log()
    local url = items[1].media_url
    assert.error_matches(function() ig:download(url, dir .. "/x") end,
      "^ig:download: url must be an https:// URL on %*%.cdninstagram%.com, %*%.fbcdn%.net$")
    assert.error_matches(function() ig:download((url:gsub("^https:", "http:")), dir .. "/x", { hosts = HOSTS }) end,
      "^ig:download: url must be an https:// URL on 127%.0%.0%.1$")
    assert.error_matches(function()
      ig:download("https://scontent.cdninstagram.com.evil.example/x.jpg", dir .. "/x")
    end, "^ig:download: url must be")
    assert.error_matches(function() ig:download("https://user@x.fbcdn.net/x.jpg", dir .. "/x") end,
      "^ig:download: url must be")
    -- a host that only looks like a CDN name to a loose parser: refused here, not left to libcurl
    for _, bad in ipairs({ "https://127.0.0.1\\.fbcdn.net/x.jpg", "https://evil.example%2f.fbcdn.net/x.jpg",
      "https://evil.example x.fbcdn.net/x.jpg", "https://evil.example;.fbcdn.net/x.jpg",
      "https://127.0.0.1:1\\.fbcdn.net/x.jpg" }) do
      assert.error_matches(function() ig:download(bad, dir .. "/x") end, "^ig:download: url must be", nil, bad)
    end
    assert.error_matches(function() ig:download(url, 42) end, "^ig:download: dest must be a file path or a function$")
    assert.error_matches(function() ig:download(url, dir .. "/x", { hosts = HOSTS, max_bytes = 0 }) end,
      "^ig:download: opts.max_bytes must be a positive integer$")
    assert.equal(0, #f:log())
  end)
end)
