-- make example: the login app (nginx.conf + app.lua) against the fake Instagram
-- (spec/support/fake.lua), behind the sample TLS front (tls-front.conf), all on 127.0.0.1.
-- Prints the URL to open and stays up until Ctrl-C (SIGINT), then stops every nginx it started
-- (if it is killed instead, spec/support/nginx.lua's watchdogs do that within a second or two).
--
--   lua5.4 examples/openresty/with_fake.lua [--port N] [--api instagram_login|basic_display]
--                                           [--info FILE] [--timeout SECONDS]
--
-- --port: the https port of the front (default 8443). The fake's app is re-registered with the
-- redirect URI https://localhost:<port>/auth/. Trust the fake's test CA (its path is printed) in
-- the browser, or accept its warning once for the front and once for the fake's authorize page.
-- --info FILE: also write the URLs, paths and credentials as JSON (for spec/browser/).
-- Needs lua5.4 with lua-socket and lua-cjson, nginx with the Lua module, and `make build`.
local script_dir = (debug.getinfo(1, "S").source:gsub("^@", ""):match("^(.*)/[^/]*$")) or "."
package.path = script_dir .. "/../../?.lua;" .. package.path

local cjson = require "cjson"
local socket = require "socket"
local Fake = require "spec.support.fake"
local Nginx = require "spec.support.nginx"

local opts = { port = 8443, api = "instagram_login", timeout = 5 }
local i = 1
while i <= #arg do
  local key, value = arg[i]:match("^%-%-(%w+)$"), arg[i + 1]
  if not key or opts[key] == nil and key ~= "info" or value == nil then
    io.stderr:write("usage: with_fake.lua [--port N] [--api NAME] [--info FILE] [--timeout SECONDS]\n")
    os.exit(2)
  end
  opts[key] = value
  i = i + 2
end
local port = tonumber(opts.port)

local root = Nginx.repo_root()
local f = Fake.start({ quiet = true })
local app, front

local function fail(msg)
  io.stderr:write("make example: ", msg, "\n")
  if front then front:stop() end
  if app then app:stop() end
  f:stop()
  os.exit(1)
end

local registered = f.apps[opts.api]
if not registered then fail("unknown --api " .. tostring(opts.api)) end
local site = "https://localhost:" .. port
local redirect_uri = site .. "/auth/"
-- the fake's apps are registered for https://localhost/auth/ (port 443); this front has its own port
f:config({ apps = { [registered.client_id] = { redirect_uri = redirect_uri } } })

local urandom = assert(io.open("/dev/urandom", "rb"))
local cookie_secret = (urandom:read(32):gsub(".", function(c) return string.format("%02x", c:byte()) end))
urandom:close()

local ok, err = pcall(function()
  app = Nginx.start(assert(Nginx.read_file(script_dir .. "/nginx.conf")), {
    ROOT = root, CA_FILE = f.ca_file, RESOLVER = "127.0.0.1",
  }, {
    IG_APP_ID = registered.client_id, IG_APP_SECRET = registered.secret, IG_REDIRECT_URI = redirect_uri,
    IG_API = opts.api, IG_COOKIE_SECRET = cookie_secret, IG_TIMEOUT = tostring(opts.timeout),
    -- nginx verifies names, not IP SANs: the fake as "localhost" (its certificate has both)
    IG_ENDPOINT_BASE = "https://localhost:" .. f.ports.https,
  }, { name = "example-app" })
  local cert_dir = f.ca_file:match("^(.*)/[^/]*$")
  front = Nginx.start(assert(Nginx.read_file(script_dir .. "/tls-front.conf")), {
    LISTEN = "127.0.0.1:" .. port, CERT = cert_dir .. "/server.pem", KEY = cert_dir .. "/server.key",
    APP = "127.0.0.1:" .. app.port,
  }, nil, {
    name = "example-front",
    ready = function()
      local s = socket.tcp()
      s:settimeout(0.2)
      local connected = s:connect("127.0.0.1", port)
      s:close()
      return connected ~= nil
    end,
  })
end)
if not ok then fail(tostring(err)) end

if opts.info then
  local out = assert(io.open(opts.info .. ".tmp", "w"))
  out:write(cjson.encode({
    url = site .. "/", redirect_uri = redirect_uri, api = opts.api,
    app_id = registered.client_id, app_secret = registered.secret, cookie_secret = cookie_secret,
    fake_control = f.http, fake_https = "https://localhost:" .. f.ports.https, ca_file = f.ca_file,
    app_prefix = app.prefix, app_pid = app.pid, front_prefix = front.prefix, front_pid = front.pid,
    fake_pid = f.pid,
  }))
  out:close()
  assert(os.rename(opts.info .. ".tmp", opts.info))
end

io.stderr:write(string.format([[
lua-instagram example against the fake Instagram
  open        %s/
  TLS CA      %s   (trust it, or accept the browser's warnings)
  app         %s (logs in %s)
  fake        control %s, https://localhost:%d
Ctrl-C stops everything.
]], site, f.ca_file, "http://127.0.0.1:" .. app.port, app.prefix, f.http, f.ports.https))

-- short sleeps: lua5.4 turns Ctrl-C into an "interrupted!" error at the next Lua instruction,
-- and a long socket.sleep would hold it off
pcall(function() while true do socket.sleep(0.2) end end)
front:stop()
app:stop()
f:stop()
io.stderr:write("make example: stopped\n")
