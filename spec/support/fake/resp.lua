-- Response values: handlers return {status, headers, body} and app.lua sends
-- them, so fault modes can reshape a normal answer before it goes out.
local util = require "util"

local M = {}

M.JSON = "application/json; charset=UTF-8"

function M.json(status, value)
    local body = type(value) == "string" and value or util.encode(value)
    return { status = status, headers = { ["Content-Type"] = M.JSON }, body = body }
end

-- Graph API error: {"error":{"message","type","code",["error_subcode"],...,"fbtrace_id"}}
function M.graph_error(code, message, opts)
    opts = opts or {}
    local e = util.object()
    util.put(e, "message", message)
    util.put(e, "type", opts.type or "OAuthException")
    util.put(e, "code", code)
    util.put(e, "error_subcode", opts.subcode)
    util.put(e, "is_transient", opts.is_transient)
    util.put(e, "fbtrace_id", util.fbtrace_id())
    local body = util.object()
    util.put(body, "error", e)
    return M.json(opts.status or 400, body)
end

-- The flat error shape of POST /oauth/access_token.
function M.oauth_error(message, status)
    local body = util.object()
    util.put(body, "error_type", "OAuthException")
    util.put(body, "code", 400)
    util.put(body, "error_message", message)
    return M.json(status or 400, body)
end

-- Instagram shows authorize problems on its own page, never redirecting.
function M.html_error(problem)
    local text = "Invalid Request: Request parameters are invalid: " .. problem
    return {
        status = 400,
        headers = { ["Content-Type"] = "text/html; charset=utf-8" },
        body = "<!DOCTYPE html>\n<html><head><title>Instagram</title></head><body>\n<h1>"
            .. util.html_escape(text) .. "</h1>\n</body></html>\n",
    }
end

function M.redirect(location)
    return { status = 302, headers = { Location = location, ["Content-Type"] = "text/html; charset=utf-8" },
        body = "" }
end

function M.unsupported(method, id)
    return M.graph_error(100, string.format(
        "Unsupported %s request. Object with ID '%s' does not exist, cannot be loaded due to missing "
            .. "permissions, or does not support this operation", method:lower(), id),
        { type = "GraphMethodException" })
end

return M
