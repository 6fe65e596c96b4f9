-- Review of issue 10 (the `instagram` command): cases the review found, bin/instagram in a child
-- process as a user runs it (spec/support/cli.lua), against the fake where a server is needed.
local Cli = require "spec.support.cli"
local Fake = require "spec.support.fake"
local Nginx = require "spec.support.nginx"

local function one_line(r)
  local lines = Cli.lines(r.stderr)
  assert.equal(1, #lines, "expected one line on stderr, got:\n" .. r.stderr)
  assert.not_matches("traceback", r.stderr)
  return lines[1]
end

describe("review10: instagram command usage", function()
  local dir
  before_each(function() dir = Cli.tempdir() end)
  after_each(function() Cli.rmdir(dir) end)

  it("a plain-http endpoint without --allow-http is a usage error even with no token stored", function()
    local r = Cli.run(dir, { "me", "--endpoint", "graph=http://example.com/" })
    assert.equal(2, r.code, r.stderr)
    assert.equal("instagram: endpoint graph is plain http: add --allow-http (loopback hosts only)", one_line(r))
    r = Cli.run(dir, { "me", "--allow-http", "--endpoint", "graph=http://example.com/" })
    assert.equal(2, r.code, r.stderr)
    assert.equal("instagram: --allow-http is for loopback hosts only; endpoint graph is not one", one_line(r))
  end)

  it("export with an empty DIR is a usage error (it wrote to /), said before the token is read", function()
    local r = Cli.run(dir, { "export", "", "--token-file", dir .. "/none.json" })
    assert.equal(2, r.code, r.stderr)
    assert.equal("instagram: export: DIR must not be empty", one_line(r))
  end)

  it("an empty --token-file is a usage error", function()
    local r = Cli.run(dir, { "token", "--token-file", "" })
    assert.equal(2, r.code, r.stderr)
    assert.equal("instagram: --token-file must not be empty", one_line(r))
  end)
end)

describe("review10: login input", function()
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

  local function login(answer)
    local eps = f:endpoints("https")
    return Cli.interactive(dir, {
      "login", "--api", "basic_display", "--app-id", app.client_id, "--redirect-uri", app.redirect_uri,
      "--endpoint", "authorize=" .. eps.authorize, "--endpoint", "token=" .. eps.token,
      "--endpoint", "graph=" .. eps.graph, "--ca-file", f.ca_file, "--token-file", token_file,
    }, answer, { env = { INSTAGRAM_APP_SECRET = app.secret } })
  end

  it("a very long paste that looks like a code: one line, the parser's refusal, no exchange", function()
    local r = login(function() return string.rep("x", 100000) end)
    assert.equal(2, r.code)
    assert.equal("instagram: callback error: callback input is too long", one_line(r))
    assert.equal(0, #f:log("/oauth/access_token"))
    assert.is_nil(Nginx.read_file(token_file))
  end)

  it("an error= redirect with this login's state is a denial (exit 3); with another state, a state error", function()
    local r = login(function(url)
      return app.redirect_uri .. "?error=access_denied&error_reason=user_denied&error_description=Not+now&state="
        .. url:match("state=([^&]+)") .. "#_"
    end)
    assert.equal(3, r.code)
    assert.equal("instagram: denied error: Not now", one_line(r))
    r = login(function() return app.redirect_uri .. "?error=access_denied&state=forged#_" end)
    assert.equal(2, r.code)
    assert.equal("instagram: state error: callback state does not match", one_line(r))
    assert.equal(0, #f:log("/oauth/access_token"))
  end)
end)

describe("review10: login --fake", function()
  local dir
  before_each(function() dir = Cli.tempdir() end)
  after_each(function() Cli.rmdir(dir) end)

  it("the fake's browser step never prints the authorization code", function()
    local r = Cli.run(dir, { "login", "--fake", "--short" }, { stdin = "\n" })
    assert.equal(0, r.code, r.stderr)
    assert.matches("(fake) the browser was redirected to https://localhost/auth/?code=[hidden]&state=", r.stderr,
      1, true)
    assert.not_matches("code=[^%[]", r.stdout .. r.stderr)
  end)
end)
