-- `instagram --fake`: runs a subcommand against the fake Instagram of the specs
-- (spec/support/fake.lua: Debian's nginx with the Lua module on loopback ports). The source
-- rock ships spec/support; bin/instagram puts it on package.path. Anything missing is said in
-- one line.
local M = {}

local USERS = { basic_display = "jayposiris", instagram_login = "biz" }

local function first_line(s)
  return (tostring(s):match("^%s*([^\n]*)"))
end

-- start() -> fake | nil, message
function M.start()
  local ok, Fake = pcall(require, "spec.support.fake")
  if not ok then
    local msg = tostring(Fake)
    if msg:find("module 'spec.support.fake' not found", 1, true) then
      return nil, "--fake needs the fake server (spec/support of the lua-instagram source or its .src.rock), "
        .. "which is not installed next to this command"
    end
    local mod = msg:match("module '([^']+)' not found")
    if mod then
      local pkg = ({ socket = "lua-socket", ["socket.http"] = "lua-socket", ltn12 = "lua-socket",
        cjson = "lua-cjson" })[mod]
      return nil, "--fake needs the Lua module '" .. mod .. "'" .. (pkg and (" (Debian: " .. pkg .. ")") or "")
    end
    return nil, "--fake could not load the fake server: " .. first_line(msg)
  end
  local started, f = pcall(Fake.start, { quiet = true })
  if not started then
    return nil, "--fake could not start the fake Instagram (it needs nginx with the Lua module: Debian "
      .. "nginx-light, libnginx-mod-http-lua; and openssl): " .. first_line(f)
  end
  return f
end

-- The client config of the fake's default app for `api`.
function M.config(f, api)
  local app = f.apps[api]
  return {
    api = api, app_id = app.client_id, app_secret = app.secret, redirect_uri = app.redirect_uri,
    endpoints = f:endpoints("https"), ca_file = f.ca_file,
  }
end

-- A long-lived token of the fake's default user for `api`, two days old (so that
-- `token refresh --force` is allowed), as a token table.
function M.token(f, api, now)
  local key = USERS[api]
  local age = 2 * 86400
  local access_token = f:issue_token(key, { kind = "long", age = age, api = api })
  local users = f:config().users or {}
  local user = users[key] or {}
  local lifetime = 60 * 86400
  return {
    access_token = access_token, user_id = user.id and tostring(user.id) or nil, username = user.username or key,
    token_type = "bearer", issued_at = now - age, expires_in = lifetime, expires_at = now - age + lifetime,
  }
end

-- What the browser does with the Authorization Window URL: load it, and not follow the redirect.
function M.browse(core, f, url)
  local session = core.session({ ca_file = f.ca_file, user_agent = "browser", timeout = 10,
    connect_timeout = 5, max_response_bytes = 65536, allow_http = false })
  local res, kind, msg = session:perform({ method = "GET", url = url })
  session:close()
  if not res then return nil, "the fake authorization window failed: " .. tostring(kind) .. ": " .. tostring(msg) end
  local location = res.headers and res.headers.location
  if res.status ~= 302 or not location then
    return nil, "the fake authorization window did not redirect (HTTP " .. tostring(res.status) .. ")"
  end
  return location
end

return M
