-- The `instagram` command (bin/instagram): the "Get Started" tutorial, a token file and Graph
-- reads from a shell. Arguments are parsed by lua-argparse. Exit codes: 0 success, 1 API or
-- network error, 2 usage, 3 authentication needed. An error is one line on stderr.
local argparse = require "argparse"
local instagram = require "instagram"
local json = require "instagram.json"
local tokenfile = require "instagram.cli.tokenfile"

local M = {}

local EXIT_OK, EXIT_API, EXIT_USAGE, EXIT_AUTH = 0, 1, 2, 3
M.EXIT = { ok = EXIT_OK, api = EXIT_API, usage = EXIT_USAGE, auth = EXIT_AUTH }

local DAY = 86400
local ENDPOINT_NAMES = { authorize = true, token = true, graph = true }

---------------------------------------------------------------------------
-- failures: fail() unwinds to main(), which prints one line and returns the exit code

local Failure = {}

local function fail(code, msg)
  error(setmetatable({ code = code, msg = msg }, Failure), 0)
end

-- The exit code for a library error object.
function M.exit_code(err, during_login)
  if err.token_invalid then return EXIT_AUTH end
  if err.kind == "denied" then return EXIT_AUTH end
  if err.kind == "state" or err.kind == "callback" then return EXIT_USAGE end
  -- the token endpoint refused the code (used, expired, another app's): only a new login helps
  if during_login and err.kind == "api" and not err.transient and not err.rate_limited then return EXIT_AUTH end
  return EXIT_API
end

local function fail_err(err, during_login)
  local code = M.exit_code(err, during_login)
  local msg = tostring(err):gsub("^instagram: ", "")
  if code == EXIT_AUTH and not during_login then msg = msg .. " (run: instagram login)" end
  fail(code, msg)
end

---------------------------------------------------------------------------
-- pure helpers (unit-tested in spec/cli_spec.lua)

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- pasted(line) -> input for ig:parse_callback, whether its state can be checked | nil, message.
-- A whole redirect URL or its query string is checked; a bare code (with or without #_) cannot be.
function M.pasted(line)
  line = trim(line or "")
  if line == "" then return nil, "nothing was pasted: paste the URL you were redirected to" end
  local bare = line:gsub("#_?$", "")
  if bare:match("^[%w%-_%.~%%]+$") then return "code=" .. bare, false end
  return line, true
end

-- A URL's host is loopback (127.0.0.0/8, ::1, localhost).
function M.is_loopback(url)
  local rest = url:match("^%a[%w+.-]*://([^/?#]*)")
  if not rest then return false end
  local host = rest:gsub("^.*@", "")
  local v6 = host:match("^%[(.-)%]")
  if v6 then return v6 == "::1" end
  host = host:gsub(":%d*$", ""):lower()
  return host == "localhost" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

-- endpoints(list_from_env, list_from_flags) -> {name = url} | nil, message. Each entry is NAME=URL;
-- the environment string separates entries with commas or spaces; flags win.
function M.endpoints(env, flags)
  local out = {}
  local entries = {}
  for entry in (env or ""):gmatch("[^,%s]+") do entries[#entries + 1] = entry end
  for _, entry in ipairs(flags or {}) do entries[#entries + 1] = entry end
  for _, entry in ipairs(entries) do
    local name, url = entry:match("^([%w_]+)=(.+)$")
    if not name or not ENDPOINT_NAMES[name] then
      return nil, "bad endpoint '" .. entry .. "': use authorize=URL, token=URL or graph=URL"
    end
    out[name] = url
  end
  return out
end

-- plain_http(endpoints, allow_http) -> true | nil, message: http:// only with --allow-http, on loopback
function M.plain_http(endpoints, allow_http)
  local names = {}
  for name in pairs(endpoints) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local url = endpoints[name]
    if url:match("^[Hh][Tt][Tt][Pp]://") then
      if not allow_http then
        return nil, "endpoint " .. name .. " is plain http: add --allow-http (loopback hosts only)"
      elseif not M.is_loopback(url) then
        return nil, "--allow-http is for loopback hosts only; endpoint " .. name .. " is not one"
      end
    end
  end
  return true
end

-- params({"k=v", ...}) -> {k = v} | nil, message
function M.params(list)
  local out = {}
  for _, kv in ipairs(list or {}) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if not k then return nil, "bad parameter '" .. kv .. "': use KEY=VALUE" end
    out[k] = v
  end
  return out
end

-- JSON for the terminal: exact IDs, and "/" left alone (lua-cjson writes "\/").
function M.encode(value)
  local text = assert(json.encode(value))
  return (text:gsub("\\/", "/"))
end

-- A copy of value with every occurrence of secret in its strings replaced by "[redacted]":
-- Graph's paging links repeat the access token, which belongs in no output.
function M.redact(value, secret, depth)
  depth = depth or 0
  if type(value) == "string" then
    local out, start = value, 1
    while #secret >= 4 do
      local b, e = out:find(secret, start, true)
      if not b then break end
      out = out:sub(1, b - 1) .. "[redacted]" .. out:sub(e + 1)
      start = b + #"[redacted]"
    end
    return out
  elseif type(value) == "table" and depth < 100 then
    local copy = {}
    for k, v in pairs(value) do copy[k] = M.redact(v, secret, depth + 1) end
    return setmetatable(copy, getmetatable(value))
  end
  return value
end

-- "2026-01-28 19:40 UTC (in 59 days)" for a Unix time, relative to now
function M.when(t, now)
  if not t then return "unknown" end
  local left = t - now
  local rel
  -- to the nearest day or hour: a second gone since the token was stored does not change it
  local function round(x) return math.floor(x + 0.5) end
  if left >= 2 * DAY then
    rel = string.format("in %d days", round(left / DAY))
  elseif left >= 0 then
    rel = string.format("in %d hours", round(left / 3600))
  elseif -left >= 2 * DAY then
    rel = string.format("%d days ago", round(-left / DAY))
  else
    rel = string.format("%d hours ago", round(-left / 3600))
  end
  return os.date("!%Y-%m-%d %H:%M UTC", math.floor(t)) .. " (" .. rel .. ")"
end

---------------------------------------------------------------------------
-- the parser

local function common_options(p)
  p:option("--app-id", "The Instagram app ID (or INSTAGRAM_APP_ID).")
  p:option("--app-secret", "The app secret (or INSTAGRAM_APP_SECRET). It lands in your shell history: "
    .. "prefer --app-secret-file.")
  p:option("--app-secret-file", "A file whose first line is the app secret.")
  p:option("--redirect-uri", "The redirect URI registered for the app (or INSTAGRAM_REDIRECT_URI).")
  p:option("--api", "Which API: instagram_login (default) or basic_display.")
    :choices({ "instagram_login", "basic_display" })
  p:option("--endpoint", "Point the client elsewhere: authorize=URL, token=URL or graph=URL "
    .. "(repeatable; or INSTAGRAM_ENDPOINTS).")
    :count("*")
  p:option("--ca-file", "PEM bundle to verify TLS against (default: the system store).")
  p:option("--graph-version", "Graph API version prefixed to paths, e.g. v21.0.")
  p:flag("--allow-http", "Allow plain http:// endpoints on loopback hosts (local testing only).")
  p:option("--token-file", "The token file (default: $XDG_CONFIG_HOME/instagram/token.json).")
  p:flag("--fake", "Run against the bundled fake Instagram: no account needed.")
end

local function version_flag(p)
  p:flag("--version", "Show the version and exit.")
    :action(function()
      io.stdout:write("instagram (lua-instagram) ", instagram.VERSION, "\n")
      os.exit(0)
    end)
end

function M.parser()
  local p = argparse("instagram", "Instagram from a shell: log in, keep the token, read the Graph API.")
    :command_target("command")
    :epilog("Exit codes: 0 success, 1 API or network error, 2 usage, 3 authentication needed.\n"
      .. "The options above work after the subcommand too, e.g. instagram me --fake.")
  common_options(p)
  version_flag(p)
  local function command(name, summary)
    local c = p:command(name, summary)
    version_flag(c)
    c:epilog("Common options (--app-id, --api, --endpoint, --token-file, --fake, ...): instagram --help.")
    return c
  end

  local login = command("login", "Log in: prints the Authorization Window URL, reads the redirect URL "
    .. "you paste, exchanges the code and saves the token.")
  login:flag("--short", "Keep the short-lived (1 hour) token instead of exchanging it for a long-lived one.")

  local token = command("token", "Show the stored token (never the token itself unless --reveal).")
  token:flag("--reveal", "Also print the access token.")
  token:require_command(false)
  local refresh = token:command("refresh", "Refresh the stored long-lived token when it is due "
    .. "(expires within 7 days); writes the file back only when refreshed.")
  refresh:flag("--force", "Refresh now, whatever the expiry.")
  version_flag(refresh)

  local me = command("me", "Print the logged-in user as JSON.")
  me:option("--fields", "Comma-separated fields (default id,username).")

  local get = command("get", "Any Graph GET, printed as JSON.")
  get:argument("path", "A Graph path, e.g. me/media.")
  get:argument("params", "Query parameters as KEY=VALUE."):args("*")

  local media = command("media", "The user's media as JSON lines, one item per line.")
  local function positive(name, max)
    return function(v)
      local n = tonumber(v)
      if not n or n < 1 or n ~= math.floor(n) or (max and n > max) then
        return nil, name .. " must be an integer from 1" .. (max and (" to " .. max) or "")
      end
      return n
    end
  end
  local limit = media:option("--limit", "At most N items (pages are followed as needed).")
    :convert(positive("--limit"))
  local all = media:flag("--all", "Every item: follow every page (progress on stderr when it is a terminal).")
  media:option("--fields", "Comma-separated fields.")
  media:option("--page-size", "Items per request (the Graph limit parameter), 1 to 100.")
    :convert(positive("--page-size", 100))
  media:mutex(limit, all)

  local export = command("export", "Back up every media item: DIR/media.jsonl and each image and video "
    .. "(carousel children, video thumbnails) as DIR/<id>.<ext>. A rerun resumes: complete files are skipped.")
  export:argument("dir", "The backup directory (made, 0700, if missing).")
  export:option("--concurrency", "Downloads at once, 1 to 16 (default 4)."):convert(positive("--concurrency", 16))
  export:option("--cdn-host", "A media host to download from (repeatable; default *.cdninstagram.com and "
    .. "*.fbcdn.net).")
    :count("*")

  local verify = command("verify-signed-request", "Verify a signed_request (deauthorize or data-deletion "
    .. "callback) with the app secret and print its payload.")
  verify:argument("signed_request", "The signed_request parameter; read from stdin when left out "
    .. "(one may start with '-': write -- before it).")
    :args("?")

  p:add_complete_command()
  return p
end

---------------------------------------------------------------------------
-- the client

local function read_secret_file(path)
  local mode, kind = instagram.core.fs_mode(path)
  if mode and kind ~= "file" then fail(EXIT_USAGE, "--app-secret-file " .. path .. " is not a regular file") end
  if mode and mode % 64 ~= 0 then
    io.stderr:write(string.format("instagram: warning: the app secret file %s can be read by other users "
      .. "(mode %04o); run chmod 600 %s\n", path, mode, path))
  end
  local f, err = io.open(path, "rb")
  if not f then fail(EXIT_USAGE, "cannot read --app-secret-file: " .. tostring(err)) end
  local line = f:read("*l") or ""
  f:close()
  line = trim(line)
  if line == "" then fail(EXIT_USAGE, "--app-secret-file " .. path .. " is empty") end
  return line
end

local function nonempty(v)
  if v ~= nil and v ~= "" then return v end
  return nil
end

-- The client config from flags, environment, the stored token and --fake, in that order.
local function client_config(ctx, need)
  local a, getenv, stored = ctx.args, ctx.getenv, ctx.stored or {}
  if ctx.fake_config then
    local config = {}
    for k, v in pairs(ctx.fake_config) do config[k] = v end
    return config
  end
  local config = {
    api = a.api or stored.api,
    app_id = nonempty(a.app_id) or nonempty(getenv("INSTAGRAM_APP_ID")) or stored.app_id,
    redirect_uri = nonempty(a.redirect_uri) or nonempty(getenv("INSTAGRAM_REDIRECT_URI")) or stored.redirect_uri,
    ca_file = a.ca_file,
    graph_version = a.graph_version,
    allow_http = a.allow_http or nil,
  }
  if a.app_secret then
    config.app_secret = a.app_secret
  elseif a.app_secret_file then
    config.app_secret = read_secret_file(a.app_secret_file)
  else
    config.app_secret = nonempty(getenv("INSTAGRAM_APP_SECRET"))
  end
  local endpoints, err = M.endpoints(getenv("INSTAGRAM_ENDPOINTS"), a.endpoint)
  if not endpoints then fail(EXIT_USAGE, err) end
  local plain_ok, perr = M.plain_http(endpoints, a.allow_http)
  if not plain_ok then fail(EXIT_USAGE, perr) end
  if next(endpoints) then config.endpoints = endpoints end

  local missing = {}
  if need.app and not config.app_id then missing[#missing + 1] = "--app-id (or INSTAGRAM_APP_ID)" end
  if need.app and not config.redirect_uri then
    missing[#missing + 1] = "--redirect-uri (or INSTAGRAM_REDIRECT_URI)"
  end
  if need.secret and not config.app_secret then
    missing[#missing + 1] = "--app-secret-file FILE (or INSTAGRAM_APP_SECRET)"
  end
  if #missing > 0 then
    fail(EXIT_USAGE, ctx.command .. " needs " .. table.concat(missing, ", ") .. "; see instagram --help")
  end
  -- Graph reads send neither: a token file from elsewhere may lack them
  config.app_id = config.app_id or "0"
  config.redirect_uri = config.redirect_uri or "https://localhost/"
  if config.redirect_uri:match("^[Hh][Tt][Tt][Pp]://") and a.allow_http and not M.is_loopback(config.redirect_uri) then
    fail(EXIT_USAGE, "--allow-http is for loopback hosts only; the redirect URI is not one")
  end
  return config
end

local function new_client(ctx, need)
  return instagram.new(client_config(ctx, need))
end

-- how a token file is named in messages: --fake's lives in a temp dir removed on exit
local function shown(ctx, path)
  if ctx.fake_token_path then return "a temporary file (--fake)" end
  return path
end

local function token_path(ctx)
  if ctx.fake_token_path then return ctx.fake_token_path end
  if ctx.args.token_file == "" then fail(EXIT_USAGE, "--token-file must not be empty") end
  local path = ctx.args.token_file or tokenfile.default_path(ctx.getenv)
  if not path then fail(EXIT_USAGE, "no token file: set HOME or XDG_CONFIG_HOME, or pass --token-file") end
  return path
end

local function load_token(ctx)
  local path = token_path(ctx)
  local t, err, why = tokenfile.load(path)
  if not t then fail(why == "missing" and EXIT_AUTH or EXIT_USAGE, err) end
  ctx.stored = t
  return t, path
end

local function save_token(path, token)
  local ok, err = tokenfile.save(path, token)
  if not ok then fail(EXIT_API, err) end
end

local function out(...)
  io.stdout:write(...)
end

---------------------------------------------------------------------------
-- subcommands

local commands = {}

function commands.login(ctx)
  local path = token_path(ctx)
  local ig = new_client(ctx, { app = true, secret = true })
  local url, state = ig:authorize_url()
  out("Open this URL in a browser, log in and allow access:\n", url, "\n")
  io.stdout:flush()
  if instagram.core.fs_isatty(0) then
    io.stderr:write("Paste the URL you were redirected to (or just the code)", ctx.fake and
      ", or press Enter to let the fake play the browser" or "", ": ")
    io.stderr:flush()
  end
  local line = io.stdin:read("*l")
  if ctx.fake and (line == nil or trim(line) == "") then
    local location, ferr = ctx.fake_module.browse(instagram.core, ctx.fake, url)
    if not location then fail(EXIT_API, ferr) end
    -- the code is a credential, even the fake's: shown hidden, like every secret
    io.stderr:write("(fake) the browser was redirected to ", (location:gsub("([?&]code=)[^&#]*", "%1[hidden]")), "\n")
    line = location
  end
  if line == nil then fail(EXIT_USAGE, "no redirect URL: standard input ended") end
  local input, checkable = M.pasted(line)
  if not input then fail(EXIT_USAGE, checkable) end
  local code, err = ig:parse_callback(input, checkable and state or false)
  if not code then fail_err(err, true) end
  if not checkable then
    io.stderr:write("instagram: warning: only a code was pasted, so its state cannot be checked; "
      .. "paste the whole redirect URL to have it checked\n")
  end
  local token
  token, err = ig:exchange_code(code)
  if not token then fail_err(err, true) end
  token.api, token.app_id, token.redirect_uri = ig.api, ig.app_id, ig.redirect_uri
  -- the code is spent: from here on a failure keeps the token we have, and says so
  local function keep_and_fail(what, e)
    save_token(path, token)
    fail(M.exit_code(e), what .. ": " .. tostring(e):gsub("^instagram: ", "") .. "; the token from the code was "
      .. "saved to " .. shown(ctx, path))
  end
  if not ctx.args.short then
    local long
    long, err = ig:exchange_token(token)
    if not long then keep_and_fail("no long-lived token", err) end
    long.api, long.app_id, long.redirect_uri = token.api, token.app_id, token.redirect_uri
    token = long
  end
  local me
  me, err = ig:me(token)
  if not me then keep_and_fail("the user could not be read", err) end
  token.user_id = token.user_id or json.id(me.id)
  token.username = type(me.username) == "string" and me.username or nil
  save_token(path, token)
  out(string.format("Logged in as %s (%s), %s API.\n", tostring(token.username or "?"),
    tostring(token.user_id or "?"), ig.api))
  local expiry = "expires " .. M.when(token.expires_at, ctx.now())
  if ctx.args.short and not token.expires_at then expiry = "valid for about an hour" end
  out(string.format("%s token, %s; saved to %s\n", ctx.args.short and "Short-lived" or "Long-lived",
    expiry, shown(ctx, path)))
  return EXIT_OK
end

local function token_kind(t)
  if t.expires_in and t.expires_in <= 2 * 3600 then return "short-lived" end
  if t.expires_in then return "long-lived" end
  return "unknown lifetime"
end

local function show_token(ctx)
  local t, path = load_token(ctx)
  local now = ctx.now()
  out("user     ", tostring(t.username or "?"), " (", tostring(t.user_id or "?"), ")\n")
  out("api      ", tostring(t.api or "?"), "\n")
  out("kind     ", token_kind(t), "\n")
  out("issued   ", t.issued_at and os.date("!%Y-%m-%d %H:%M UTC", math.floor(t.issued_at)) or "unknown", "\n")
  out(t.expires_at and t.expires_at <= now and "expired  " or "expires  ", M.when(t.expires_at, now), "\n")
  out("file     ", shown(ctx, path), "\n")
  if ctx.args.reveal then
    out("token    ", t.access_token, "\n")
  else
    out("token    (hidden; --reveal prints it)\n")
  end
  return EXIT_OK
end

local function refresh(ctx)
  local t, path = load_token(ctx)
  local ig = new_client(ctx, {})
  local new, refreshed, err
  if ctx.args.force then
    new, err = ig:refresh_token(t)
    refreshed = new ~= nil
  else
    local second
    new, second = ig:refresh_if_needed(t)
    if new then refreshed = second else err = second end
  end
  if not new then fail_err(err) end
  local now = ctx.now()
  if not refreshed then
    out("Not due: the token expires ", M.when(t.expires_at, now),
      "; it is refreshed within 7 days of expiry (--force refreshes now).\n")
    return EXIT_OK
  end
  for _, k in ipairs({ "username", "api", "app_id", "redirect_uri" }) do new[k] = t[k] end
  new.user_id = new.user_id or t.user_id
  save_token(path, new)
  out("Refreshed: the token now expires ", M.when(new.expires_at, now), "; saved to ", shown(ctx, path), "\n")
  return EXIT_OK
end

function commands.token(ctx)
  if ctx.args.refresh then return refresh(ctx) end
  return show_token(ctx)
end

function commands.me(ctx)
  local t = load_token(ctx)
  local ig = new_client(ctx, {})
  local me, err = ig:me(t, ctx.args.fields)
  if not me then fail_err(err) end
  out(M.encode(M.redact(me, t.access_token)), "\n")
  return EXIT_OK
end

function commands.get(ctx)
  local params, perr = M.params(ctx.args.params)
  if not params then fail(EXIT_USAGE, perr) end
  local t = load_token(ctx)
  local ig = new_client(ctx, {})
  local body, err = ig:get(t, ctx.args.path, params)
  if not body then fail_err(err) end
  out(M.encode(M.redact(body, t.access_token)), "\n")
  return EXIT_OK
end

function commands.media(ctx)
  local a = ctx.args
  local t = load_token(ctx)
  local ig = new_client(ctx, {})
  local progress = a.all and instagram.core.fs_isatty(2)
  local opts = { fields = a.fields, limit = a.page_size }
  if not opts.limit and a.limit and a.limit <= 100 then opts.limit = a.limit end
  local page, err = ig:media(t, opts)
  local count, pages = 0, 0
  while page do
    pages = pages + 1
    -- the progress line is the terminal's last line: cleared while items are printed (stdout may be
    -- the same terminal), then redrawn
    if progress then io.stderr:write("\r\27[K") end
    for _, item in ipairs(page.data or {}) do
      out(M.encode(M.redact(item, t.access_token)), "\n")
      count = count + 1
      if a.limit and count >= a.limit then break end
    end
    if progress then
      io.stdout:flush()
      io.stderr:write(string.format("\r%d items, %d pages", count, pages))
    end
    if not (a.all or (a.limit and count < a.limit)) then break end
    page, err = ig:next_page(page)
  end
  if progress then io.stderr:write("\n") end
  if err then fail_err(err) end
  return EXIT_OK
end

function commands.export(ctx)
  local a = ctx.args
  -- "" would put every file at the root: DIR .. "/" .. name
  if a.dir == "" then fail(EXIT_USAGE, "export: DIR must not be empty") end
  local t = load_token(ctx)
  local ig = new_client(ctx, {})
  local hosts = (a.cdn_host and #a.cdn_host > 0 and a.cdn_host) or (ctx.fake and { "127.0.0.1" }) or nil
  local summary, msg, err = require("instagram.cli.export").run(ig, t, a.dir, {
    hosts = hosts, concurrency = a.concurrency or 4, progress = instagram.core.fs_isatty(2), clock = os.time,
    encode = function(v) return M.encode(M.redact(v, t.access_token)) end,
    mkdirs = tokenfile.mkdirs,
  })
  if not summary then
    if err then fail(M.exit_code(err), msg .. ": " .. tostring(err):gsub("^instagram: ", "")) end
    fail(EXIT_API, msg)
  end
  out(string.format("%d items, %d files: %d downloaded (%d bytes), %d already complete, %d failed\n",
    summary.items, summary.files, summary.downloaded, summary.bytes, summary.skipped, summary.failed))
  if summary.failed > 0 then
    fail(EXIT_API, string.format("%d files failed (first: %s); run the export again to resume", summary.failed,
      summary.first_error))
  end
  return EXIT_OK
end

commands["verify-signed-request"] = function(ctx)
  local config = client_config(ctx, { secret = true })
  local sr = ctx.args.signed_request or trim(io.stdin:read("*l") or "")
  local payload, err = instagram.parse_signed_request(sr, config.app_secret)
  if not payload then fail_err(err) end
  out(M.encode(payload), "\n")
  return EXIT_OK
end

---------------------------------------------------------------------------
-- main

local function first_line(s)
  return (tostring(s):match("^%s*([^\n]*)"))
end

-- main(argv[, env]) -> exit code. env (for tests): {getenv = f, now = f}.
function M.main(argv, env)
  env = env or {}
  local ctx = { getenv = env.getenv or os.getenv, now = env.now or os.time }
  local parser = M.parser()
  local list = {}
  local i = 1
  while argv and i <= #argv do
    -- "--app-secret VALUE" as one word, so a value that starts with "-" is never read as an option
    if argv[i] == "--app-secret" and argv[i + 1] ~= nil then
      list[#list + 1] = "--app-secret=" .. argv[i + 1]
      i = i + 1
    else
      list[#list + 1] = argv[i]
    end
    i = i + 1
  end
  local ok, args = parser:pparse(list)
  if not ok then
    -- argparse may quote an argument: never the value of --app-secret
    local msg = first_line(args)
    for _, a in ipairs(list) do
      local secret = a:match("^%-%-app%-secret=(.+)$")
      if secret and #secret > 0 then
        local start = 1
        while true do
          local b, e = msg:find(secret, start, true)
          if not b then break end
          msg = msg:sub(1, b - 1) .. "[redacted]" .. msg:sub(e + 1)
          start = b + #"[redacted]"
        end
      end
    end
    io.stderr:write("instagram: ", msg, " (see instagram --help)\n")
    return EXIT_USAGE
  end
  ctx.args, ctx.command = args, args.command
  -- usage errors in the endpoints come first, before the token file is read
  local endpoints, eperr = M.endpoints(ctx.getenv("INSTAGRAM_ENDPOINTS"), args.endpoint)
  if endpoints and not args.fake then
    local _
    _, eperr = M.plain_http(endpoints, args.allow_http)
  end
  if eperr then
    io.stderr:write("instagram: ", eperr, "\n")
    return EXIT_USAGE
  end
  if args.app_secret then
    io.stderr:write("instagram: warning: --app-secret leaves the secret in your shell history and the "
      .. "process list; prefer --app-secret-file FILE or INSTAGRAM_APP_SECRET\n")
  end

  local run = commands[args.command]
  local done, code = xpcall(function()
    if args.fake then
      if args.token_file then fail(EXIT_USAGE, "--fake keeps its own token: drop --token-file") end
      local fake_module = require "instagram.cli.fake"
      local f, err = fake_module.start()
      if not f then fail(EXIT_USAGE, err) end
      ctx.fake, ctx.fake_module = f, fake_module
      local api = args.api or "instagram_login"
      ctx.fake_config = fake_module.config(f, api)
      ctx.fake_token_path = f.prefix .. "/token.json"
      if args.command ~= "login" then
        local t = fake_module.token(f, api, ctx.now())
        t.api, t.app_id, t.redirect_uri = api, ctx.fake_config.app_id, ctx.fake_config.redirect_uri
        save_token(ctx.fake_token_path, t)
      end
    end
    return run(ctx)
  end, function(e)
    if getmetatable(e) == Failure then return e end
    -- a library function raised: what it names came from a flag or the token file
    local msg = tostring(e)
    if msg:match("^instagram%.[%w_]+: ") or msg:match("^ig:[%w_]+: ") then
      return setmetatable({ code = EXIT_USAGE, msg = first_line(msg) }, Failure)
    end
    return setmetatable({ code = EXIT_API, msg = "internal error: " .. first_line(msg) }, Failure)
  end)
  if ctx.fake then ctx.fake:stop() end
  io.stdout:flush()
  if done then return code end
  io.stderr:write("instagram: ", code.msg, "\n")
  return code.code
end

return M
