-- Long-lived tokens: exchange, refresh, and refresh when needed (INSTAGRAM.md §4).
local core = require "instagram.core"
local errors = require "instagram.errors"
local json = require "instagram.json"
local singleflight = require "instagram.singleflight"

local DAY = 86400
local REFRESH_MIN_AGE = DAY -- Instagram refuses to refresh a token younger than 24 h

return function(Client, h)
  -- The long-lived endpoints are documented unversioned, so graph_version is not applied here.
  local function token_get(self, path, params, secrets, previous)
    local req = {
      method = "GET",
      url = self.endpoints.graph .. path .. "?" .. core.build_query(params),
      headers = { Accept = "application/json" },
    }
    local body, res = self:_send(req, secrets)
    if not body then return nil, res end
    local token, err = self:_token_from(body, secrets, res)
    if not token then return nil, err end
    if type(previous) == "table" then
      token.user_id = token.user_id or json.id(previous.user_id)
      token.permissions = token.permissions or previous.permissions
    end
    return token
  end

  function Client:exchange_token(short_token)
    local fname = "ig:exchange_token"
    h.check_self(fname, self)
    local token = h.token_string(fname, short_token)
    local secret = self:_secret(fname)
    return token_get(self, "/access_token", {
      { "grant_type", "ig_exchange_token" },
      { "client_secret", secret },
      { "access_token", token },
    }, self:_secrets(token), short_token)
  end

  function Client:refresh_token(long_token)
    local fname = "ig:refresh_token"
    h.check_self(fname, self)
    local token = h.token_string(fname, long_token)
    return token_get(self, "/refresh_access_token", {
      { "grant_type", "ig_refresh_token" },
      { "access_token", token },
    }, self:_secrets(token), long_token)
  end

  local function expired_error(token)
    return errors.new("api", "the token expired; an expired token cannot be refreshed: the user must log in again",
      { code = 190, subcode = 463, type = "OAuthException", token_invalid = true }, { token.access_token })
  end

  -- Single-flight across nginx workers: the first caller refreshes, the others wait for its result
  -- (or its failure), for as long as its refresh can take with this client's timeout and retries.
  local function shared_refresh(self, token, dict_name)
    local ngx = rawget(_G, "ngx")
    local dict = type(ngx) == "table" and ngx.shared and ngx.shared[dict_name]
    if not dict then
      h.raise("ig:refresh_if_needed", "opts.shared_dict '" .. tostring(dict_name) .. "' is not a lua_shared_dict")
    end
    local key = "instagram:refresh:" .. core.hmac_sha256_hex("refresh", token.access_token)
    return singleflight.run(singleflight.shared_dict(dict), key, {
      ttl = self:_longest_send(), result_ttl = 60, failure_ttl = 5, what = "a refresh of this token",
    }, function() return self:refresh_token(token) end)
  end

  function Client:refresh_if_needed(token, opts)
    local fname = "ig:refresh_if_needed"
    h.check_self(fname, self)
    if type(token) ~= "table" then h.raise(fname, "token must be a token table") end
    h.token_string(fname, token)
    if opts ~= nil and type(opts) ~= "table" then h.raise(fname, "opts must be a table") end
    opts = opts or {}
    local within = opts.within or 7 * DAY
    if type(within) ~= "number" or within < 0 then h.raise(fname, "opts.within must be a number of seconds") end

    local now = self:_now()
    local expires_at = tonumber(token.expires_at)
    local issued_at = tonumber(token.issued_at)
    if expires_at and now >= expires_at then
      return nil, expired_error(token)
    end
    if issued_at and now - issued_at < REFRESH_MIN_AGE then
      return token, false
    end
    -- an unknown expiry is learnt by refreshing; a known one waits until it is within reach
    if expires_at and expires_at - now > within then
      return token, false
    end

    local new, err
    if opts.shared_dict then
      new, err = shared_refresh(self, token, opts.shared_dict)
    else
      new, err = self:refresh_token(token)
    end
    if not new then return nil, err end
    return new, true
  end
end
