-- State of the fake server, kept in lua_shared_dicts as JSON so it survives
-- across requests: config (apps, users, media, modes), codes, tokens, faults,
-- the fake clock, usage counters (fake_state) and the request log (fake_log).
local cjson = require "cjson.safe"
local fixtures = require "fixtures"
local util = require "util"

local S = ngx.shared.fake_state
local L = ngx.shared.fake_log

local M = {}

local function put(key, value)
    local ok, err = S:safe_set(key, cjson.encode(value))
    if not ok then error("fake_state full: " .. tostring(err)) end
end

local function get(key)
    local text = S:get(key)
    if text == nil then return nil end
    return cjson.decode(text)
end

-- Called from init_by_lua with the listening ports.
function M.boot(ports)
    put("ports", ports)
    M.reset()
end

function M.ports()
    return get("ports")
end

function M.reset()
    local ports = S:get("ports")
    S:flush_all()
    S:flush_expired()
    S:set("ports", ports)
    put("config", fixtures.config())
    S:set("clock_offset", 0)
    M.clear_log()
end

function M.config()
    return get("config")
end

function M.merge_config(patch)
    local cfg = util.deep_merge(M.config(), patch)
    put("config", cfg)
    return cfg
end

-- The fake clock: real time plus an offset moved by f:advance().
function M.now()
    return ngx.now() + (S:get("clock_offset") or 0)
end

function M.advance(seconds)
    return S:incr("clock_offset", seconds, 0)
end

function M.clock_offset()
    return S:get("clock_offset") or 0
end

-- Authorization codes: {client_id, redirect_uri, user_key, scopes, issued_at, used}
function M.put_code(code, rec) put("code:" .. code, rec) end
function M.get_code(code) return get("code:" .. code) end

-- Tokens: {user_key, api, client_id, scopes, kind, issued_at, expires_at}
function M.put_token(token, rec) put("token:" .. token, rec) end
function M.get_token(token) return get("token:" .. token) end
function M.delete_token(token) S:delete("token:" .. token) end

-- Usage counters for the X-App-Usage / X-Business-Use-Case-Usage headers.
function M.count_call(user_key)
    local app = S:incr("calls", 1, 0)
    local user = user_key and S:incr("calls:" .. user_key, 1, 0)
    return app, user
end

-- Faults: one spec per exact request path, or "*".
function M.set_fault(path, spec)
    put("fault:" .. path, spec)
    S:delete("fault_hits:" .. path)
    local paths = get("fault_paths") or {}
    local seen = false
    for _, p in ipairs(paths) do seen = seen or p == path end
    if not seen then paths[#paths + 1] = path end
    put("fault_paths", paths)
end

function M.clear_faults()
    for _, p in ipairs(get("fault_paths") or {}) do
        S:delete("fault:" .. p)
        S:delete("fault_hits:" .. p)
    end
    S:delete("fault_paths")
end

-- The fault that applies to this request, counting it against `times`.
function M.take_fault(path)
    for _, key in ipairs({ path, "*" }) do
        local spec = get("fault:" .. key)
        if spec then
            local hits = S:incr("fault_hits:" .. key, 1, 0)
            if spec.times == nil or hits <= spec.times then return spec end
            return nil
        end
    end
    return nil
end

-- Request log: entries "e:<n>" in arrival order, each a JSON object.
-- Numbering never restarts, so a request still in flight across a clear
-- cannot overwrite a newer entry when it finishes.
function M.clear_log()
    local n = L:get("n") or 0
    L:flush_all()
    L:flush_expired()
    L:set("n", n)
    L:set("first", n + 1)
end

function M.log_start(entry)
    local n = L:incr("n", 1, 0)
    local ok, err = L:safe_set("e:" .. n, cjson.encode(entry))
    if not ok then ngx.log(ngx.ERR, "fake_log full: ", err) end
    return n
end

function M.log_update(n, fields)
    local text = L:get("e:" .. n)
    if not text then return end
    local entry = cjson.decode(text)
    for k, v in pairs(fields) do entry[k] = v end
    L:set("e:" .. n, cjson.encode(entry))
end

-- The whole log as a JSON array text (entries are stored encoded already).
function M.log_json()
    local out = {}
    for i = L:get("first") or 1, L:get("n") or 0 do
        local text = L:get("e:" .. i)
        if text then out[#out + 1] = text end
    end
    return "[" .. table.concat(out, ",") .. "]"
end

return M
