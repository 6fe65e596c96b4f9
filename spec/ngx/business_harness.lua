-- Runs INSIDE the nginx that spec/ngx/business_spec.lua starts: the publishing and comment
-- methods on the cosocket transport, against the fake Instagram. GET /b/<name>?<args>; each
-- handler first makes a GET on the Graph host, so that the connection pool holds a connection the
-- write could be given.
local answer = require "answer"

local M = {}
local cfg -- {https, ca_file, app_id, app_secret, redirect_uri}

function M.configure(c)
  cfg = c
end

local function client(extra)
  local base = (cfg.https:gsub("^(https://)127%.0%.0%.1:", "%1localhost:"))
  local conf = {
    app_id = cfg.app_id, app_secret = cfg.app_secret, redirect_uri = cfg.redirect_uri,
    api = "instagram_login", ca_file = cfg.ca_file, retries = 2, timeout = 3, connect_timeout = 2,
    endpoints = { authorize = base .. "/oauth/authorize", token = base .. "/oauth/access_token", graph = base },
    sleep = function() end,
  }
  for k, v in pairs(extra or {}) do conf[k] = v end
  return require("instagram").new(conf)
end

local function err_table(err)
  if not err then return nil end
  local t = { text = tostring(err) }
  for k, v in pairs(err) do
    local tv = type(v)
    if tv == "string" or tv == "number" or tv == "boolean" then t[k] = v end
  end
  return t
end

local H = {}

-- args: token, call (publish | reply | private_reply | delete_comment | hide_comment | post_image |
-- batch_reply), id, warm ("0" for no warm-up GET)
function H.write(args)
  local ig = client()
  local warm_reused
  if args.warm ~= "0" then
    local _, res = ig:_graph_get(args.token, "me", { fields = "id" })
    warm_reused = res and res.reused
  end
  local v, err
  if args.call == "publish" then
    v, err = ig:publish(args.token, args.id)
  elseif args.call == "reply" then
    v, err = ig:reply(args.token, args.id, "thanks")
  elseif args.call == "private_reply" then
    v, err = ig:private_reply(args.token, args.id, "hello")
  elseif args.call == "delete_comment" then
    v, err = ig:delete_comment(args.token, args.id)
  elseif args.call == "hide_comment" then
    v, err = ig:hide_comment(args.token, args.id, true)
  elseif args.call == "post_image" then
    v, err = ig:post_image(args.token, { image_url = args.url, wait = { initial = 0 } })
  elseif args.call == "post_carousel" then
    v, err = ig:post_carousel(args.token, { items = { { image_url = args.url }, { image_url = args.url },
      { video_url = "https://cdn.example.com/clip.mp4" } }, wait = { initial = 0.05 } })
  elseif args.call == "batch_reply" then
    local r = ig:batch({ { "reply", args.token, args.id, "a" }, { "me", args.token } })
    v, err = r[1].ok and r[1].value or nil, r[1].err
  end
  return { value = v, err = err_table(err), warm = warm_reused }
end

function M.run(name)
  return answer(H, name)
end

return M
