-- The `instagram` command end to end: bin/instagram in a child process against the fake
-- Instagram over HTTPS, the redirect pasted on stdin; and its pure helpers.
local Fake = require "spec.support.fake"
local Nginx = require "spec.support.nginx"
local Cli = require "spec.support.cli"
local cli = require "instagram.cli"
local core = require "instagram.core"
local json = require "instagram.json"
local instagram = require "instagram"

local function mode_of(path)
  local mode, kind = core.fs_mode(path)
  return { mode, kind }
end

local function one_line(r)
  local lines = Cli.lines(r.stderr)
  assert.equal(1, #lines, "expected one line on stderr, got:\n" .. r.stderr)
  assert.not_matches("traceback", r.stderr)
  return lines[1]
end

describe("instagram command: helpers", function()
  it("pasted: a URL or query is checked, a bare code (with or without #_) is not", function()
    assert.same({ "https://localhost/auth/?code=AB&state=s#_", true },
      { cli.pasted("  https://localhost/auth/?code=AB&state=s#_ \n") })
    assert.same({ "code=AQ-b_c", false }, { cli.pasted("AQ-b_c#_") })
    assert.same({ "code=AQ-b_c", false }, { cli.pasted("AQ-b_c") })
    assert.same({ "code=AB&state=x", true }, { cli.pasted("code=AB&state=x") })
    local none, msg = cli.pasted("   ")
    assert.is_nil(none)
    assert.matches("nothing was pasted", msg)
  end)

  it("is_loopback: 127/8, ::1 and localhost only", function()
    assert.is_true(cli.is_loopback("http://127.0.0.1:8080/x"))
    assert.is_true(cli.is_loopback("http://127.9.8.7"))
    assert.is_true(cli.is_loopback("http://[::1]:99/"))
    assert.is_true(cli.is_loopback("http://LocalHost/"))
    assert.is_false(cli.is_loopback("http://127.0.0.1.evil.example/"))
    assert.is_false(cli.is_loopback("http://user@example.com/"))
    assert.is_false(cli.is_loopback("http://localhost.example/"))
    assert.is_false(cli.is_loopback("http://[::2]/"))
    assert.is_false(cli.is_loopback("not a url"))
  end)

  it("endpoints: NAME=URL from the environment (commas or spaces) and flags, flags win", function()
    assert.same({ graph = "https://b", token = "https://t", authorize = "https://a" },
      cli.endpoints("graph=https://g, token=https://t authorize=https://a", { "graph=https://b" }))
    local none, msg = cli.endpoints(nil, { "media=https://x" })
    assert.is_nil(none)
    assert.matches("bad endpoint 'media=https://x'", msg, 1, true)
    assert.is_nil((cli.endpoints("graph", nil)))
  end)

  it("params: KEY=VALUE, the value may hold '='", function()
    assert.same({ fields = "id,username", q = "a=b" }, cli.params({ "fields=id,username", "q=a=b" }))
    assert.is_nil((cli.params({ "novalue" })))
  end)

  it("encode: exact IDs and unescaped slashes", function()
    local v = json.decode('{"id":17841405793187219,"url":"https://x/y\\\\/z"}')
    local text = cli.encode(json.normalize_ids(v))
    assert.same(json.decode(text), v)
    assert.matches('"id":"17841405793187219"', text, 1, true)
    assert.matches('"url":"https://x/y\\\\/z"', text, 1, true)
  end)

  it("when: a date and a rounded distance", function()
    local t = 1800000000
    assert.equal("2027-01-15 08:00 UTC (in 58 days)", cli.when(t, t - 58 * 86400 + 1))
    assert.equal("2027-01-15 08:00 UTC (in 58 days)", cli.when(t, t - 58 * 86400 - 1))
    assert.equal("2027-01-15 08:00 UTC (in 5 hours)", cli.when(t, t - 5 * 3600 + 60))
    assert.equal("2027-01-15 08:00 UTC (3 days ago)", cli.when(t, t + 3 * 86400))
    assert.equal("unknown", cli.when(nil, t))
  end)

  it("tokenfile: default path, round trip at 0600, and what it refuses", function()
    local tokenfile = require "instagram.cli.tokenfile"
    local env = { XDG_CONFIG_HOME = "/x/conf", HOME = "/home/u" }
    local function getenv(k) return env[k] end
    assert.equal("/x/conf/instagram/token.json", tokenfile.default_path(getenv))
    env.XDG_CONFIG_HOME = "relative" -- the XDG spec says to ignore a relative path
    assert.equal("/home/u/.config/instagram/token.json", tokenfile.default_path(getenv))
    env.HOME = nil
    assert.is_nil(tokenfile.default_path(getenv))

    local dir = Cli.tempdir()
    local path = dir .. "/a/b/token.json"
    assert(tokenfile.save(path, { access_token = "IGQVJx", user_id = "17841405793187219", issued_at = 1,
      secret_field = "not kept" }))
    assert.same({ 448, "dir" }, mode_of(dir .. "/a"))
    assert.same({ 384, "file" }, mode_of(path))
    assert.same({ access_token = "IGQVJx", user_id = "17841405793187219", issued_at = 1 }, tokenfile.load(path))
    Cli.write_file(dir .. "/garbage.json", "not json")
    assert(Nginx.run("chmod 600 " .. Nginx.q(dir .. "/garbage.json")))
    assert.same({ nil, "the token file " .. dir .. "/garbage.json holds no token (run: instagram login)", "missing" },
      { tokenfile.load(dir .. "/garbage.json") })
    local none, msg, why = tokenfile.load(dir .. "/a")
    assert.is_nil(none)
    assert.equal("the token file " .. dir .. "/a is not a regular file", msg)
    assert.equal("bad", why)
    Cli.write_file(dir .. "/file", "x")
    none, msg = tokenfile.save(dir .. "/file/token.json", { access_token = "x" })
    assert.is_nil(none)
    assert.equal(dir .. "/file is not a directory", msg)
    Cli.rmdir(dir)
  end)

  it("redact: the secret out of every string, at any depth, in a copy", function()
    local v = { a = "x?access_token=SECRET1&y", b = { "SECRET1", { c = "pre SECRET1 SECRET1" } }, n = 5 }
    local r = cli.redact(v, "SECRET1")
    assert.same({ a = "x?access_token=[redacted]&y", b = { "[redacted]", { c = "pre [redacted] [redacted]" } },
      n = 5 }, r)
    assert.equal("SECRET1", v.b[1])
  end)

  it("exit_code: 3 when authentication is needed, 2 for unusable input, 1 otherwise", function()
    local errors = require "instagram.errors"
    assert.equal(3, cli.exit_code(errors.new("api", "x", { code = 190, token_invalid = true })))
    assert.equal(3, cli.exit_code(errors.new("denied", "x")))
    assert.equal(2, cli.exit_code(errors.new("state", "x")))
    assert.equal(2, cli.exit_code(errors.new("callback", "x")))
    assert.equal(3, cli.exit_code(errors.new("api", "code used", { code = 400 }), true))
    assert.equal(1, cli.exit_code(errors.new("api", "code used", { code = 400 })))
    assert.equal(1, cli.exit_code(errors.new("network", "x"), true))
    assert.equal(1, cli.exit_code(errors.new("signature", "x")))
  end)
end)

describe("instagram command against the fake", function()
  local f, dir, app, token_file
  setup(function() f = Fake.start({ quiet = true }) end)
  teardown(function() if f then f:stop() end end)
  before_each(function()
    f:reset()
    dir = Cli.tempdir()
    app = f.apps.basic_display
    token_file = dir .. "/token.json"
  end)
  after_each(function() Cli.rmdir(dir) end)

  -- the flags a deployment behind a proxy would use; the secret comes from the environment
  local function flags(extra)
    local eps = f:endpoints("https")
    local argv = {
      "--api", "basic_display", "--app-id", app.client_id, "--redirect-uri", app.redirect_uri,
      "--endpoint", "authorize=" .. eps.authorize, "--endpoint", "token=" .. eps.token,
      "--endpoint", "graph=" .. eps.graph, "--ca-file", f.ca_file, "--token-file", token_file,
    }
    for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
    return argv
  end
  local function env(extra)
    local e = { INSTAGRAM_APP_SECRET = app.secret }
    for k, v in pairs(extra or {}) do e[k] = v end
    return e
  end
  local function run(args, opts)
    opts = opts or {}
    opts.env = opts.env or env()
    return Cli.run(dir, args, opts)
  end
  -- what the browser does: load the Authorization Window URL, read the redirect (never followed)
  local function browse(url)
    assert.equal(f.https, url:sub(1, #f.https))
    local status, headers = Nginx.http("GET", f.http .. url:sub(#f.https + 1))
    assert.equal(302, status)
    return headers.location
  end
  local function login(args, answer, e)
    return Cli.interactive(dir, args or flags({ "login" }), answer or browse, { env = e or env() })
  end
  local function stored()
    local text = assert(Nginx.read_file(token_file))
    return assert(json.decode(text)), text
  end
  local function exchanges()
    return #f:log("/oauth/access_token")
  end

  describe("login", function()
    it("prints the URL, takes the pasted redirect with #_, saves a long-lived token 0600 and says who", function()
      local r, url = login()
      assert.equal(0, r.code, r.stderr)
      assert.matches("^https://127%.0%.0%.1:%d+/oauth/authorize%?client_id=684477648739411&", url)
      assert.matches("Logged in as jayposiris (17841405793187219), basic_display API.", r.stdout, 1, true)
      assert.matches("Long%-lived token, expires %d+%-%d+%-%d+ %d+:%d+ UTC %(in 60 days%)", r.stdout)
      assert.equal(384, (core.fs_mode(token_file))) -- 0600
      local t, text = stored()
      assert.matches('"user_id":"17841405793187219"', text, 1, true)
      assert.equal("jayposiris", t.username)
      assert.equal("basic_display", t.api)
      assert.equal("long", f:token_info(t.access_token).kind)
      assert.equal(1, exchanges())
      assert.equal(1, #f:log("/access_token"))
      assert.not_matches(t.access_token, r.stdout .. r.stderr, 1, true)
    end)

    it("--short keeps the short-lived token", function()
      local r = login(flags({ "login", "--short" }))
      assert.equal(0, r.code, r.stderr)
      assert.matches("Short-lived token, valid for about an hour; saved to " .. token_file, r.stdout, 1, true)
      assert.equal("short", f:token_info(stored().access_token).kind)
      assert.equal(0, #f:log("/access_token"))
    end)

    it("takes the query without #_, with endpoints from INSTAGRAM_ENDPOINTS", function()
      local eps = f:endpoints("https")
      local args = { "login", "--api", "basic_display", "--ca-file", f.ca_file, "--token-file", token_file }
      local r = login(args, function(url)
        return (browse(url):match("%?(.*)#_$"))
      end, env({
        INSTAGRAM_APP_ID = app.client_id, INSTAGRAM_REDIRECT_URI = app.redirect_uri,
        INSTAGRAM_ENDPOINTS = "authorize=" .. eps.authorize .. ",token=" .. eps.token .. " graph=" .. eps.graph,
      }))
      assert.equal(0, r.code, r.stderr)
      assert.equal("", r.stderr)
      assert.equal("long", f:token_info(stored().access_token).kind)
    end)

    it("takes just the code, and warns that its state could not be checked", function()
      local r = login(nil, function(url)
        return (browse(url):match("code=([^&#]+)")) .. "#_"
      end)
      assert.equal(0, r.code, r.stderr)
      assert.matches("warning: only a code was pasted, so its state cannot be checked", one_line(r), 1, true)
    end)

    it("refuses a redirect whose state is not this login's: exit 2, one line, no exchange", function()
      local r = login(nil, function(url)
        return (browse(url):gsub("state=[^&#]+", "state=someone-elses"))
      end)
      assert.equal(2, r.code)
      assert.equal("instagram: state error: callback state does not match", one_line(r))
      assert.equal(0, exchanges())
      assert.is_nil(Nginx.read_file(token_file))
    end)

    it("refuses a redirect without state: exit 2", function()
      local r = login(nil, function(url)
        return (browse(url):gsub("&state=[^&#]+", ""))
      end)
      assert.equal(2, r.code)
      assert.equal("instagram: state error: callback has no state", one_line(r))
      assert.equal(0, exchanges())
    end)

    it("a denied authorization: exit 3 with Instagram's description", function()
      f:config({ authorize_mode = "deny" })
      local r = login()
      assert.equal(3, r.code)
      assert.equal("instagram: denied error: The user denied your request", one_line(r))
      assert.equal(0, exchanges())
    end)

    it("garbage instead of a URL: exit 2, one line", function()
      for _, garbage in ipairs({ "hello world", "https://localhost/auth/#_" }) do
        local r = login(nil, function() return garbage end)
        assert.equal(2, r.code)
        assert.equal("instagram: state error: callback has no state", one_line(r))
      end
      local r = login(nil, function(url)
        return "https://localhost/auth/?state=" .. url:match("state=([^&]+)")
      end)
      assert.equal(2, r.code)
      assert.equal("instagram: callback error: callback has no code", one_line(r))
      r = login(nil, function() return "" end)
      assert.equal(2, r.code)
      assert.matches("nothing was pasted", one_line(r))
      assert.equal(0, exchanges())
    end)

    it("a code used twice: the second login fails with exit 3 and the token endpoint's message", function()
      local code
      local r = login(nil, function(url)
        local location = browse(url)
        code = location:match("code=([^&#]+)")
        return location
      end)
      assert.equal(0, r.code, r.stderr)
      local first = stored().access_token
      r = login(nil, function() return code end)
      assert.equal(3, r.code)
      local lines = Cli.lines(r.stderr)
      assert.equal(2, #lines, r.stderr) -- the bare-code warning, then the error
      assert.equal("instagram: api error 400 (OAuthException): Matching code was not found or was already used",
        lines[2])
      assert.not_matches(code, r.stderr, 1, true)
      assert.equal(2, exchanges()) -- one POST each, never retried
      assert.equal(first, stored().access_token) -- the file was left alone
    end)

    it("the long-lived exchange fails: the short-lived token is kept, and the failure said (exit 1)", function()
      f:fault("/access_token", { status = 500, times = 10 })
      local r = login()
      assert.equal(1, r.code)
      assert.equal("instagram: no long-lived token: api error 2 (OAuthException): An unexpected error has occurred. "
        .. "Please retry your request later.; the token from the code was saved to " .. token_file, one_line(r))
      assert.equal("short", f:token_info(stored().access_token).kind)
      assert.equal(384, (core.fs_mode(token_file)))
      assert.equal(1, exchanges())
    end)

    it("no credentials: exit 2 naming what is missing, before any request", function()
      local r = run({ "login", "--token-file", token_file }, { env = {} })
      assert.equal(2, r.code)
      assert.equal("instagram: login needs --app-id (or INSTAGRAM_APP_ID), --redirect-uri (or "
        .. "INSTAGRAM_REDIRECT_URI), --app-secret-file FILE (or INSTAGRAM_APP_SECRET); see instagram --help",
        one_line(r))
      r = run(flags({ "login" }), { env = {} })
      assert.equal(2, r.code)
      assert.matches("login needs --app-secret-file FILE (or INSTAGRAM_APP_SECRET)", one_line(r), 1, true)
      assert.equal(0, #f:log())
    end)

    it("the secret from --app-secret-file; --app-secret works but warns", function()
      Cli.write_file(dir .. "/secret", app.secret .. "\n")
      assert(Nginx.run("chmod 600 " .. Nginx.q(dir .. "/secret")))
      local r = login(flags({ "login", "--app-secret-file", dir .. "/secret" }), nil, {})
      assert.equal(0, r.code, r.stderr)
      assert.equal("", r.stderr)
      assert(Nginx.run("chmod 644 " .. Nginx.q(dir .. "/secret")))
      r = login(flags({ "login", "--app-secret-file", dir .. "/secret" }), nil, {})
      assert.equal(0, r.code, r.stderr)
      assert.equal("instagram: warning: the app secret file " .. dir .. "/secret can be read by other users "
        .. "(mode 0644); run chmod 600 " .. dir .. "/secret", one_line(r))
      r = login(flags({ "login", "--app-secret", app.secret }), nil, {})
      assert.equal(0, r.code, r.stderr)
      assert.matches("warning: --app-secret leaves the secret in your shell history", one_line(r), 1, true)
      assert.not_matches(app.secret, r.stdout .. r.stderr, 1, true)
      -- a directory is not a secret file: one usage line, not a mode warning and "empty"
      r = login(flags({ "login", "--app-secret-file", dir }), nil, {})
      assert.equal(2, r.code)
      assert.equal("instagram: --app-secret-file " .. dir .. " is not a regular file", one_line(r))
    end)

    it("the default token file is $XDG_CONFIG_HOME/instagram/token.json, in a 0700 directory, "
      .. "0600 whatever the umask", function()
      local args = flags({ "login" })
      table.remove(args, #args - 1) -- drop --token-file and its value
      table.remove(args, #args - 1)
      local r = Cli.interactive(dir, args, browse, { env = env({ XDG_CONFIG_HOME = dir .. "/conf" }) })
      assert.equal(0, r.code, r.stderr)
      local path = dir .. "/conf/instagram/token.json"
      assert.same({ 448, "dir" }, mode_of(dir .. "/conf/instagram"))
      assert.same({ 384, "file" }, mode_of(path))
      assert.matches("saved to " .. path, r.stdout, 1, true)
      local p = io.popen("cd " .. Nginx.q(dir) .. " && ls -a conf/instagram")
      local listing = p:read("*a")
      p:close()
      assert.equal(".\n..\ntoken.json\n", listing) -- no temp file left behind
      -- HOME/.config without XDG_CONFIG_HOME; a umask of 000 changes nothing
      r = Cli.interactive(dir, args, browse, { env = env(), umask = "000" })
      assert.equal(0, r.code, r.stderr)
      assert.same({ 448, "dir" }, mode_of(dir .. "/.config"))
      assert.same({ 448, "dir" }, mode_of(dir .. "/.config/instagram"))
      assert.same({ 384, "file" }, mode_of(dir .. "/.config/instagram/token.json"))
    end)
  end)

  describe("with a stored token", function()
    -- a token file as login writes it, for a token the fake issued `age` seconds ago
    local function store(age, kind)
      local access_token = f:issue_token("jayposiris", { kind = kind or "long", age = age })
      local info = f:token_info(access_token)
      local now = os.time()
      local t = {
        access_token = access_token, user_id = "17841405793187219", username = "jayposiris",
        api = "basic_display", app_id = app.client_id, redirect_uri = app.redirect_uri, token_type = "bearer",
        issued_at = now - age, expires_in = info.expires_at - info.issued_at,
      }
      t.expires_at = t.issued_at + t.expires_in
      assert(core.fs_write(token_file, json.encode(t)))
      return t
    end
    -- graph flags only: the token file carries the app and the API
    local function gflags(extra)
      local argv = { "--endpoint", "graph=" .. f.https, "--ca-file", f.ca_file, "--token-file", token_file }
      for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
      return argv
    end

    it("token: who, API, kind, dates; never the token unless --reveal", function()
      local t = store(2 * 86400)
      local r = run(gflags({ "token" }), { env = {} })
      assert.equal(0, r.code, r.stderr)
      assert.matches("user     jayposiris (17841405793187219)", r.stdout, 1, true)
      assert.matches("api      basic_display", r.stdout, 1, true)
      assert.matches("kind     long-lived", r.stdout, 1, true)
      assert.matches("expires  %d+%-%d+%-%d+ %d+:%d+ UTC %(in 58 days%)", r.stdout)
      assert.not_matches(t.access_token, r.stdout, 1, true)
      r = run(gflags({ "token", "--reveal" }), { env = {} })
      assert.matches("token    " .. t.access_token, r.stdout, 1, true)
      assert.equal(0, #f:log()) -- showing makes no request
    end)

    it("token refresh: not due leaves the file alone; due refreshes once and writes it back", function()
      store(2 * 86400)
      local before = Nginx.read_file(token_file)
      local r = run(gflags({ "token", "refresh" }), { env = {} })
      assert.equal(0, r.code, r.stderr)
      assert.matches("Not due: the token expires .* %(in 58 days%)", r.stdout)
      assert.equal(before, Nginx.read_file(token_file))
      assert.equal(0, #f:log("/refresh_access_token"))

      local t = store(57 * 86400) -- expires in 3 days
      r = run(gflags({ "token", "refresh" }), { env = {} })
      assert.equal(0, r.code, r.stderr)
      assert.matches("Refreshed: the token now expires .* %(in 60 days%)", r.stdout)
      assert.equal(1, #f:log("/refresh_access_token"))
      local new = stored()
      assert.equal(t.access_token, new.access_token) -- the fake refreshes in place
      assert.is_true(new.expires_at >= os.time() + 59 * 86400)
      assert.equal("jayposiris", new.username)
      assert.equal("basic_display", new.api)
      assert.equal(384, (core.fs_mode(token_file)))
      assert.is_true(f:token_info(t.access_token).expires_at >= new.expires_at - 5)
    end)

    it("token refresh --force refreshes a token that is not due; a young one gets the API's refusal", function()
      store(2 * 86400)
      local r = run(gflags({ "token", "refresh", "--force" }), { env = {} })
      assert.equal(0, r.code, r.stderr)
      assert.matches("Refreshed", r.stdout)
      assert.equal(1, #f:log("/refresh_access_token"))
      store(3600)
      r = run(gflags({ "token", "refresh", "--force" }), { env = {} })
      assert.equal(1, r.code)
      assert.matches("must be at least 24 hours old", one_line(r), 1, true)
    end)

    it("me: the user as JSON, exact IDs; --fields", function()
      store(2 * 86400)
      local r = run(gflags({ "me" }), { env = {} })
      assert.equal(0, r.code, r.stderr)
      assert.same({ id = "17841405793187219", username = "jayposiris" }, json.decode(r.stdout))
      assert.matches('"id":"17841405793187219"', r.stdout, 1, true)
      assert.equal(1, #Cli.lines(r.stdout))
      r = run(gflags({ "me", "--fields", "id,account_type,media_count" }), { env = {} })
      assert.equal(0, r.code, r.stderr)
      assert.same({ id = "17841405793187219", account_type = "PERSONAL", media_count = 7 }, json.decode(r.stdout))
      f:clear_log()
      r = run(gflags({ "me", "--graph-version", "v21.0" }), { env = {} })
      assert.equal(0, r.code, r.stderr)
      assert.equal(1, #f:log("/v21.0/me"))
      r = run(gflags({ "me", "--graph-version", "21" }), { env = {} })
      assert.equal(2, r.code)
      assert.equal('instagram: instagram.new: graph_version must look like "v21.0"', one_line(r))
    end)

    it("get PATH k=v: any Graph GET", function()
      local t = store(2 * 86400)
      local r = run(gflags({ "get", "me/media", "fields=id,media_type", "limit=2" }), { env = {} })
      assert.equal(0, r.code, r.stderr)
      local page = json.decode(r.stdout)
      assert.equal(2, #page.data)
      assert.equal("IMAGE", page.data[1].media_type)
      -- the paging links carry the token: it is redacted from the output
      assert.matches("access_token=[redacted]", page.paging.next, 1, true)
      assert.not_matches(t.access_token, r.stdout, 1, true)
      r = run(gflags({ "get", "me", "fields" }), { env = {} })
      assert.equal(2, r.code)
      assert.equal("instagram: bad parameter 'fields': use KEY=VALUE", one_line(r))
      r = run(gflags({ "get", "../me" }), { env = {} })
      assert.equal(2, r.code)
      assert.matches("^instagram: ig:get: path must not contain dot segments$", one_line(r))
    end)

    it("media --all: JSON lines across every page; --limit stops early", function()
      store(2 * 86400)
      local r = run(gflags({ "media", "--all", "--page-size", "2", "--fields", "id,media_type" }), { env = {} })
      assert.equal(0, r.code, r.stderr)
      assert.equal("", r.stderr) -- no progress: stderr is not a terminal
      local items = {}
      for line in r.stdout:gmatch("[^\n]+") do items[#items + 1] = assert(json.decode(line)) end
      assert.equal(7, #items)
      assert.equal("CAROUSEL_ALBUM", items[2].media_type)
      local seen = {}
      for _, item in ipairs(items) do
        assert.matches("^1789569566800%d%d%d%d$", item.id)
        assert.is_nil(seen[item.id])
        seen[item.id] = true
      end
      assert.equal(4, #f:log("/me/media"))

      f:clear_log()
      r = run(gflags({ "media", "--limit", "3", "--page-size", "2" }), { env = {} })
      assert.equal(0, r.code, r.stderr)
      assert.equal(3, #Cli.lines(r.stdout))
      assert.equal(2, #f:log("/me/media"))

      f:clear_log()
      r = run(gflags({ "media" }), { env = {} }) -- one page
      assert.equal(7, #Cli.lines(r.stdout))
      assert.equal(1, #f:log("/me/media"))
    end)

    it("a token file other users can read is refused: exit 2, one line, no request", function()
      store(2 * 86400)
      for _, mode in ipairs({ "644", "640", "604" }) do
        assert(Nginx.run("chmod " .. mode .. " " .. Nginx.q(token_file)))
        for _, cmd in ipairs({ "me", "token" }) do
          local r = run(gflags({ cmd }), { env = {} })
          assert.equal(2, r.code)
          assert.equal("instagram: the token file " .. token_file .. " can be read by other users (mode 0" .. mode
            .. "); refusing it: run chmod 600 " .. token_file .. " and revoke the token if others may have seen it",
            one_line(r))
        end
      end
      assert.equal(0, #f:log())
    end)

    it("no token stored, or one Instagram rejects: exit 3, run instagram login", function()
      local r = run(gflags({ "me" }), { env = {} })
      assert.equal(3, r.code)
      assert.equal("instagram: no token stored in " .. token_file .. " (run: instagram login)", one_line(r))
      local t = store(2 * 86400)
      t.access_token = "IGQVJunknown" .. string.rep("x", 40)
      assert(core.fs_write(token_file, json.encode(t)))
      r = run(gflags({ "me" }), { env = {} })
      assert.equal(3, r.code)
      assert.matches("^instagram: api error 190 %(OAuthException%): .* %(run: instagram login%)$", one_line(r))
      assert.not_matches(t.access_token, r.stderr, 1, true)
    end)

    it("a network failure: exit 1", function()
      store(2 * 86400)
      local port = Nginx.free_ports(1)[1]
      local r = run({ "--token-file", token_file, "--ca-file", f.ca_file, "--endpoint",
        "graph=https://127.0.0.1:" .. port, "me" }, { env = {} })
      assert.equal(1, r.code)
      assert.matches("^instagram: network error: ", one_line(r))
    end)

    it("plain http only with --allow-http, and only on loopback", function()
      store(2 * 86400)
      local r = run({ "--token-file", token_file, "--endpoint", "graph=" .. f.http, "me" }, { env = {} })
      assert.equal(2, r.code)
      assert.equal("instagram: endpoint graph is plain http: add --allow-http (loopback hosts only)", one_line(r))
      r = run({ "--token-file", token_file, "--endpoint", "graph=http://example.com", "--allow-http", "me" },
        { env = {} })
      assert.equal(2, r.code)
      assert.equal("instagram: --allow-http is for loopback hosts only; endpoint graph is not one", one_line(r))
      assert.equal(0, #f:log()) -- refused before any request
      r = run({ "--token-file", token_file, "--endpoint", "graph=" .. f.http, "--allow-http", "me" }, { env = {} })
      assert.equal(0, r.code, r.stderr)
      assert.equal("jayposiris", json.decode(r.stdout).username)
      assert.equal("http", f:log("/me")[1].scheme)
    end)
  end)

  describe("export", function()
    local function store_token()
      local access_token = f:issue_token("jayposiris", { kind = "long", age = 2 * 86400 })
      local now = os.time()
      assert(core.fs_write(token_file, json.encode({
        access_token = access_token, user_id = "17841405793187219", username = "jayposiris", api = "basic_display",
        issued_at = now - 2 * 86400, expires_in = 5184000, expires_at = now - 2 * 86400 + 5184000,
      })))
    end
    local function export(extra)
      local argv = { "--endpoint", "graph=" .. f.https, "--ca-file", f.ca_file, "--token-file", token_file,
        "export", dir .. "/backup", "--cdn-host", "127.0.0.1" }
      for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
      return run(argv, { env = {} })
    end
    local function cdn_requests()
      return #f:log(function(e) return e.path:find("^/cdn/") ~= nil end)
    end
    -- every file the items of media.jsonl name, as {name = url}
    local function expected_files()
      local want = {}
      local function add(item)
        if item.media_type ~= "CAROUSEL_ALBUM" and item.media_url then
          want[item.id .. (item.media_type == "VIDEO" and ".mp4" or ".jpg")] = item.media_url
        end
        if item.thumbnail_url then want[item.id .. ".thumb.jpg"] = item.thumbnail_url end
        for _, c in ipairs(item.children or {}) do add(c) end
      end
      local items = {}
      for line in assert(Nginx.read_file(dir .. "/backup/media.jsonl")):gmatch("[^\n]+") do
        local item = assert(json.decode(line))
        items[#items + 1] = item
        add(item)
      end
      return want, items
    end
    local function listing()
      local p = io.popen("ls -A " .. Nginx.q(dir .. "/backup"))
      local names = {}
      for name in p:lines() do names[#names + 1] = name end
      p:close()
      table.sort(names)
      return names
    end

    it("a small account: media.jsonl and every file, carousel children and video thumbnails; a rerun "
      .. "downloads nothing", function()
      store_token()
      local r = export()
      assert.equal(0, r.code, r.stderr)
      assert.equal("", r.stderr)
      local want, items = expected_files()
      assert.equal(7, #items)
      assert.equal("CAROUSEL_ALBUM", items[2].media_type)
      assert.equal(3, #items[2].children)
      assert.equal("VIDEO", items[3].media_type)
      local n, kinds = 0, {}
      for name in pairs(want) do
        n = n + 1
        kinds[name:match("%.(%w+)$")] = true
        assert.matches("^FAKE%-MEDIA ", assert(Nginx.read_file(dir .. "/backup/" .. name), name))
      end
      assert.same({ jpg = true, mp4 = true }, kinds)
      assert.matches("thumb%.jpg", table.concat(listing(), " "))
      assert.equal(string.format("7 items, %d files: %d downloaded", n, n), r.stdout:match("^[^(]+"):gsub(" $", ""))
      assert.equal(n, cdn_requests())
      assert.not_matches(f:log()[1].args.access_token or "nothing", Nginx.read_file(dir .. "/backup/media.jsonl"),
        1, true)

      f:clear_log()
      r = export()
      assert.equal(0, r.code, r.stderr)
      assert.equal(string.format("7 items, %d files: 0 downloaded (0 bytes), %d already complete, 0 failed\n", n, n),
        r.stdout)
      assert.equal(0, cdn_requests())
    end)

    it("a run cut mid-file leaves no torn file; the rerun fetches only what is missing or wrong", function()
      store_token()
      local path = "/cdn/jayposiris/1.jpg"
      f:fault(path, { mode = "fin_mid_body", times = 1 })
      local r = export({ "--concurrency", "2" })
      assert.equal(1, r.code)
      assert.matches("^instagram: 1 files failed %(first: 17895695668001010%.jpg: network error: .*%); run the "
        .. "export again to resume$", one_line(r))
      local names = listing()
      for _, name in ipairs(names) do assert.not_matches("%.part%-", name) end
      assert.is_nil(Nginx.read_file(dir .. "/backup/17895695668001010.jpg"))
      -- what a killed run leaves: a temp file; and a file that lost its tail
      Cli.write_file(dir .. "/backup/17895695668001040.jpg.part-abcdef", "FAKE")
      Cli.write_file(dir .. "/backup/17895695668001050.jpg", "FAKE")
      f:clear_log()
      r = export()
      assert.equal(0, r.code, r.stderr)
      assert.matches(": 2 downloaded %(%d+ bytes%), %d+ already complete, 0 failed", r.stdout)
      assert.equal(2, cdn_requests())
      assert.equal(1, #f:log(path))
      assert.is_nil(Nginx.read_file(dir .. "/backup/17895695668001040.jpg.part-abcdef"))
      assert.matches("^FAKE%-MEDIA ", Nginx.read_file(dir .. "/backup/17895695668001050.jpg"))
    end)

    it("an expired CDN link: the item is read again and the fresh link fetched", function()
      store_token()
      local path = "/cdn/jayposiris/1.jpg"
      f:fault(path, { status = 403, body = "URL signature expired", headers = { ["Content-Type"] = "text/plain" },
        times = 1 })
      local r = export()
      assert.equal(0, r.code, r.stderr)
      assert.equal(2, #f:log(path))
      local reread = f:log(function(e) return e.path:find("/17895695668001010$") ~= nil end)
      assert.equal(1, #reread)
      assert.equal("media_url", reread[1].args.fields)
      assert.matches("^FAKE%-MEDIA ", Nginx.read_file(dir .. "/backup/17895695668001010.jpg"))
    end)

    it("an item id from the network that is not a number never names a file (no path traversal)", function()
      store_token()
      local media = f:config().media.jayposiris
      media[1].id = "../escaped"
      f:config({ media = { jayposiris = media } })
      local r = export()
      assert.equal(1, r.code)
      assert.equal("instagram: Instagram sent a media item whose id is not a number", one_line(r))
      assert.is_nil(Nginx.read_file(dir .. "/escaped.jpg"))
      assert.equal(0, cdn_requests())
    end)

    it("a DIR that cannot be made: one line, exit 1, no download", function()
      store_token()
      local r = run({ "--endpoint", "graph=" .. f.https, "--ca-file", f.ca_file, "--token-file", token_file,
        "export", token_file .. "/backup", "--cdn-host", "127.0.0.1" }, { env = {} })
      assert.equal(1, r.code)
      assert.equal("instagram: " .. token_file .. " is not a directory", one_line(r))
      assert.equal(0, cdn_requests())
    end)
  end)

  describe("verify-signed-request", function()
    local function sign(payload, secret)
      local body = core.base64url_encode(payload)
      local mac = core.hmac_sha256_hex(secret, body):gsub("%x%x", function(h)
        return string.char(tonumber(h, 16))
      end)
      return core.base64url_encode(mac) .. "." .. body
    end

    it("prints the verified payload; a bad signature is exit 1", function()
      local sr = sign('{"algorithm":"HMAC-SHA256","issued_at":1700000000,"user_id":17841405793187219}', app.secret)
      local r = run({ "verify-signed-request", "--", sr })
      assert.equal(0, r.code, r.stderr)
      local payload = json.decode(r.stdout)
      assert.equal("17841405793187219", payload.user_id)
      assert.matches('"user_id":"17841405793187219"', r.stdout, 1, true)
      r = run({ "verify-signed-request" }, { stdin = sign('{"algorithm":"HMAC-SHA256"}', "another secret") .. "\n" })
      assert.equal(1, r.code)
      assert.matches("^instagram: signature error: ", one_line(r))
      r = run({ "verify-signed-request", "--", sr }, { env = {} })
      assert.equal(2, r.code)
      assert.matches("verify%-signed%-request needs %-%-app%-secret%-file FILE", one_line(r))
    end)
  end)
end)

describe("instagram command: usage", function()
  local dir
  before_each(function() dir = Cli.tempdir() end)
  after_each(function() Cli.rmdir(dir) end)

  it("--version and --help on every subcommand", function()
    for _, argv in ipairs({ { "--version" }, { "me", "--version" }, { "token", "refresh", "--version" } }) do
      local r = Cli.run(dir, argv)
      assert.equal(0, r.code)
      assert.equal("instagram (lua-instagram) " .. instagram.VERSION .. "\n", r.stdout)
    end
    for _, cmd in ipairs({ "login", "token", "me", "get", "media", "export", "verify-signed-request", "completion" }) do
      local r = Cli.run(dir, { cmd, "--help" })
      assert.equal(0, r.code)
      assert.matches("^Usage: instagram " .. cmd:gsub("%-", "%%-"), r.stdout)
    end
  end)

  it("bad arguments: exit 2, one line", function()
    local cases = {
      { { "bogus" }, "instagram: unknown command 'bogus' (see instagram --help)" },
      { {}, "instagram: a command is required (see instagram --help)" },
      { { "media", "--limit", "0" }, "instagram: --limit must be an integer from 1 (see instagram --help)" },
      { { "media", "--all", "--limit", "2" }, "instagram: option '--limit' can not be used together with "
        .. "option '--all' (see instagram --help)" },
      { { "--api", "graph", "me" }, "instagram: argument for option '--api' must be one of "
        .. "'instagram_login', 'basic_display' (see instagram --help)" },
      { { "--endpoint", "cdn=https://x", "me", "--token-file", "/nonexistent" },
        "instagram: bad endpoint 'cdn=https://x': use authorize=URL, token=URL or graph=URL" },
    }
    -- a secret that looks like an option is never echoed
    cases[#cases + 1] = { { "--app-secret", "-s3cr3t-value", "me", "--bogus" }, "instagram: unknown option "
      .. "'--bogus' (see instagram --help)" }
    cases[#cases + 1] = { { "--app-secret=s3cr3t-value", "s3cr3t-value" },
      "instagram: unknown command '[redacted]' (see instagram --help)" }
    for _, c in ipairs(cases) do
      local r = Cli.run(dir, c[1])
      assert.equal(2, r.code, table.concat(c[1], " "))
      assert.equal(c[2], one_line(r))
    end
  end)

  it("completion bash|zsh|fish comes from argparse", function()
    local r = Cli.run(dir, { "completion", "bash" })
    assert.equal(0, r.code)
    assert.matches("complete -F _instagram", r.stdout, 1, true)
    assert.matches("verify-signed-request", r.stdout, 1, true)
    r = Cli.run(dir, { "completion", "zsh" })
    assert.matches("#compdef instagram", r.stdout, 1, true)
    r = Cli.run(dir, { "completion", "fish" })
    assert.matches("complete -c instagram", r.stdout, 1, true)
  end)

  it("--fake says what is missing: the fake's files, or nginx", function()
    -- the command alone, with the module on LUA_PATH: no spec/support next to it
    local script = dir .. "/instagram"
    Cli.write_file(script, assert(Nginx.read_file(Cli.ROOT .. "/bin/instagram")))
    local build = jit and "5.1" or _VERSION:match("%d+%.%d+")
    if build ~= "5.4" and not jit then build = "lua" .. build end
    local lua_env = {
      LUA_PATH = Cli.ROOT .. "/lua/?.lua;" .. Cli.ROOT .. "/lua/?/init.lua;;",
      LUA_CPATH = Cli.ROOT .. "/build/" .. build .. "/?.so;;",
    }
    local r = Cli.run(dir, { "me", "--fake" }, { script = script, env = lua_env })
    assert.equal(2, r.code)
    assert.equal("instagram: --fake needs the fake server (spec/support of the lua-instagram source or its "
      .. ".src.rock), which is not installed next to this command", one_line(r))
    r = Cli.run(dir, { "me", "--fake" }, { env = { FAKE_NGINX = dir .. "/no-nginx" } })
    assert.equal(2, r.code)
    assert.matches("^instagram: %-%-fake could not start the fake Instagram %(it needs nginx with the Lua module: "
      .. "Debian nginx%-light, libnginx%-mod%-http%-lua; and openssl%): ", one_line(r))
  end)

  it("media --all: a progress line on stderr when it is a terminal, and stdout stays JSON lines", function()
    -- script(1) (bsdutils) gives the command a terminal for stderr; stdout goes to a file
    local cmd = string.format("cd %s && %s bin/instagram --fake media --all --page-size 2 --fields id >%s",
      Nginx.q(Cli.ROOT), Cli.LUA, Nginx.q(dir .. "/out.jsonl"))
    local p = io.popen("script -qec " .. Nginx.q(cmd) .. " /dev/null")
    local tty = p:read("*a")
    p:close()
    assert.matches("\r2 items, 1 pages", tty, 1, true)
    assert.matches("\r7 items, 4 pages\r?\n", tty)
    local items = Cli.lines(assert(Nginx.read_file(dir .. "/out.jsonl")))
    assert.equal(7, #items)
    for _, line in ipairs(items) do assert.matches('^{"id":"%d+"}$', line) end
  end)

  it("export --fake: progress (files, bytes, rate) on stderr when it is a terminal", function()
    local cmd = string.format("cd %s && %s bin/instagram --fake export %s >%s", Nginx.q(Cli.ROOT), Cli.LUA,
      Nginx.q(dir .. "/backup"), Nginx.q(dir .. "/out.txt"))
    local p = io.popen("script -qec " .. Nginx.q(cmd) .. " /dev/null")
    local tty = p:read("*a")
    p:close()
    assert.matches("7 items, 11/11 files, %d+ B, [%d.]+ %a+/s", tty)
    assert.matches("^7 items, 11 files: 11 downloaded", Nginx.read_file(dir .. "/out.txt"))
  end)

  it("--fake: every read subcommand works with no account and no token file", function()
    local r = Cli.run(dir, { "me", "--fake" })
    assert.equal(0, r.code, r.stderr)
    assert.same({ id = "27640875392278831", username = "biz" }, json.decode(r.stdout))
    r = Cli.run(dir, { "--fake", "--api", "basic_display", "media", "--all", "--page-size", "3" })
    assert.equal(0, r.code, r.stderr)
    assert.equal(7, #Cli.lines(r.stdout))
    r = Cli.run(dir, { "--fake", "token", "refresh", "--force" })
    assert.equal(0, r.code, r.stderr)
    assert.matches("Refreshed", r.stdout)
    r = Cli.run(dir, { "--fake", "login" }, { stdin = "\n" }) -- Enter: the fake plays the browser
    assert.equal(0, r.code, r.stderr)
    assert.matches("Logged in as biz (27640875392278831), instagram_login API.", r.stdout, 1, true)
    r = Cli.run(dir, { "--fake", "me", "--token-file", dir .. "/t.json" })
    assert.equal(2, r.code)
    assert.equal("instagram: --fake keeps its own token: drop --token-file", one_line(r))
    local p = io.popen("ls -A " .. Nginx.q(dir))
    local listing = p:read("*a")
    p:close()
    assert.not_matches("%.config", listing) -- no token file of the user's was written
  end)
end)
