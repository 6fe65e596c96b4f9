-- Graph API reads (INSTAGRAM.md §5): /me, /{user-id}, /{user-id}/media,
-- /{media-id}, /{media-id}/children, with fields, field expansion, cursor
-- paging and usage headers.
local business = require "business"
local cdn = require "cdn"
local fixtures = require "fixtures"
local resp = require "resp"
local state = require "state"
local tokens = require "tokens"
local util = require "util"

local M = {}

local DEFAULT_LIMIT = 25
local USER_DEFAULT = { { name = "id" }, { name = "username" } }
local MEDIA_DEFAULT = { { name = "id" } }

local function trim(s)
    return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- "id,children{id,media_type}" -> { {name="id"}, {name="children", sub={...}} }
local function parse_fields(s)
    local items, depth, start = {}, 0, 1
    for j = 1, #s do
        local c = s:sub(j, j)
        if c == "{" then
            depth = depth + 1
        elseif c == "}" then
            depth = depth - 1
        elseif c == "," and depth == 0 then
            items[#items + 1] = s:sub(start, j - 1)
            start = j + 1
        end
    end
    items[#items + 1] = s:sub(start)
    local out = {}
    for _, item in ipairs(items) do
        item = trim(item)
        if item ~= "" then
            local name, sub = item:match("^([^{}]*){(.*)}$")
            out[#out + 1] = { name = trim(name or item), sub = sub and parse_fields(sub) or nil }
        end
    end
    return out
end

local function set_of(list)
    local s = {}
    for _, v in ipairs(list) do s[v] = true end
    return s
end

-- nil, or the code-100 error for the first field the node type lacks.
local function validate(fields, api, node_type)
    local known = set_of(node_type == "User" and fixtures.USER_FIELDS[api] or fixtures.MEDIA_FIELDS[api])
    for _, f in ipairs(fields) do
        if not known[f.name] then
            return resp.graph_error(100, string.format(
                "(#100) Tried accessing nonexisting field (%s) on node type (%s)", f.name, node_type))
        end
        if f.sub then
            local err = validate(f.sub, api, "Media")
            if err then return err end
        end
    end
    return nil
end

local function cursor(i)
    return (ngx.encode_base64("fake-cursor:" .. i):gsub("%+", "-"):gsub("/", "_"):gsub("=", ""))
end

local function cursor_index(c)
    local text = ngx.decode_base64((c:gsub("-", "+"):gsub("_", "/")
        .. string.rep("=", (4 - #c % 4) % 4)))
    return text and tonumber(text:match("^fake%-cursor:(%d+)$"))
end

local render_media

-- One page of `list`; `req` given for top-level edges (absolute next/previous
-- links), nil for field expansion; `render` (default: media) renders one item.
local function page(list, fields, api, args, req, render)
    local limit = math.floor(tonumber(util.single(args, "limit") or "") or DEFAULT_LIMIT)
    if limit < 1 then limit = DEFAULT_LIMIT end
    local after, before = util.single(args, "after"), util.single(args, "before")
    local first = 1
    if after then
        local i = cursor_index(after)
        if not i then return nil, resp.graph_error(100, "(#100) Invalid cursor: " .. after) end
        first = i + 1
    elseif before then
        local i = cursor_index(before)
        if not i then return nil, resp.graph_error(100, "(#100) Invalid cursor: " .. before) end
        first = math.max(1, i - limit)
        limit = math.min(limit, i - first)
    end
    local last = math.min(#list, first + limit - 1)
    local data = util.array()
    for i = first, last do data[#data + 1] = (render or render_media)(list[i], fields, api) end

    local out = util.object()
    util.put(out, "data", data)
    if #data == 0 then return out end
    local paging, cursors = util.object(), util.object()
    util.put(cursors, "before", cursor(first))
    util.put(cursors, "after", cursor(last))
    util.put(paging, "cursors", cursors)
    if req then
        local cfg = state.config()
        local base = req.scheme .. "://" .. req.host
        if cfg.foreign_next then base = "http://127.0.0.1:" .. state.ports().alt end
        local link = function(name, c)
            local q = util.query_without(req.query, { after = true, before = true })
            q[#q + 1] = name .. "=" .. c
            return base .. req.path .. "?" .. table.concat(q, "&")
        end
        if cfg.cursor_loop then
            util.put(paging, "next", link("after", after or cursor(last)))
        elseif last < #list then
            util.put(paging, "next", link("after", cursor(last)))
        end
        if first > 1 then util.put(paging, "previous", link("before", cursor(first))) end
    end
    util.put(out, "paging", paging)
    return out
end

function render_media(m, fields, api)
    local out = util.object()
    for _, f in ipairs(fields or MEDIA_DEFAULT) do
        if f.name == "children" then
            if m.children then
                util.put(out, "children", page(m.children, f.sub, api, {}))
            end
        elseif f.name == "media_url" or f.name == "thumbnail_url" then
            util.put(out, f.name, cdn.sign(m[f.name]))
        else
            util.put(out, f.name, m[f.name])
        end
    end
    return out
end

local function render_user(user, fields, api, media)
    local out = util.object()
    for _, f in ipairs(fields or USER_DEFAULT) do
        if f.name == "media" then
            util.put(out, "media", page(media, f.sub, api, {}))
        else
            util.put(out, f.name, user[f.name])
        end
    end
    return out
end

local function find_media(list, id)
    for _, m in ipairs(list) do
        if m.id == id then return m end
        for _, c in ipairs(m.children or {}) do
            if c.id == id then return c end
        end
    end
    return nil
end

local function route(req, rec)
    local cfg = state.config()
    local user = cfg.users[rec.user_key]
    if not user then return tokens.invalid_token() end
    local media = (cfg.media or {})[rec.user_key] or {}
    local api = rec.api

    local segs = {}
    for s in req.graph_path:gmatch("[^/]+") do segs[#segs + 1] = s end
    local id, edge = segs[1], segs[2]
    if id and #segs <= 2 then
        local answer = business.route(M, req, rec, user, segs, function(mid) return find_media(media, mid) end)
        if answer then return answer end
    end
    if not id or #segs > 2 or (req.method ~= "GET" and req.method ~= "HEAD") then
        return resp.unsupported(req.method, id or "")
    end

    local fields
    local fields_arg = util.single(req.args, "fields")
    if fields_arg then fields = parse_fields(fields_arg) end
    if fields and #fields == 0 then fields = nil end

    local is_user = id == "me" or id == user.id or (api == "instagram_login" and id == user.user_id)
    if is_user then
        if edge == nil then
            local err = fields and validate(fields, api, "User")
            if err then return err end
            return resp.json(200, render_user(user, fields, api, media))
        elseif edge == "media" then
            local err = fields and validate(fields, api, "Media")
            if err then return err end
            local body
            body, err = page(media, fields, api, req.args, req)
            return body and resp.json(200, body) or err
        end
        return resp.graph_error(100, string.format(
            "(#100) Tried accessing nonexisting field (%s) on node type (User)", edge))
    end

    local m = find_media(media, id)
    if not m then return resp.unsupported(req.method, id) end
    local err = fields and validate(fields, api, "Media")
    if err then return err end
    if edge == nil then
        return resp.json(200, render_media(m, fields, api))
    elseif edge == "children" then
        local body
        body, err = page(m.children or {}, fields, api, req.args, req)
        return body and resp.json(200, body) or err
    end
    return resp.graph_error(100, string.format(
        "(#100) Tried accessing nonexisting field (%s) on node type (Media)", edge))
end

-- Counts the call and adds X-App-Usage (and, for Instagram Login tokens,
-- X-Business-Use-Case-Usage keyed by the account's user_id).
function M.with_usage(r, rec)
    local cfg = state.config()
    local user = rec and cfg.users[rec.user_key]
    local app_calls, user_calls = state.count_call(user and rec.user_key)
    local usage = cfg.app_usage
    if type(usage) ~= "table" then
        usage = util.object()
        util.put(usage, "call_count", app_calls)
        util.put(usage, "total_cputime", 1)
        util.put(usage, "total_time", 1)
    end
    r.headers["X-App-Usage"] = util.encode(usage)
    if user and rec.api == "instagram_login" then
        local entry = util.object()
        util.put(entry, "type", "instagram")
        util.put(entry, "call_count", user_calls)
        util.put(entry, "total_cputime", 1)
        util.put(entry, "total_time", 1)
        util.put(entry, "estimated_time_to_regain_access", 0)
        r.headers["X-Business-Use-Case-Usage"] = util.encode({ [user.user_id or user.id] = util.array({ entry }) })
    end
    return r
end

function M.bearer(headers)
    local h = headers.authorization
    if type(h) ~= "string" then return nil end
    return h:match("^%s*[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
end

M.page, M.parse_fields = page, parse_fields

-- The request's token: the access_token query parameter, then a form body's, then Bearer.
function M.token_of(req)
    local token = util.single(req.args, "access_token")
    if token == nil and req.form then token = util.single(req.form, "access_token") end
    if token == nil then token = M.bearer(req.headers) end
    return token
end

function M.handle(req)
    local rec, err = tokens.check(M.token_of(req) or nil)
    if not rec then return M.with_usage(err, nil) end
    return M.with_usage(route(req, rec), rec)
end

return M
