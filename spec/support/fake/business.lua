-- The business half of the Graph API (PLATFORM.md §2–§4): publishing
-- containers and their state machine, media_publish with its quota,
-- comments and moderation, private replies, and insights.
--
-- A container's fate is chosen by its media URL, as a real server's would be
-- by the media it fetches: a URL containing
--   "stuck"          stays IN_PROGRESS for ever;
--   "slow"           is IN_PROGRESS for 3 status reads, then FINISHED;
--   "error2207082"   ends in ERROR with an empty status_code and the subcode only in `status`;
--   "expired"        is EXPIRED;
-- anything else is IN_PROGRESS for config.publishing.in_progress_reads (default 1) reads.
-- Containers also expire 24 h (fake clock) after creation if never published.
local cjson = require "cjson.safe"
local resp = require "resp"
local state = require "state"
local util = require "util"

local M = {}

local S = ngx.shared.fake_state
local DAY = 86400

local function get(key)
    local text = S:get("biz:" .. key)
    return text and cjson.decode(text) or nil
end

local function put(key, value)
    local ok, err = S:safe_set("biz:" .. key, cjson.encode(value))
    if not ok then error("fake_state full: " .. tostring(err)) end
end

local function new_id(prefix)
    local n = S:incr("biz:serial", 1, 0)
    return prefix .. string.format("%06d", n)
end

local function publishing_config()
    local p = state.config().publishing or {}
    return {
        in_progress_reads = p.in_progress_reads or 1,
        quota_total = p.quota_total or 100,
        quota_used = p.quota_used or 0,
        block_on_publish = p.block_on_publish or false, -- answer 4/2207051 although it published
    }
end

-- Parameters from the query, a form body or a JSON body (Meta's 2025 samples send JSON).
local function params_of(req)
    local out = {}
    for k, v in pairs(req.args or {}) do out[k] = v end
    if req.form then
        for k, v in pairs(req.form) do out[k] = v end
    elseif type(req.headers["content-type"]) == "string"
        and req.headers["content-type"]:lower():match("^%s*application/json") then
        local body = cjson.decode(req.body)
        if type(body) == "table" then
            for k, v in pairs(body) do out[k] = v end
        end
    end
    return out
end

local function param(p, name)
    local v = p[name]
    if type(v) == "table" and v[1] ~= nil then return false end
    if v == true then return "" end
    return v
end

local function success()
    local o = util.object()
    util.put(o, "success", true)
    return resp.json(200, o)
end

local function id_body(id)
    local o = util.object()
    util.put(o, "id", id)
    return resp.json(200, o)
end

---------------------------------------------------------------------------
-- publishing

local function media_url_of(c)
    return tostring(c.image_url or c.video_url or "")
end

-- Advances a container one status read and returns its status_code, status.
local function read_status(c)
    if c.status_code == "PUBLISHED" or c.status_code == "ERROR" or c.status_code == "EXPIRED" then
        return c
    end
    if state.now() - c.created_at > DAY then
        c.status_code, c.status = "EXPIRED", "Container expired"
        return c
    end
    local url = media_url_of(c)
    if url:find("expired", 1, true) then
        c.status_code, c.status = "EXPIRED", "Container expired"
    elseif url:find("error2207082", 1, true) then
        c.status_code = ""
        c.status = "Error: Media upload has failed with error code 2207082"
    elseif url:find("stuck", 1, true) then
        c.status_code, c.status = "IN_PROGRESS", "In Progress"
    else
        local needed = url:find("slow", 1, true) and 3 or publishing_config().in_progress_reads
        if c.type == "CAROUSEL" then needed = 0 end
        c.reads = (c.reads or 0) + 1
        if c.reads > needed then
            c.status_code, c.status = "FINISHED", "Finished: Media has been uploaded and it is ready to be published."
        else
            c.status_code, c.status = "IN_PROGRESS", "In Progress"
        end
    end
    return c
end

local function create_container(req, user)
    local p = params_of(req)
    local c = { created_at = state.now(), owner = user.user_id or user.id, reads = 0 }
    for _, k in ipairs({ "image_url", "video_url", "caption", "media_type", "alt_text", "children",
        "cover_url", "thumb_offset", "share_to_feed", "user_tags", "collaborators", "is_carousel_item" }) do
        local v = param(p, k)
        if v == false then return resp.graph_error(100, "(#100) Duplicate parameter: " .. k) end
        c[k] = v
    end
    local is_item = c.is_carousel_item == "true" or c.is_carousel_item == true
    c.type = c.media_type or "IMAGE"
    if is_item then c.type = "CAROUSEL_ITEM" end
    if c.type == "CAROUSEL" then
        local children = {}
        for id in tostring(c.children or ""):gmatch("[^,%s]+") do children[#children + 1] = id end
        if #children < 2 or #children > 10 then
            return resp.graph_error(100, "(#100) The carousel must have between 2 and 10 children",
                { subcode = 2207028 })
        end
        for _, id in ipairs(children) do
            local child = get("container:" .. id)
            if not child or child.type ~= "CAROUSEL_ITEM" then
                return resp.graph_error(100, "(#100) Invalid child container: " .. id)
            end
            if child.status_code ~= "FINISHED" then
                return resp.graph_error(9007, "The media is not ready for publishing, please wait for a moment",
                    { subcode = 2207027 })
            end
        end
    elseif not (c.image_url or c.video_url) then
        return resp.graph_error(100, "(#100) The parameter image_url or video_url is required")
    end
    c.id = new_id("1790000000")
    c.status_code, c.status = "IN_PROGRESS", "In Progress"
    put("container:" .. c.id, c)
    return id_body(c.id)
end

local function container_read(req, c)
    read_status(c)
    put("container:" .. c.id, c)
    local o = util.object()
    local fields = util.single(req.args, "fields") or "id"
    for name in fields:gmatch("[^,%s]+") do
        if name == "id" then util.put(o, "id", c.id)
        elseif name == "status_code" then util.put(o, "status_code", c.status_code)
        elseif name == "status" then util.put(o, "status", c.status)
        else
            return resp.graph_error(100, string.format(
                "(#100) Tried accessing nonexisting field (%s) on node type (ShadowIGMediaBuilder)", name))
        end
    end
    return resp.json(200, o)
end

local function prepend_media(user_key, c, media_id)
    local cfg = state.config()
    local list = (cfg.media or {})[user_key] or {}
    table.insert(list, 1, {
        id = media_id, caption = c.caption, media_type = c.media_type == "REELS" and "VIDEO" or "IMAGE",
        media_url = c.image_url or c.video_url, timestamp = os.date("!%Y-%m-%dT%H:%M:%S+0000", math.floor(state.now())),
        media_product_type = (c.media_type == "REELS" and "REELS") or (c.media_type == "STORIES" and "STORY") or "FEED",
    })
    state.merge_config({ media = { [user_key] = list } })
end

local function publish(req, rec, user)
    local p = params_of(req)
    local id = param(p, "creation_id")
    if not id or id == "" then return resp.graph_error(100, "(#100) The parameter creation_id is required") end
    local c = get("container:" .. id)
    if not c or c.owner ~= (user.user_id or user.id) then return resp.unsupported("post", id) end
    local cfg = publishing_config()
    local used = S:get("biz:quota_used") or cfg.quota_used
    if c.status_code == "PUBLISHED" then
        return resp.graph_error(9007, "Media ID is not available", { subcode = 2207027 })
    end
    if c.status_code ~= "FINISHED" then
        return resp.graph_error(9007, "The media is not ready for publishing, please wait for a moment",
            { subcode = 2207027 })
    end
    if used >= cfg.quota_total then
        return resp.graph_error(9, "You reached maximum number of posts that is allowed to be published "
            .. "by Content Publishing API.", { subcode = 2207042 })
    end
    local media_id = new_id("1791000000")
    c.status_code, c.status, c.media_id = "PUBLISHED", "Published", media_id
    put("container:" .. id, c)
    S:set("biz:quota_used", used + 1)
    S:incr("biz:published_count", 1, 0)
    prepend_media(rec.user_key, c, media_id)
    if cfg.block_on_publish then
        return resp.graph_error(4, "We restrict certain activity to protect our community.", { subcode = 2207051 })
    end
    return id_body(media_id)
end

local function publishing_limit()
    local cfg = publishing_config()
    local entry, conf = util.object(), util.object()
    util.put(entry, "quota_usage", S:get("biz:quota_used") or cfg.quota_used)
    util.put(conf, "quota_total", cfg.quota_total)
    util.put(conf, "quota_duration", DAY)
    util.put(entry, "config", conf)
    local o = util.object()
    util.put(o, "data", util.array({ entry }))
    return resp.json(200, o)
end

---------------------------------------------------------------------------
-- comments

-- Default comments, made on first use: media #1 of each instagram_login user gets three
-- top-level comments (the first with two replies); media #2 claims comments_count 8 but
-- returns none (restricted / development mode).
local function comments_db()
    local db = get("comments")
    if db then return db end
    db = { by_id = {}, by_media = {} }
    local cfg = state.config()
    for user_key, list in pairs(cfg.media or {}) do
        local user = cfg.users[user_key]
        if user and user.api == "instagram_login" and list[1] then
            local media_id = list[1].id
            local ids = {}
            for i = 1, 3 do
                local cid = string.format("178%014d", i * 1000 + #ids)
                local ts = state.now() - (4 - i) * 2 * DAY
                db.by_id[cid] = {
                    id = cid, text = "Comment " .. i .. " on " .. media_id, media = media_id,
                    timestamp = os.date("!%Y-%m-%dT%H:%M:%S+0000", math.floor(ts)), ts = ts,
                    from = { id = string.format("1784100000%07d", i), username = "fan" .. i },
                    username = "fan" .. i, hidden = false, like_count = i, replies = {},
                }
                ids[#ids + 1] = cid
            end
            for r = 1, 2 do
                local rid = string.format("179%014d", r)
                db.by_id[rid] = {
                    id = rid, text = "Reply " .. r, media = media_id, parent_id = ids[1],
                    timestamp = db.by_id[ids[1]].timestamp, ts = db.by_id[ids[1]].ts,
                    from = { id = "17841000009999999", username = "replier" }, username = "replier",
                    hidden = false, like_count = 0, replies = {},
                }
                table.insert(db.by_id[ids[1]].replies, rid)
            end
            db.by_media[media_id] = ids
            if list[2] then db.restricted = { [list[2].id] = true } end
        end
    end
    put("comments", db)
    return db
end

local COMMENT_FIELDS = {
    id = true, text = true, timestamp = true, from = true, parent_id = true, username = true,
    hidden = true, like_count = true, media = true, replies = true, legacy_instagram_comment_id = true,
}

local function comment_list(db, ids)
    local out = {}
    for _, id in ipairs(ids) do
        if db.by_id[id] then out[#out + 1] = db.by_id[id] end
    end
    return out
end

local function render_comment(c, fields)
    local out = util.object()
    for _, f in ipairs(fields or { { name = "id" }, { name = "text" }, { name = "timestamp" } }) do
        local v = c[f.name]
        if f.name == "media" then
            local m = util.object()
            util.put(m, "id", c.media)
            v = m
        elseif f.name == "from" then
            local m = util.object()
            util.put(m, "id", c.from.id)
            util.put(m, "username", c.from.username)
            v = m
        elseif f.name == "replies" then
            v = nil
        end
        util.put(out, f.name, v)
    end
    return out
end

local function comment_page(graph, req, db, ids)
    local fields = util.single(req.args, "fields")
    fields = fields and graph.parse_fields(fields) or nil
    if fields and #fields == 0 then fields = nil end
    for _, f in ipairs(fields or {}) do
        if not COMMENT_FIELDS[f.name] then
            return resp.graph_error(100, string.format(
                "(#100) Tried accessing nonexisting field (%s) on node type (IGComment)", f.name))
        end
    end
    local body, err = graph.page(comment_list(db, ids), fields, "instagram_login", req.args, req,
        function(c, f) return render_comment(c, f) end)
    return body and resp.json(200, body) or err
end

local function add_reply(req, db, c)
    local p = params_of(req)
    local message = param(p, "message")
    if not message or message == "" then return resp.graph_error(100, "(#100) The parameter message is required") end
    if c.hidden then
        return resp.graph_error(100, "(#100) Cannot reply to a hidden comment")
    end
    local top = c.parent_id and db.by_id[c.parent_id] or c -- a reply to a reply joins the top-level comment
    local rid = new_id("17900000000")
    db.by_id[rid] = {
        id = rid, text = message, media = top.media, parent_id = top.id, ts = state.now(),
        timestamp = os.date("!%Y-%m-%dT%H:%M:%S+0000", math.floor(state.now())),
        from = { id = "self", username = "self" }, username = "self", hidden = false, like_count = 0, replies = {},
    }
    table.insert(top.replies, rid)
    put("comments", db)
    return id_body(rid)
end

local function private_reply(req)
    local p = params_of(req)
    local recipient, message = p.recipient, p.message
    if type(recipient) == "string" then recipient = cjson.decode(recipient) end
    if type(message) == "string" then message = cjson.decode(message) end
    local cid = type(recipient) == "table" and recipient.comment_id
    local text = type(message) == "table" and message.text
    if type(cid) ~= "string" or type(text) ~= "string" or text == "" then
        return resp.graph_error(100, "(#100) Invalid parameter")
    end
    local db = comments_db()
    local c = db.by_id[cid]
    if not c then return resp.unsupported("post", cid) end
    if state.now() - c.ts > 7 * DAY then
        return resp.graph_error(10, "This message is sent outside of allowed window.", { subcode = 2534022 })
    end
    if c.private_replied then
        return resp.graph_error(10, "(#10) A private reply has already been sent for this comment",
            { subcode = 2534023 })
    end
    c.private_replied = true
    put("comments", db)
    local o = util.object()
    util.put(o, "recipient_id", c.from.id)
    util.put(o, "message_id", "m_" .. util.random(24, util.URLSAFE))
    return resp.json(200, o)
end

---------------------------------------------------------------------------
-- insights

local DEPRECATED = {
    impressions = true, plays = true, clips_replays_count = true,
    ig_reels_aggregated_all_plays_count = true, video_views = true,
}

local function metric_value(name, salt)
    local n = 0
    for i = 1, #name do n = n + name:byte(i) * i end
    return (n + (salt or 0)) % 997 + 3
end

local function deprecated_error(name)
    return resp.graph_error(100, "(#100) Starting from version v22.0 and above, the " .. name
        .. " metric is no longer supported. Please use views instead.")
end

-- The answer of an insights edge: `render(name)` builds the entry of each requested metric that is
-- neither deprecated (the v22 error) nor listed in config.insights.missing (left out: "no data").
local function insights_answer(req, render)
    local missing = {}
    for _, name in ipairs((state.config().insights or {}).missing or {}) do missing[name] = true end
    local metric = util.single(req.args, "metric")
    if not metric or metric == "" then return resp.graph_error(100, "(#100) The parameter metric is required") end
    local data = util.array()
    for name in metric:gmatch("[^,%s]+") do
        if DEPRECATED[name] then return deprecated_error(name) end
        if not missing[name] then data[#data + 1] = render(name) end
    end
    local out = util.object()
    util.put(out, "data", data)
    return resp.json(200, out)
end

local function account_insights(req)
    local period = util.single(req.args, "period") or "day"
    local metric_type = util.single(req.args, "metric_type") or "time_series"
    local since = tonumber(util.single(req.args, "since") or "")
    local until_ = tonumber(util.single(req.args, "until") or "")
    if since and until_ and until_ - since > 30 * DAY then
        return resp.graph_error(100,
            "(#100) There cannot be more than 30 days (2592000 s) between since and until")
    end
    local breakdown = util.single(req.args, "breakdown")
    return insights_answer(req, function(name)
        local o = util.object()
        util.put(o, "name", name)
        util.put(o, "period", period)
        if metric_type == "total_value" then
            local tv = util.object()
            util.put(tv, "value", metric_value(name))
            if breakdown and breakdown ~= "" then
                local results = util.array()
                for i, dim in ipairs({ "a", "b" }) do
                    local r = util.object()
                    util.put(r, "dimension_values", util.array({ breakdown .. "_" .. dim }))
                    util.put(r, "value", metric_value(name, i))
                    results[#results + 1] = r
                end
                local b = util.object()
                util.put(b, "dimension_keys", util.array({ breakdown }))
                util.put(b, "results", results)
                util.put(tv, "breakdowns", util.array({ b }))
            end
            util.put(o, "total_value", tv)
        else
            local values = util.array()
            local t, to = since or (state.now() - 2 * DAY), until_ or state.now()
            while t < to do
                local v = util.object()
                util.put(v, "value", metric_value(name, math.floor(t / DAY)))
                util.put(v, "end_time", os.date("!%Y-%m-%dT%H:%M:%S+0000", math.floor(t + DAY)))
                values[#values + 1] = v
                t = t + DAY
            end
            util.put(o, "values", values)
        end
        return o
    end)
end

local function media_insights(req, m)
    return insights_answer(req, function(name)
        local o = util.object()
        util.put(o, "name", name)
        util.put(o, "period", "lifetime")
        local v = util.object()
        util.put(v, "value", metric_value(name .. m.id))
        util.put(o, "values", util.array({ v }))
        util.put(o, "id", m.id .. "/insights/" .. name .. "/lifetime")
        return o
    end)
end

---------------------------------------------------------------------------

-- route(graph, req, rec, user, media_list, segs, find_media) -> a response, or nil when the
-- request is not one of these (graph.lua answers it then).
function M.route(graph, req, rec, user, segs, find_media)
    local id, edge = segs[1], segs[2]
    local method = req.method
    local is_user = id == "me" or id == user.id or id == user.user_id
    if is_user and rec.api == "instagram_login" then
        if edge == "media" and method == "POST" then return create_container(req, user) end
        if edge == "media_publish" and method == "POST" then return publish(req, rec, user) end
        if edge == "content_publishing_limit" and method == "GET" then return publishing_limit() end
        if edge == "messages" and method == "POST" then return private_reply(req) end
        if edge == "insights" and method == "GET" then return account_insights(req) end
        return nil
    end
    if not id or rec.api ~= "instagram_login" then return nil end

    local c = get("container:" .. id)
    if c and method == "GET" and edge == nil then return container_read(req, c) end

    local db = comments_db()
    local comment = db.by_id[id]
    if comment then
        if edge == nil and method == "POST" then
            local p = params_of(req)
            local hide = param(p, "hide")
            if hide ~= "true" and hide ~= "false" then return resp.graph_error(100, "(#100) Invalid parameter") end
            comment.hidden = hide == "true"
            put("comments", db)
            return success()
        elseif edge == nil and method == "DELETE" then
            db.by_id[id] = nil
            put("comments", db)
            return success()
        elseif edge == "replies" and method == "GET" then
            return comment_page(graph, req, db, comment.replies)
        elseif edge == "replies" and method == "POST" then
            return add_reply(req, db, comment)
        elseif edge == nil and method == "GET" then
            local fields = util.single(req.args, "fields")
            return resp.json(200, render_comment(comment, fields and graph.parse_fields(fields) or nil))
        end
        return nil
    end

    local m = find_media(id)
    if m then
        if edge == "comments" and method == "GET" then
            if db.restricted and db.restricted[id] then
                local out = util.object()
                util.put(out, "data", util.array())
                return resp.json(200, out)
            end
            return comment_page(graph, req, db, db.by_media[id] or {})
        elseif edge == nil and method == "POST" then
            local p = params_of(req)
            local enabled = param(p, "comment_enabled")
            if enabled ~= "true" and enabled ~= "false" then
                return resp.graph_error(100, "(#100) Invalid parameter")
            end
            local flags = get("comment_enabled") or {}
            flags[id] = enabled == "true"
            put("comment_enabled", flags)
            return success()
        elseif edge == "insights" and method == "GET" then
            return media_insights(req, m)
        end
    end
    if method == "DELETE" and edge == nil then
        return resp.unsupported("delete", id)
    end
    return nil
end

-- For the helper: counts the spec can assert on.
function M.stats()
    return {
        published = S:get("biz:published_count") or 0,
        quota_used = S:get("biz:quota_used") or 0,
    }
end

return M
