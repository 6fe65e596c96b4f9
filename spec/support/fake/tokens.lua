-- Codes and tokens: issuing, checking, and the long-lived token endpoints
-- GET /access_token (ig_exchange_token) and GET /refresh_access_token.
local fixtures = require "fixtures"
local resp = require "resp"
local state = require "state"
local util = require "util"

local M = {}

local PREFIX = { basic_display = "IGQVJ", instagram_login = "IGAA" }

function M.new_code(client_id, redirect_uri, user_key, scopes)
    local code = "AQ" .. util.random(126, util.URLSAFE)
    state.put_code(code, {
        client_id = client_id, redirect_uri = redirect_uri, user_key = user_key,
        scopes = scopes, issued_at = state.now(), used = false,
    })
    return code
end

-- rec: {user_key, api, client_id, scopes, kind, issued_at, expires_at}
function M.new_token(rec)
    local token = (PREFIX[rec.api] or "IG") .. util.random(160)
    state.put_token(token, rec)
    return token
end

-- A fresh token record for `kind` ("short" or "long"), issued `age` seconds ago.
function M.record(user_key, api, client_id, scopes, kind, age)
    local issued = state.now() - (age or 0)
    return {
        user_key = user_key, api = api, client_id = client_id, scopes = scopes, kind = kind,
        issued_at = issued,
        expires_at = issued + (kind == "long" and fixtures.LONG_TTL or fixtures.SHORT_TTL),
    }
end

local function http_date(t)
    return os.date("!%A, %d-%b-%y %H:%M:%S GMT", math.floor(t))
end

function M.invalid_token()
    return resp.graph_error(190, "Invalid OAuth access token - Cannot parse access token")
end

-- The token's record, or nil plus the Graph error to answer with.
function M.check(token)
    if type(token) ~= "string" or token == "" then
        return nil, resp.graph_error(104, "An access token is required to request this resource.")
    end
    local rec = state.get_token(token)
    if not rec then return nil, M.invalid_token() end
    local now = state.now()
    if now >= rec.expires_at then
        return nil, resp.graph_error(190, string.format(
            "Error validating access token: Session has expired on %s. The current time is %s.",
            http_date(rec.expires_at), http_date(now)), { subcode = 463 })
    end
    return rec
end

local function token_body(token, rec)
    local body = util.object()
    util.put(body, "access_token", token)
    util.put(body, "token_type", "bearer")
    util.put(body, "expires_in", math.floor(rec.expires_at - state.now()))
    return resp.json(200, body)
end

local function param(args, name)
    local v = util.single(args, name)
    if v == false then return nil, resp.graph_error(100, "(#100) Duplicate parameter " .. name) end
    if v == nil or v == "" then
        return nil, resp.graph_error(100, "(#100) The parameter " .. name .. " is required")
    end
    return v
end

-- GET /access_token?grant_type=ig_exchange_token&client_secret=...&access_token=<short>
function M.exchange(args)
    local grant, err = param(args, "grant_type")
    if not grant then return err end
    if grant ~= "ig_exchange_token" then
        return resp.graph_error(100, "(#100) Unsupported grant_type: " .. grant)
    end
    local secret
    secret, err = param(args, "client_secret")
    if not secret then return err end
    local token = util.single(args, "access_token")
    local rec
    rec, err = M.check(token)
    if not rec then return err end
    local app = state.config().apps[rec.client_id]
    if not app or app.secret ~= secret then
        return resp.graph_error(100, "Error validating client secret.")
    end
    if rec.kind ~= "short" then
        return resp.graph_error(100, "(#100) Only short-lived access tokens can be exchanged")
    end
    local long = M.record(rec.user_key, rec.api, rec.client_id, rec.scopes, "long", 0)
    local new = M.new_token(long)
    return token_body(new, long)
end

-- GET /refresh_access_token?grant_type=ig_refresh_token&access_token=<long>
function M.refresh(args)
    local grant, err = param(args, "grant_type")
    if not grant then return err end
    if grant ~= "ig_refresh_token" then
        return resp.graph_error(100, "(#100) Unsupported grant_type: " .. grant)
    end
    local token = util.single(args, "access_token")
    local rec
    rec, err = M.check(token)
    if not rec then return err end
    if rec.kind ~= "long" then
        return resp.graph_error(100, "(#100) Only long-lived access tokens can be refreshed")
    end
    if state.now() - rec.issued_at < fixtures.REFRESH_MIN_AGE then
        return resp.graph_error(100,
            "(#100) The access token must be at least 24 hours old to be refreshed")
    end
    local fresh = M.record(rec.user_key, rec.api, rec.client_id, rec.scopes, "long", 0)
    if state.config().refresh_new_token then
        state.delete_token(token)
        token = M.new_token(fresh)
    else
        state.put_token(token, fresh)
    end
    return token_body(token, fresh)
end

return M
