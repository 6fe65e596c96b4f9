-- The account-level webhook switch, /me/subscribed_apps (PLATFORM.md §1.1): without it an app
-- subscribed in the dashboard still receives nothing for the account.
local errors = require "instagram.errors"
local json = require "instagram.json"

return function(Client, h)
  -- write(token, method, params, idempotent) -> true | nil, err: a POST (subscribe) is sent once,
  -- a DELETE (unsubscribe) is idempotent and retried like a GET
  local function write(self, token, method, params, idempotent)
    local body, res = self:_graph_write(token, method, "me/subscribed_apps", params, idempotent)
    if not body then return nil, res end
    if body.success ~= true then
      return nil, errors.new("response", "subscribed_apps did not answer success",
        { status = res.status }, self:_secrets(token))
    end
    return true
  end

  -- ig:subscribe_webhooks(token, fields) -> true; fields: array or comma-separated string
  function Client:subscribe_webhooks(token, fields)
    local fname = "ig:subscribe_webhooks"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    return write(self, token, "POST", { subscribed_fields = h.fields_string(fname, fields) }, false)
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

  -- ig:unsubscribe_webhooks(token) -> true (DELETE /me/subscribed_apps)
  function Client:unsubscribe_webhooks(token)
    local fname = "ig:unsubscribe_webhooks"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    return write(self, token, "DELETE", {}, true)
  end

  for _, name in ipairs({ "subscribe_webhooks", "webhook_subscriptions", "unsubscribe_webhooks" }) do
    h.BATCHABLE[name] = true
  end
end
