-- A daily cron job: keep every stored long-lived token alive.
--
--   lua5.4 examples/refresh_tokens.lua tokens.json     (app credentials in IG_APP_ID, IG_APP_SECRET,
--                                                      IG_REDIRECT_URI; tokens.json maps a user to a token table)
--   lua5.4 examples/refresh_tokens.lua --fake          (a self-contained run against the bundled fake Instagram)
--
-- Each token is refreshed when it is at least 24 h old and expires within 7 days; one failure
-- never stops the others; a token Instagram calls invalid needs the user to log in again.
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
if not package.cpath:find("build/", 1, true) then
  package.cpath = "build/" .. (_VERSION == "Lua 5.4" and "5.4" or "5.1") .. "/?.so;" .. package.cpath
end

local instagram = require "instagram"
local cjson = require "cjson"

local DAY = 86400

local function read_json(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return cjson.decode(text)
end

local function write_json(path, value)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "wb"))
  f:write(cjson.encode(value))
  f:close()
  assert(os.rename(tmp, path))
end

local function refresh_all(ig, store)
  local counts = { refreshed = 0, kept = 0, relogin = 0, failed = 0 }
  local users = {}
  for user in pairs(store) do users[#users + 1] = user end
  table.sort(users)
  for _, user in ipairs(users) do
    local token, refreshed = ig:refresh_if_needed(store[user])
    if token then
      store[user] = token
      local outcome = refreshed and "refreshed" or "kept"
      counts[outcome] = counts[outcome] + 1
      print(string.format("%-12s %-9s expires %s", user, outcome,
        token.expires_at and os.date("!%Y-%m-%d", token.expires_at) or "unknown"))
    else
      local err = refreshed
      local outcome = err.token_invalid and "relogin" or "failed"
      counts[outcome] = counts[outcome] + 1
      print(string.format("%-12s %-9s %s", user, outcome, tostring(err)))
    end
  end
  print(string.format("refreshed %d, kept %d, need login %d, failed %d",
    counts.refreshed, counts.kept, counts.relogin, counts.failed))
  return counts
end

if arg[1] == "--fake" then
  local Fake = require "spec.support.fake"
  local fake = Fake.start({ quiet = true })
  local ok, err = pcall(function()
    local app = fake.apps.basic_display
    local ig = instagram.new({
      api = "basic_display", app_id = app.client_id, app_secret = app.secret, redirect_uri = app.redirect_uri,
      endpoints = fake:endpoints("https"), ca_file = fake.ca_file,
    })
    local now = os.time()
    local function stored(age)
      return { access_token = fake:issue_token("jayposiris", { kind = "long", age = age }), token_type = "bearer",
        user_id = "17841405793187219", issued_at = now - age, expires_in = 60 * DAY,
        expires_at = now - age + 60 * DAY }
    end
    local path = os.tmpname()
    write_json(path, { alice = stored(2 * DAY), bob = stored(55 * DAY), carol = stored(61 * DAY) })
    refresh_all(ig, read_json(path))
    os.remove(path)
  end)
  fake:stop()
  if not ok then error(err, 0) end
  return
end

local path = arg[1] or error("usage: refresh_tokens.lua tokens.json | --fake", 0)
local ig = instagram.new({
  app_id = os.getenv("IG_APP_ID"), app_secret = os.getenv("IG_APP_SECRET"),
  redirect_uri = os.getenv("IG_REDIRECT_URI"),
})
local store = read_json(path)
local counts = refresh_all(ig, store)
write_json(path, store)
os.exit(counts.failed == 0)
