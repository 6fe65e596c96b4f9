-- The cron job of one machine: keep every token in a file store alive with instagram.keeper.
--
--   lua5.4 examples/keeper_sweep.lua /var/lib/mysite/instagram   (app credentials in IG_APP_ID,
--                                      IG_APP_SECRET, IG_REDIRECT_URI; the login callback put the
--                                      tokens there with keeper:add)
--   lua5.4 examples/keeper_sweep.lua --fake                       (a self-contained run against the
--                                      bundled fake Instagram, in a temp directory)
--
-- Two runs at once (a slow run overlapping the next) refresh each token once: the store's flock
-- locks see to it. A token Instagram calls invalid is marked dead, and on_dead says so once.
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
if not package.cpath:find("build/", 1, true) then
  package.cpath = "build/" .. (_VERSION == "Lua 5.4" and "5.4" or "5.1") .. "/?.so;" .. package.cpath
end

local instagram = require "instagram"

local DAY = 86400

local function sweep(ig, dir)
  local keeper = instagram.keeper.new({
    client = ig, store = instagram.store.file({ dir = dir }),
    on_dead = function(user_id, err)
      -- a real site emails the account's owner here
      print(string.format("%-8s needs to log in again: %s", user_id, tostring(err)))
    end,
  })
  local counts, err = keeper:sweep()
  if not counts then error("sweep: " .. tostring(err), 0) end
  for _, st in ipairs(assert(keeper:status())) do
    print(string.format("%-8s %-4s expires %s", st.user_id, st.state,
      st.expires_at and os.date("!%Y-%m-%d", st.expires_at) or "unknown"))
  end
  print(string.format("refreshed %d, not due %d, dead %d, failed %d",
    counts.refreshed, counts.not_due, counts.dead, counts.failed))
  return counts
end

if arg[1] == "--fake" then
  local Fake = require "spec.support.fake"
  local fake = Fake.start({ quiet = true })
  local dir = os.tmpname()
  os.remove(dir)
  local ok, err = pcall(function()
    local app = fake.apps.basic_display
    local ig = instagram.new({
      api = "basic_display", app_id = app.client_id, app_secret = app.secret, redirect_uri = app.redirect_uri,
      endpoints = fake:endpoints("https"), ca_file = fake.ca_file,
    })
    local keeper = instagram.keeper.new({ client = ig, store = instagram.store.file({ dir = dir }) })
    local now = os.time()
    local function add(user_id, age, access_token)
      keeper:add({ access_token = access_token or fake:issue_token("jayposiris", { kind = "long", age = age }),
        user_id = user_id, issued_at = now - age, expires_at = now - age + 60 * DAY })
    end
    add("1001", 2 * DAY)                                   -- young: left alone
    add("1002", 55 * DAY)                                  -- due: refreshed
    add("1003", 55 * DAY, "IGQVJrevoked" .. string.rep("x", 40)) -- revoked: dead
    sweep(ig, dir)
  end)
  os.execute("rm -rf '" .. dir .. "'")
  fake:stop()
  if not ok then error(err, 0) end
  return
end

local dir = arg[1] or error("usage: keeper_sweep.lua DIR | --fake", 0)
local ig = instagram.new({
  app_id = os.getenv("IG_APP_ID"), app_secret = os.getenv("IG_APP_SECRET"),
  redirect_uri = os.getenv("IG_REDIRECT_URI"),
})
local counts = sweep(ig, dir)
os.exit(counts.failed == 0)
