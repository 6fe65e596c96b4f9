-- GET /oauth/authorize and POST /oauth/access_token (INSTAGRAM.md §1-§3).
local fixtures = require "fixtures"
local resp = require "resp"
local state = require "state"
local tokens = require "tokens"
local util = require "util"

local M = {}

local function append_query(uri, query)
    return uri .. (uri:find("?", 1, true) and "&" or "?") .. query
end

-- Scopes as granted (comma- or space-separated, duplicates dropped), or nil
-- and the problem to show.
local function parse_scope(scope, api)
    if scope == false then return nil, "Invalid scope: duplicate scope parameter" end
    local rules = fixtures.SCOPES[api]
    local list, seen = {}, {}
    for _, s in ipairs(util.split_list(scope or "")) do
        if not rules.valid[s] then return nil, "Invalid scope: " .. s end
        if not seen[s] then
            seen[s] = true
            list[#list + 1] = s
        end
    end
    if not seen[rules.required] then
        return nil, "Invalid scope: " .. rules.required .. " is required"
    end
    return list
end

function M.authorize(req)
    if req.method ~= "GET" and req.method ~= "HEAD" then
        return resp.html_error("Invalid request method " .. req.method)
    end
    local args = req.args
    local cfg = state.config()
    local client_id = util.single(args, "client_id")
    local app = client_id and cfg.apps[client_id]
    if not app then return resp.html_error("Invalid client_id") end
    local redirect_uri = util.single(args, "redirect_uri")
    if redirect_uri ~= app.redirect_uri then return resp.html_error("Invalid redirect_uri") end
    local response_type = util.single(args, "response_type")
    if response_type ~= "code" then
        return resp.html_error("Invalid response_type: " .. tostring(response_type or ""))
    end
    local scopes, problem = parse_scope(util.single(args, "scope"), app.api)
    if not scopes then return resp.html_error(problem) end
    local st = util.single(args, "state")
    if st == false then return resp.html_error("Invalid state: duplicate state parameter") end
    local state_part = st and ("&state=" .. ngx.escape_uri(st)) or ""

    if cfg.authorize_mode == "deny" then
        return resp.redirect(append_query(redirect_uri,
            "error=access_denied&error_reason=user_denied"
                .. "&error_description=The+user+denied+your+request" .. state_part))
    end
    local user_key = (cfg.authorize_user or {})[app.api]
    if not user_key or not cfg.users[user_key] then
        return resp.html_error("Insufficient developer role")
    end
    local code = tokens.new_code(client_id, redirect_uri, user_key, scopes)
    return resp.redirect(append_query(redirect_uri, "code=" .. code .. state_part) .. "#_")
end

-- The JSON text of a successful exchange in the app's shape. Built by hand:
-- user_id goes out as a bare number above 2^53, which no double can carry.
local function exchange_body(shape, token, user_id, scopes)
    local q = util.quote
    if shape == "basic" then
        return string.format('{"access_token":%s,"user_id":%s}', q(token), user_id)
    elseif shape == "flat_array" then
        return string.format('{"access_token":%s,"user_id":%s,"permissions":%s}',
            q(token), user_id, util.encode(util.array(scopes)))
    elseif shape == "data_wrapper" then
        return string.format('{"data":[{"access_token":%s,"user_id":%s,"permissions":%s}]}',
            q(token), q(user_id), q(table.concat(scopes, ",")))
    elseif shape == "flat_string" then
        return string.format('{"access_token":%s,"user_id":%s}', q(token), q(user_id))
    end
    error("unknown app shape " .. tostring(shape))
end

local CODE_GONE = "Matching code was not found or was already used"
local REDIRECT_MISMATCH = "Error validating verification code. Please make sure your redirect_uri is "
    .. "identical to the one you used in the OAuth dialog request"

function M.access_token(req)
    if req.method ~= "POST" then return resp.oauth_error("Invalid platform app") end
    local ctype = (req.headers["content-type"] or ""):lower()
    if type(req.headers["content-type"]) == "table"
        or not ctype:match("^%s*application/x%-www%-form%-urlencoded%s*[;]?") then
        return resp.oauth_error("You must provide a client_id")
    end
    local form = req.form or {}
    local fields = {}
    for _, name in ipairs({ "client_id", "client_secret", "grant_type", "redirect_uri", "code" }) do
        local v = util.single(form, name)
        if not v or v == "" then return resp.oauth_error("You must provide a " .. name) end
        fields[name] = v
    end
    local cfg = state.config()
    local app = cfg.apps[fields.client_id]
    if not app or app.secret ~= fields.client_secret then
        return resp.oauth_error("Invalid platform app")
    end
    if fields.grant_type ~= "authorization_code" then
        return resp.oauth_error("Invalid grant_type: " .. fields.grant_type)
    end
    local rec = state.get_code(fields.code)
    if not rec or rec.used or rec.client_id ~= fields.client_id
        or state.now() - rec.issued_at >= fixtures.SHORT_TTL then
        return resp.oauth_error(CODE_GONE)
    end
    if rec.redirect_uri ~= fields.redirect_uri then return resp.oauth_error(REDIRECT_MISMATCH) end
    local user = cfg.users[rec.user_key]
    if not user then return resp.oauth_error(CODE_GONE) end
    rec.used = true
    state.put_code(fields.code, rec)
    local token = tokens.new_token(tokens.record(rec.user_key, app.api, fields.client_id,
        rec.scopes, "short", 0))
    return resp.json(200, exchange_body(app.shape, token, user.id, rec.scopes))
end

return M
