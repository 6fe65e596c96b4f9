-- The "Get Started" tutorial (Steps 4-6) in Lua.
--
--   lua5.4 examples/get_started.lua --fake
--       runs the whole flow against the bundled fake Instagram (what `make demo` does)
--   lua5.4 examples/get_started.lua --app-id ID --app-secret SECRET --redirect-uri URI [--api basic_display]
--       prints the Authorization Window URL, then asks you to paste the URL you were redirected to
--       (or pass it with --redirect-url URL)
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
if not package.cpath:find("build/", 1, true) then
  local v = _VERSION == "Lua 5.4" and "5.4" or "5.1"
  package.cpath = "build/" .. v .. "/?.so;" .. package.cpath
end

local instagram = require "instagram"

local function usage(msg)
  io.stderr:write(msg, "\n", "usage: get_started.lua --fake [--api basic_display|instagram_login]\n",
    "       get_started.lua --app-id ID --app-secret SECRET --redirect-uri URI",
    " [--api basic_display|instagram_login] [--redirect-url URL]\n")
  os.exit(2)
end

local opts = {}
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--fake" then
      opts.fake = true
    elseif a:match("^%-%-[%w-]+$") and arg[i + 1] then
      opts[a:sub(3):gsub("-", "_")] = arg[i + 1]
      i = i + 1
    else
      usage("unknown argument: " .. a)
    end
    i = i + 1
  end
end

local function redact(s)
  return s:sub(1, 6) .. "…"
end

local fake, config
if opts.fake then
  local Fake = require "spec.support.fake"
  fake = Fake.start({ quiet = true })
  local api = opts.api or "basic_display"
  local app = fake.apps and fake.apps[api] or nil
  config = {
    api = api,
    app_id = app and app.client_id or (api == "basic_display" and "684477648739411" or "990602627938098"),
    app_secret = app and app.secret or (api == "basic_display" and "eb8c7a1b2c3d4e5f60718293a4b5c6d7"
      or "a1b2c3d4e5f60718293a4b5c6d7e8f90"),
    redirect_uri = "https://localhost/auth/",
    endpoints = fake:endpoints("https"),
    ca_file = fake.ca_file,
  }
else
  if not (opts.app_id and opts.app_secret and opts.redirect_uri) then
    usage("need --fake, or --app-id, --app-secret and --redirect-uri")
  end
  config = {
    api = opts.api or "instagram_login",
    app_id = opts.app_id,
    app_secret = opts.app_secret,
    redirect_uri = opts.redirect_uri,
  }
end

local function run()
  local ig = instagram.new(config)

  print("Step 4: Authenticate the Test User")
  local url, state = ig:authorize_url()
  print("  Authorization Window URL:")
  print("    " .. url)

  local redirected
  if fake then
    -- what the browser does: load the URL and follow Instagram's redirect to the redirect URI
    local session = instagram.core.session({ ca_file = config.ca_file, user_agent = "browser", timeout = 10,
      connect_timeout = 5, max_response_bytes = 65536, allow_http = false })
    local res, kind, msg = session:perform({ method = "GET", url = url })
    session:close()
    if not res then error("could not load the authorization URL: " .. kind .. ": " .. msg, 0) end
    redirected = res.headers.location
    if res.status ~= 302 or not redirected then
      error("the authorization window did not redirect (HTTP " .. res.status .. ")", 0)
    end
    print("  The user clicks Authorize; the browser is redirected to:")
    print("    " .. redirected)
  else
    redirected = opts.redirect_url
    if not redirected then
      io.write("  Open it, authorize, and paste the URL you were redirected to: ")
      io.flush()
      redirected = io.read("l") or ""
    end
  end

  local code, err = ig:parse_callback(redirected, state)
  if not code then error(tostring(err), 0) end
  print("  Authorization Code (the #_ stripped): " .. (fake and code or redact(code)))

  print("Step 5: Exchange the Code for a Token")
  print("  POST " .. ig.endpoints.token)
  local token
  token, err = ig:exchange_code(code)
  if not token then error(tostring(err), 0) end
  print("  access_token: " .. redact(token.access_token))
  print("  user_id: " .. tostring(token.user_id))

  print("Step 6: Query the User Node")
  print("  GET " .. ig.endpoints.graph .. "/me?fields=id,username")
  local me
  me, err = ig:me(token)
  if not me then error(tostring(err), 0) end
  print("  id: " .. tostring(me.id))
  print("  username: " .. tostring(me.username))
  ig:close()
end

local ok, err = pcall(run)
if fake then fake:stop() end
if not ok then
  io.stderr:write("get_started: ", tostring(err), "\n")
  os.exit(1)
end
