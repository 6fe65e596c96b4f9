-- The fake CDN (PLATFORM.md §6.1): media and thumbnail URLs are signed links on the fake's own
-- HTTPS port, /cdn/<path>?oe=<hex unix expiry>&oh=<signature>, minted when Graph renders them.
-- oe is aligned to fixed windows (repeated reads within a window give the same URL) and lies
-- `cdn.ttl` seconds of fake clock ahead (4 days; per path in `cdn.ttls`). Past oe by the fake
-- clock the CDN answers 403 text/plain "URL signature expired"; a bad signature gets
-- "URL signature mismatch".
local state = require "state"

local M = {}

local ORIGIN = "https://cdn.example/"
local KEY = "fake-cdn-signing-key"
local DEFAULTS = { ttl = 4 * 86400, window = 3600 }

local function settings()
    local c = state.config().cdn or {}
    return {
        ttl = tonumber(c.ttl) or DEFAULTS.ttl,
        window = tonumber(c.window) or DEFAULTS.window,
        ttls = type(c.ttls) == "table" and c.ttls or {},
    }
end

local function signature(path, oe)
    local mac = ngx.hmac_sha1(KEY, path .. "|" .. oe)
    return (mac:gsub(".", function(ch) return string.format("%02x", ch:byte()) end))
end

-- A fixture URL on cdn.example becomes a signed link to this server; other values pass.
function M.sign(value)
    if type(value) ~= "string" or value:sub(1, #ORIGIN) ~= ORIGIN then return value end
    local path = value:sub(#ORIGIN + 1)
    local s = settings()
    local now = math.floor(state.now())
    local ttl = tonumber(s.ttls[path]) or s.ttl
    local oe = string.format("%X", now - now % s.window + ttl)
    return string.format("https://127.0.0.1:%d/cdn/%s?stp=dst-jpg&_nc_ht=scontent.cdninstagram.com&oh=00_%s&oe=%s",
        state.ports().https, path, signature(path, oe), oe)
end

local function text(status, body)
    return { status = status, headers = { ["Content-Type"] = "text/plain" }, body = body }
end

function M.handle(req)
    local path = req.uri:match("^/cdn/(.+)$")
    local oe = type(req.args.oe) == "string" and req.args.oe or nil
    local oh = type(req.args.oh) == "string" and req.args.oh:match("^00_(%x+)$") or nil
    if not (path and oe and oe:match("^%x+$")) then return text(403, "Bad URL date param") end
    if oh ~= signature(path, oe) then return text(403, "URL signature mismatch") end
    if state.now() >= tonumber(oe, 16) then return text(403, "URL signature expired") end
    local ctype = path:match("%.mp4$") and "video/mp4" or "image/jpeg"
    return { status = 200, headers = { ["Content-Type"] = ctype }, body = "FAKE-MEDIA " .. path .. "\n" }
end

return M
