-- Webhooks on the fake Instagram: the account-level switch (GET/POST/DELETE
-- /{ig-user-id|me}/subscribed_apps, PLATFORM.md §1.1) and the delivery sender
-- behind /__fake/webhook: it builds a Meta-shaped body (escaped the way Meta
-- escapes it: \/ and \uXXXX for everything outside ASCII), signs it with
-- HMAC-SHA256 through OpenSSL (LuaJIT FFI, independent of the library's C
-- core), POSTs it to a URL and retries on anything but 2xx.
local cjson = require "cjson.safe"
local ffi = require "ffi"
local graph = require "graph"
local resp = require "resp"
local tokens = require "tokens"
local util = require "util"

local M = {}

local S = ngx.shared.fake_state

-- PLATFORM.md §1.5, fields of the Instagram-Login column
M.FIELDS = {
    "comments", "live_comments", "mentions", "messages", "message_reactions", "messaging_postbacks",
    "messaging_referral", "messaging_seen", "messaging_optins", "messaging_handover", "standby",
    "story_insights",
}
local KNOWN_FIELD = {}
for _, f in ipairs(M.FIELDS) do KNOWN_FIELD[f] = true end

---------------------------------------------------------------------------
-- subscribed_apps

local function subscription(user_key)
    local text = S:get("subs:" .. user_key)
    return text and cjson.decode(text) or nil
end

function M.subscribed_apps(req)
    local rec, err = tokens.check(graph.token_of(req) or nil)
    if not rec then return graph.with_usage(err, nil) end
    local users = require("state").config().users
    local user = users[rec.user_key]
    local node = req.graph_path:match("^/([^/]+)/")
    if not user or rec.api ~= "instagram_login"
        or not (node == "me" or node == user.id or node == user.user_id) then
        return graph.with_usage(resp.unsupported(req.method, node or ""), rec)
    end
    local method = req.method
    local override = util.single(req.args, "method")
    if method == "POST" and type(override) == "string" and override:lower() == "delete" then method = "DELETE" end
    local done = util.object()
    util.put(done, "success", true)
    if method == "GET" then
        local data = util.array()
        local fields = subscription(rec.user_key)
        if fields then
            local app = util.object()
            util.put(app, "subscribed_fields", util.array(fields))
            util.put(app, "id", rec.client_id)
            util.put(app, "name", "Fake App " .. rec.client_id)
            data[1] = app
        end
        local body = util.object()
        util.put(body, "data", data)
        return graph.with_usage(resp.json(200, body), rec)
    elseif method == "DELETE" then
        S:delete("subs:" .. rec.user_key)
        return graph.with_usage(resp.json(200, done), rec)
    elseif method == "POST" then
        local given = util.single(req.args, "subscribed_fields")
        if given == nil and req.form then given = util.single(req.form, "subscribed_fields") end
        if not given or given == "" then
            return graph.with_usage(resp.graph_error(100,
                "(#100) The parameter subscribed_fields is required."), rec)
        end
        local fields = util.split_list(given)
        for _, f in ipairs(fields) do
            if not KNOWN_FIELD[f] then
                return graph.with_usage(resp.graph_error(100, "(#100) Param subscribed_fields["
                    .. f .. "] must be one of {" .. table.concat(M.FIELDS, ", ") .. "} - got \"" .. f .. "\""), rec)
            end
        end
        S:set("subs:" .. rec.user_key, cjson.encode(fields))
        return graph.with_usage(resp.json(200, done), rec)
    end
    return graph.with_usage(resp.unsupported(req.method, node), rec)
end

---------------------------------------------------------------------------
-- signing (OpenSSL through the FFI: nginx already has libcrypto loaded)

pcall(ffi.cdef, [[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len, const unsigned char *d, size_t n,
                    unsigned char *md, unsigned int *md_len);
]])

local crypto = (function()
    local ok = pcall(function() return ffi.C.HMAC end)
    if ok then return ffi.C end
    return ffi.load("crypto.so.3")
end)()

local function hex(bytes)
    return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

function M.hmac_sha256(key, msg)
    local md = ffi.new("unsigned char[32]")
    local len = ffi.new("unsigned int[1]")
    assert(crypto.HMAC(crypto.EVP_sha256(), key, #key, msg, #msg, md, len) ~= nil, "HMAC failed")
    return ffi.string(md, len[0])
end

function M.signature(secret, body)
    return "sha256=" .. hex(M.hmac_sha256(secret, body))
end

---------------------------------------------------------------------------
-- bodies, written the way Meta writes them

local function utf8_chars(s)
    local out, i = {}, 1
    while i <= #s do
        local c = s:byte(i)
        local n = c < 0x80 and 1 or c < 0xE0 and 2 or c < 0xF0 and 3 or 4
        out[#out + 1] = s:sub(i, i + n - 1)
        i = i + n
    end
    return out
end

local function code_point(ch)
    local b1 = ch:byte(1)
    if #ch == 1 then return b1 end
    if #ch == 2 then return (b1 % 0x20) * 0x40 + ch:byte(2) % 0x40 end
    if #ch == 3 then return (b1 % 0x10) * 0x1000 + (ch:byte(2) % 0x40) * 0x40 + ch:byte(3) % 0x40 end
    return (b1 % 0x08) * 0x40000 + (ch:byte(2) % 0x40) * 0x1000 + (ch:byte(3) % 0x40) * 0x40 + ch:byte(4) % 0x40
end

-- "Olá 🥰 a/b" -> "Ol\u00e1 \ud83e\udd70 a\/b"
local function meta_string(s)
    local out = {}
    for _, ch in ipairs(utf8_chars(s)) do
        local cp = code_point(ch)
        if ch == '"' then
            out[#out + 1] = '\\"'
        elseif ch == "\\" then
            out[#out + 1] = "\\\\"
        elseif ch == "/" then
            out[#out + 1] = "\\/"
        elseif cp < 0x20 then
            out[#out + 1] = string.format("\\u%04x", cp)
        elseif cp < 0x80 then
            out[#out + 1] = ch
        elseif cp < 0x10000 then
            out[#out + 1] = string.format("\\u%04x", cp)
        else
            cp = cp - 0x10000
            out[#out + 1] = string.format("\\u%04x\\u%04x", 0xD800 + math.floor(cp / 0x400), 0xDC00 + cp % 0x400)
        end
    end
    return '"' .. table.concat(out) .. '"'
end
M.meta_string = meta_string

local TEXTS = { "Olá, testando amor 🥰", "order karna hai", "<b>price?</b> & https://x.example/a", "ñandú 🇧🇷" }

-- One delivery of `spec.comments` comment changes and `spec.messages` messaging items for
-- `spec.account_id`, IDs made unique by `spec.serial`; returns the body and its event count.
function M.build(spec)
    local account = spec.account_id or "17841400000000001"
    local serial = tonumber(spec.serial) or 1
    local comments, messages = tonumber(spec.comments) or 0, tonumber(spec.messages) or 0
    local changes = {}
    for i = 1, comments do
        -- 17-digit IDs, beyond 2^53: only exact strings keep them
        local id = string.format("178%06d%08d", serial % 1000000, i)
        changes[i] = '{"field":"comments","value":{"from":{"id":"' .. string.format("23%08d", i)
            .. '","username":"user.' .. i .. '"},"media":{"id":"17918195224117851","media_product_type":"FEED"},'
            .. '"id":"' .. id .. '","text":' .. meta_string(TEXTS[i % #TEXTS + 1] .. " #" .. i) .. "}}"
    end
    local messaging = {}
    for i = 1, messages do
        messaging[i] = '{"sender":{"id":"' .. string.format("11298426%08d", i) .. '"},"recipient":{"id":"'
            .. account .. '"},"timestamp":1762010770464,"message":{"mid":"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlE'
            .. string.format("%06d%06d", serial % 1000000, i) .. '","text":'
            .. meta_string(TEXTS[i % #TEXTS + 1]) .. "}}"
    end
    local entry = '{"id":"' .. account .. '","time":' .. (messages > 0 and "1762010783728" or "1520622968")
    if comments > 0 then entry = entry .. ',"changes":[' .. table.concat(changes, ",") .. "]" end
    if messages > 0 then entry = entry .. ',"messaging":[' .. table.concat(messaging, ",") .. "]" end
    entry = entry .. "}"
    return '{"object":"instagram","entry":[' .. entry .. "]}", comments + messages
end

---------------------------------------------------------------------------
-- delivery

local function post(url, body, headers, timeout)
    local host, port, path = url:match("^http://([^:/]+):(%d+)(/[^#]*)$")
    if not host then return nil, "only http://host:port/path URLs" end
    local sock = ngx.socket.tcp()
    sock:settimeout((timeout or 10) * 1000)
    local ok, err = sock:connect(host, tonumber(port))
    if not ok then return nil, "connect: " .. tostring(err) end
    local lines = { "POST " .. path .. " HTTP/1.1", "Host: " .. host .. ":" .. port,
        "User-Agent: facebookexternalua", "Content-Type: application/json",
        "Content-Length: " .. #body, "Connection: close" }
    for _, h in ipairs(headers) do lines[#lines + 1] = h end
    ok, err = sock:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. body)
    if not ok then
        sock:close()
        return nil, "send: " .. tostring(err)
    end
    local status_line
    status_line, err = sock:receive("*l")
    if not status_line then
        sock:close()
        return nil, "receive: " .. tostring(err)
    end
    local rest = sock:receive("*a")
    sock:close()
    return tonumber(status_line:match("^HTTP/%d%.%d (%d%d%d)")), rest
end

-- /__fake/webhook: {url, secret, body | build = {...}, times, retries, retry_delay,
-- signature (a header value to send instead), sha1 (also send X-Hub-Signature), sha1_only}
-- -> {bytes, events, deliveries = [{delivered, attempts = [{status | error, seconds}]}]}
function M.send(spec)
    if type(spec.url) ~= "string" then return nil, "webhook needs url" end
    if type(spec.secret) ~= "string" or spec.secret == "" then return nil, "webhook needs secret" end
    local body, events = spec.body, nil
    if type(body) ~= "string" then
        if type(spec.build) ~= "table" then return nil, "webhook needs body or build" end
        body, events = M.build(spec.build)
    end
    local headers = {}
    if not spec.sha1_only then
        headers[#headers + 1] = "X-Hub-Signature-256: " .. (spec.signature or M.signature(spec.secret, body))
    end
    if spec.sha1 or spec.sha1_only then
        headers[#headers + 1] = "X-Hub-Signature: sha1=" .. hex(ngx.hmac_sha1(spec.secret, body))
    end
    local deliveries = {}
    for d = 1, tonumber(spec.times) or 1 do
        local attempts, delivered = {}, false
        for a = 1, 1 + (tonumber(spec.retries) or 0) do
            if a > 1 then ngx.sleep(tonumber(spec.retry_delay) or 0.05) end
            ngx.update_time()
            local started = ngx.now()
            local status, err = post(spec.url, body, headers, tonumber(spec.timeout))
            ngx.update_time()
            attempts[a] = { status = status, error = not status and err or nil, seconds = ngx.now() - started }
            if status and status >= 200 and status < 300 then
                delivered = true
                break
            end
        end
        deliveries[d] = { delivered = delivered, attempts = attempts }
    end
    return { bytes = #body, events = events, deliveries = deliveries, body = spec.return_body and body or nil }
end

return M
