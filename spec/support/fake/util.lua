-- Small helpers shared by the fake server's handlers: an order-preserving
-- JSON encoder (lua-cjson 2.1.0 has no empty-array marker and sorts nothing),
-- random strings, and query-string helpers.
local M = {}

local ARRAY = {}
local ORDERED = {}

-- Marks t as a JSON array, even when empty.
function M.array(t)
    return setmetatable(t or {}, ARRAY)
end

-- A JSON object whose keys are written in insertion order.
function M.object()
    return setmetatable({ __keys = {} }, ORDERED)
end

function M.put(obj, key, value)
    if value == nil then return obj end
    if getmetatable(obj) == ORDERED then
        if obj[key] == nil then obj.__keys[#obj.__keys + 1] = key end
    end
    obj[key] = value
    return obj
end

local escapes = {
    ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
    ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}

local function quote(s)
    return '"' .. s:gsub('[%c"\\]', function(c)
        return escapes[c] or string.format("\\u%04x", c:byte())
    end) .. '"'
end
M.quote = quote

local encode

local function encode_number(n)
    if n ~= n or n == math.huge or n == -math.huge then
        error("cannot encode " .. tostring(n) .. " as JSON")
    end
    if n == math.floor(n) and math.abs(n) < 1e15 then
        return string.format("%d", n)
    end
    return string.format("%.17g", n)
end

local function is_array(t)
    local mt = getmetatable(t)
    if mt == ARRAY then return true end
    if mt == ORDERED then return false end
    return t[1] ~= nil
end

function encode(v)
    local ty = type(v)
    if ty == "string" then return quote(v) end
    if ty == "number" then return encode_number(v) end
    if ty == "boolean" then return tostring(v) end
    if v == nil or v == ngx.null then return "null" end
    if ty ~= "table" then error("cannot encode a " .. ty .. " as JSON") end
    local out = {}
    if is_array(v) then
        for i = 1, #v do out[i] = encode(v[i]) end
        return "[" .. table.concat(out, ",") .. "]"
    end
    local keys
    if getmetatable(v) == ORDERED then
        keys = v.__keys
    else
        keys = {}
        for k in pairs(v) do keys[#keys + 1] = tostring(k) end
        table.sort(keys)
    end
    for _, k in ipairs(keys) do
        out[#out + 1] = quote(k) .. ":" .. encode(v[k])
    end
    return "{" .. table.concat(out, ",") .. "}"
end
M.encode = encode

local ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
M.ALNUM = ALNUM
M.URLSAFE = ALNUM .. "-_"

-- Random string over `alphabet`, from /dev/urandom (math.random would repeat
-- across runs started in the same second).
function M.random(n, alphabet)
    alphabet = alphabet or ALNUM
    local f = assert(io.open("/dev/urandom", "rb"))
    local bytes = f:read(n)
    f:close()
    local out = {}
    for i = 1, n do
        local b = bytes:byte(i) % #alphabet + 1
        out[i] = alphabet:sub(b, b)
    end
    return table.concat(out)
end

function M.fbtrace_id()
    return "A" .. M.random(22, M.URLSAFE)
end

function M.html_escape(s)
    return (tostring(s):gsub("[&<>\"']", {
        ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;",
    }))
end

-- One value of a decoded query/form arg: nil when absent, false when repeated.
function M.single(args, name)
    local v = args[name]
    if type(v) == "table" then return false end
    if v == true then return "" end
    return v
end

-- The raw query string without the parameters named in `drop` (decoded key
-- compared), keeping the others byte for byte and in order.
function M.query_without(raw, drop)
    local kept = {}
    for part in (raw or ""):gmatch("[^&]+") do
        local key = ngx.unescape_uri((part:match("^([^=]*)") or ""):gsub("%+", " "))
        if not drop[key] then kept[#kept + 1] = part end
    end
    return kept
end

function M.split_list(s)
    local out = {}
    for item in s:gmatch("[^,%s]+") do out[#out + 1] = item end
    return out
end

function M.deep_merge(dst, src)
    for k, v in pairs(src) do
        if v == ngx.null then
            dst[k] = nil
        elseif type(v) == "table" and type(dst[k]) == "table" and v[1] == nil and next(v) ~= nil then
            M.deep_merge(dst[k], v)
        else
            dst[k] = v
        end
    end
    return dst
end

return M
