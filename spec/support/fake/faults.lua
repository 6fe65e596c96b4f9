-- Sending responses, and the fault injection of f:fault(path, spec)
-- (SECURITY.md §4). Transport faults that break HTTP framing write raw bytes
-- on the downstream socket and then drop the connection.
local resp = require "resp"
local rst = require "rst"

local M = {}

local REASONS = {
    [200] = "OK", [302] = "Found", [400] = "Bad Request", [429] = "Too Many Requests",
    [500] = "Internal Server Error", [502] = "Bad Gateway", [503] = "Service Unavailable",
}

local function with_headers(r, extra)
    for k, v in pairs(extra or {}) do r.headers[k] = v end
    return r
end

function M.send(r, method)
    ngx.status = r.status
    for k, v in pairs(r.headers) do ngx.header[k] = v end
    ngx.header["Content-Length"] = #r.body
    if method ~= "HEAD" and r.body ~= "" then ngx.print(r.body) end
end

-- The error body a status fault answers with when it names no body.
function M.default_body(status)
    if status == 429 then
        return resp.graph_error(4, "(#4) Application request limit reached", { is_transient = true }).body
    elseif status == 500 or status == 503 then
        return resp.graph_error(2, "An unexpected error has occurred. Please retry your request later.",
            { is_transient = true }).body
    elseif status >= 500 then
        return resp.graph_error(1, "An unknown error has occurred.", { is_transient = true }).body
    elseif status == 401 then
        return resp.graph_error(190, "Invalid OAuth access token - Cannot parse access token").body
    elseif status == 403 then
        return resp.graph_error(10, "(#10) Application does not have permission for this action").body
    elseif status >= 400 then
        return resp.graph_error(100, "(#100) Invalid parameter").body
    end
    return ""
end

local function status_response(spec)
    local body = spec.body or M.default_body(spec.status)
    local headers = {}
    if body ~= "" then headers["Content-Type"] = resp.JSON end
    return with_headers({ status = spec.status, headers = headers, body = body }, spec.headers)
end

local function head_bytes(status, headers)
    local lines = { string.format("HTTP/1.1 %d %s", status, REASONS[status] or "Status") }
    for k, v in pairs(headers) do lines[#lines + 1] = k .. ": " .. tostring(v) end
    lines[#lines + 1] = "Connection: close"
    return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

-- Writes `bytes` on the raw downstream socket, then drops the connection:
-- with a FIN, or with `reset` a RST (after a pause that lets the client
-- read what was sent; a RST discards data the peer has not read yet).
local function raw(bytes, reset)
    local sock, err = ngx.req.socket(true)
    if not sock then error("raw downstream socket: " .. tostring(err)) end
    if bytes ~= "" then sock:send(bytes) end
    if reset then
        if bytes ~= "" then ngx.sleep(0.05) end
        rst.arm()
    end
    return ngx.exit(444)
end

local function framing_headers(r, spec)
    local h = {}
    for k, v in pairs(r.headers) do h[k] = v end
    for k, v in pairs(spec.headers or {}) do h[k] = v end
    return h
end

local function stream(status, headers, total, piece_for, length)
    ngx.status = status
    for k, v in pairs(headers) do ngx.header[k] = v end
    if length then ngx.header["Content-Length"] = total end
    local sent = 0
    while sent < total do
        local piece = piece_for(sent, math.min(65536, total - sent))
        if not ngx.print(piece) then return end
        local ok = ngx.flush(true)
        if not ok then return end
        sent = sent + #piece
    end
end

local MODES = {}

function MODES.close()
    return ngx.exit(444)
end

-- the handler runs (a publish or a reply takes effect), then the connection closes without a byte
function MODES.drop_after(_, make)
    make()
    return ngx.exit(444)
end

function MODES.stall(spec, make, req)
    ngx.sleep(spec.seconds or 60)
    M.send(with_headers(make(), spec.headers), req.method)
end

function MODES.trickle(spec, make)
    local r = with_headers(make(), spec.headers)
    ngx.status = r.status
    for k, v in pairs(r.headers) do ngx.header[k] = v end
    ngx.header["Content-Length"] = #r.body
    ngx.send_headers()
    if not ngx.flush(true) then return end
    for i = 1, #r.body do
        ngx.sleep(spec.interval or 0.5)
        if not ngx.print(r.body:sub(i, i)) or not ngx.flush(true) then return end
    end
end

function MODES.reset()
    return raw("", true)
end

function MODES.reset_mid_headers(spec, make)
    local r = make()
    local h = framing_headers(r, spec)
    h["Content-Length"] = #r.body
    local bytes = head_bytes(r.status, h)
    return raw(bytes:sub(1, math.floor(#bytes / 2)), true)
end

local function half_body(spec, make, reset)
    local r = make()
    local h = framing_headers(r, spec)
    h["Content-Length"] = #r.body
    return raw(head_bytes(r.status, h) .. r.body:sub(1, math.floor(#r.body / 2)), reset)
end

function MODES.reset_mid_body(spec, make)
    return half_body(spec, make, true)
end

function MODES.fin_mid_body(spec, make)
    return half_body(spec, make, false)
end

function MODES.bad_length_long(spec, make)
    local r = make()
    local h = framing_headers(r, spec)
    h["Content-Length"] = #r.body + (spec.extra or 100)
    return raw(head_bytes(r.status, h) .. r.body)
end

function MODES.bad_length_short(spec, make)
    local r = make()
    local h = framing_headers(r, spec)
    h["Content-Length"] = math.max(0, #r.body - (spec.extra or math.floor(#r.body / 2)))
    return raw(head_bytes(r.status, h) .. r.body)
end

function MODES.broken_chunked(spec, make)
    local r = make()
    local h = framing_headers(r, spec)
    h["Transfer-Encoding"] = "chunked"
    local first = r.body:sub(1, 8)
    return raw(head_bytes(r.status, h) .. string.format("%x\r\n%s\r\nzz\r\nnot a chunk\r\n", #first, first))
end

function MODES.html_500(spec, _, req)
    M.send(with_headers({
        status = spec.status or 500,
        headers = { ["Content-Type"] = "text/html; charset=utf-8" },
        body = "<!DOCTYPE html>\n<html><head><title>Error</title></head><body>\n"
            .. "<h1>500 Internal Server Error</h1><p>Sorry, something went wrong.</p>\n</body></html>\n",
    }, spec.headers), req.method)
end

-- A valid JSON object of exactly `bytes` bytes: {"data":"aaa...a"}
function MODES.oversize(spec)
    local total = math.max(12, spec.bytes or 16 * 1024 * 1024)
    local head, tail = '{"data":"', '"}'
    local filler = string.rep("a", 65536)
    local headers = with_headers({ headers = { ["Content-Type"] = resp.JSON } }, spec.headers).headers
    stream(spec.status or 200, headers, total, function(offset, n)
        local out = {}
        local pos, stop = offset, offset + n
        while pos < stop do
            local piece
            if pos < #head then
                piece = head:sub(pos + 1, math.min(#head, stop))
            elseif pos >= total - #tail then
                piece = tail:sub(pos - (total - #tail) + 1, stop - (total - #tail))
            else
                piece = filler:sub(1, math.min(stop, total - #tail) - pos)
            end
            out[#out + 1] = piece
            pos = pos + #piece
        end
        return table.concat(out)
    end, spec.length ~= false)
end

function MODES.gzip_bomb(spec, _, req)
    local f = spec.file and io.open(spec.file, "rb")
    if not f then error("gzip_bomb fault needs spec.file (f:fault makes it)") end
    local body = f:read("*a")
    f:close()
    M.send(with_headers({
        status = spec.status or 200,
        headers = { ["Content-Type"] = resp.JSON, ["Content-Encoding"] = "gzip" },
        body = body,
    }, spec.headers), req.method)
end

function MODES.deep_json(spec, _, req)
    local depth = spec.depth or 10000
    M.send(with_headers(resp.json(spec.status or 200,
        '{"data":' .. string.rep("[", depth) .. string.rep("]", depth) .. "}"), spec.headers), req.method)
end

function MODES.invalid_utf8(spec, _, req)
    M.send(with_headers(resp.json(spec.status or 200,
        '{"access_token":"IGQVJ\255\254bad","user_id":"17841405793187219",'
            .. '"id":"17841405793187219","username":"bad\195\40\226\130"}'), spec.headers), req.method)
end

-- The normal body with its first member repeated in front under a decoy
-- value: {"access_token":"DUPLICATE_KEY_DECOY","access_token":"IGQVJ...",...}
function MODES.dup_keys(spec, make, req)
    local r = make()
    local key = r.body:match('^{"([^"\\]+)":')
    if key then
        r.body = '{"' .. key .. '":"DUPLICATE_KEY_DECOY",' .. r.body:sub(2)
    end
    M.send(with_headers(r, spec.headers), req.method)
end

function MODES.truncated_json(spec, make, req)
    local r = make()
    r.body = r.body:sub(1, math.floor(#r.body / 2))
    M.send(with_headers(r, spec.headers), req.method)
end

function MODES.empty(spec, _, req)
    M.send(with_headers({ status = spec.status or 200, headers = { ["Content-Type"] = resp.JSON }, body = "" },
        spec.headers), req.method)
end

function MODES.error_200(spec, _, req)
    local body = spec.body
    if not body then
        if req.path:sub(1, 7) == "/oauth/" then
            body = resp.oauth_error("An unknown error has occurred.").body
        else
            body = resp.graph_error(1, "An unknown error has occurred.").body
        end
    end
    M.send(with_headers(resp.json(200, body), spec.headers), req.method)
end

function MODES.retry_after(spec, _, req)
    local status = spec.status or 429
    local r = resp.json(status, spec.body or M.default_body(status))
    if spec.retry_after ~= false then r.headers["Retry-After"] = tostring(spec.retry_after or 7) end
    r.headers["X-App-Usage"] = '{"call_count":100,"total_cputime":12,"total_time":40}'
    M.send(with_headers(r, spec.headers), req.method)
end

function M.known_mode(mode)
    return MODES[mode] ~= nil
end

-- Answers the request: `make()` builds the normal response; `spec` is the
-- fault for this request or nil.
function M.respond(spec, make, req)
    if not spec then return M.send(make(), req.method) end
    if spec.delay then ngx.sleep(spec.delay) end
    if spec.mode then return MODES[spec.mode](spec, make, req) end
    local r = spec.status and status_response(spec) or with_headers(make(), spec.headers)
    return M.send(r, req.method)
end

return M
