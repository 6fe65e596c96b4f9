-- The account-level webhook switch, /me/subscribed_apps (PLATFORM.md §1.1): without it an app
-- subscribed in the dashboard still receives nothing for the account.
local errors = require "instagram.errors"
local json = require "instagram.json"

return function(Client, h)
  local function post(self, token, params)
    local req, secrets = self:_graph_request(token, "me/subscribed_apps", params)
    req.method = "POST"
    -- a POST: _send never retries it
    local body, res = self:_send(req, secrets)
    if not body then return nil, res end
    if body.success ~= true then
      return nil, errors.new("response", "subscribed_apps did not answer success",
        { status = res.status }, secrets)
    end
    return true
  end

  -- ig:subscribe_webhooks(token, fields) -> true; fields: array or comma-separated string
  function Client:subscribe_webhooks(token, fields)
    local fname = "ig:subscribe_webhooks"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    return post(self, token, { subscribed_fields = h.fields_string(fname, fields) })
  end

  -- ig:webhook_subscriptions(token) -> array of {id, name, subscribed_fields = {…}} (empty when
  -- the account is not subscribed)
  function Client:webhook_subscriptions(token)
    local fname = "ig:webhook_subscriptions"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    local body, res = self:_graph_get(token, "me/subscribed_apps")
    if not body then return nil, res end
    if type(body.data) ~= "table" then
      return nil, errors.new("response", "subscribed_apps response has no data array", { status = res.status },
        self:_secrets(token))
    end
    local out = {}
    for _, app in ipairs(body.data) do
      if type(app) == "table" then
        local fields = {}
        for _, f in ipairs(type(app.subscribed_fields) == "table" and app.subscribed_fields or {}) do
          if type(f) == "string" then fields[#fields + 1] = f end
        end
        out[#out + 1] = { id = json.id(app.id), name = type(app.name) == "string" and app.name or nil,
          subscribed_fields = fields }
      end
    end
    return out
  end

  -- ig:unsubscribe_webhooks(token) -> true. Sent as POST with method=delete, the Graph API's
  -- method override (both transports speak GET and POST only).
  function Client:unsubscribe_webhooks(token)
    local fname = "ig:unsubscribe_webhooks"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    return post(self, token, { method = "delete" })
  end
end
