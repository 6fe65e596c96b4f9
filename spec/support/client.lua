-- Clients of the fake Instagram for the behaviour specs: the basic_display app over HTTPS,
-- trusting the test CA, without back-off waits. Each further table overrides keys of the
-- ones before it; the value NONE removes a key.
local instagram = require "instagram"

local M = { NONE = {} }

function M.config(fake, ...)
  local app = fake.apps.basic_display
  local c = {
    app_id = app.client_id, app_secret = app.secret, redirect_uri = app.redirect_uri, api = "basic_display",
    endpoints = fake:endpoints("https"), ca_file = fake.ca_file, sleep = function() end,
  }
  for i = 1, select("#", ...) do
    for k, v in pairs(select(i, ...) or {}) do
      if v == M.NONE then c[k] = nil else c[k] = v end
    end
  end
  return c
end

function M.new(fake, ...)
  return instagram.new(M.config(fake, ...))
end

-- the same with the fake's instagram_login app (the business endpoints)
function M.login(fake, ...)
  local app = fake.apps.instagram_login
  return M.new(fake, { app_id = app.client_id, app_secret = app.secret, redirect_uri = app.redirect_uri,
    api = "instagram_login" }, ...)
end

return M
