-- The control plane, /__fake/<action> on the plain-HTTP port; driven by
-- spec/support/fake.lua. Bodies are JSON; answers are JSON. Not logged.
local cjson = require "cjson.safe"
local faults = require "faults"
local fixtures = require "fixtures"
local state = require "state"
local tokens = require "tokens"

local function reply(status, text)
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.print(text)
end

local function fail(message)
    return reply(400, cjson.encode({ error = message }))
end

local function first_app_for(cfg, api)
    local ids = {}
    for id, app in pairs(cfg.apps) do
        if app.api == api then ids[#ids + 1] = id end
    end
    table.sort(ids)
    return ids[1]
end

local actions = {}

function actions.ping() return { ok = true, ports = state.ports() } end

function actions.reset()
    state.reset()
    return { ok = true }
end

function actions.config(body)
    if ngx.req.get_method() == "GET" then return state.config() end
    if type(body) ~= "table" then return nil, "config needs a JSON object" end
    return state.merge_config(body)
end

function actions.clear_log()
    state.clear_log()
    return { ok = true }
end

function actions.advance(body)
    if type(body.seconds) ~= "number" then return nil, "advance needs seconds" end
    return { offset = state.advance(body.seconds) }
end

function actions.clock()
    return { now = state.now(), offset = state.clock_offset() }
end

function actions.fault(body)
    if type(body.path) ~= "string" or type(body.spec) ~= "table" then
        return nil, "fault needs path and spec"
    end
    local spec = body.spec
    if spec.mode ~= nil and not faults.known_mode(spec.mode) then
        return nil, "unknown fault mode " .. tostring(spec.mode)
    end
    if spec.status ~= nil and type(spec.status) ~= "number" then return nil, "status must be a number" end
    state.set_fault(body.path, spec)
    return { ok = true }
end

function actions.clear_faults()
    state.clear_faults()
    return { ok = true }
end

function actions.issue_code(body)
    local cfg = state.config()
    local app = cfg.apps[body.client_id or ""]
    if not app then return nil, "unknown client_id " .. tostring(body.client_id) end
    local user_key = body.user_key or (cfg.authorize_user or {})[app.api]
    if not cfg.users[user_key or ""] then return nil, "unknown user " .. tostring(user_key) end
    local scopes = body.scopes or fixtures.SCOPES[app.api].default
    return { code = tokens.new_code(body.client_id, body.redirect_uri or app.redirect_uri, user_key, scopes) }
end

function actions.issue_token(body)
    local cfg = state.config()
    local user = cfg.users[body.user_key or ""]
    if not user then return nil, "unknown user " .. tostring(body.user_key) end
    local api = body.api or user.api or "basic_display"
    if not fixtures.SCOPES[api] then return nil, "unknown api " .. tostring(api) end
    local kind = body.kind or "long"
    if kind ~= "short" and kind ~= "long" then return nil, "kind must be short or long" end
    local client_id = body.client_id or first_app_for(cfg, api)
    local scopes = body.scopes
    if not scopes then
        scopes = {}
        for s in pairs(fixtures.SCOPES[api].valid) do scopes[#scopes + 1] = s end
        table.sort(scopes)
    end
    local rec = tokens.record(body.user_key, api, client_id, scopes, kind, body.age)
    local token = tokens.new_token(rec)
    return { access_token = token, record = rec }
end

-- signs and POSTs a webhook delivery (spec/support/fake/webhooks.lua)
function actions.webhook(body) return require("webhooks").send(body) end

function actions.token(body)
    return { record = state.get_token(body.access_token or "") or cjson.null }
end

-- counts from the business endpoints (publishing): {published, quota_used}
function actions.business()
    return require("business").stats()
end

local action = ngx.var.uri:match("^/__fake/([%w_]+)$")
local fn = action and actions[action]
if action == "log" then
    return reply(200, state.log_json())
end
if not fn then
    return reply(404, cjson.encode({ error = "unknown control action " .. tostring(action) }))
end
ngx.req.read_body()
local body = {}
local text = ngx.req.get_body_data()
if text and text ~= "" then
    body = cjson.decode(text)
    if body == nil then return fail("body is not JSON") end
end
local ok, result, err = pcall(fn, body)
if not ok then
    ngx.log(ngx.ERR, "fake control error: ", result)
    return reply(500, cjson.encode({ error = tostring(result) }))
end
if result == nil then return fail(err) end
return reply(200, cjson.encode(result))
