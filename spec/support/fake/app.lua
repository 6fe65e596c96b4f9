-- content_by_lua_file entry of every listener except the control plane:
-- logs the request, picks the handler, applies any fault, answers.
local cdn = require "cdn"
local faults = require "faults"
local graph = require "graph"
local oauth = require "oauth"
local state = require "state"
local tokens = require "tokens"
local webhooks = require "webhooks"

local function read_body()
    ngx.req.read_body()
    local body = ngx.req.get_body_data()
    if body then return body end
    local file = ngx.req.get_body_file()
    if not file then return "" end
    local f = assert(io.open(file, "rb"))
    body = f:read("*a")
    f:close()
    return body
end

local function request()
    ngx.update_time()
    local headers = ngx.req.get_headers(0)
    local body = read_body()
    local ctype = headers["content-type"]
    local form
    if type(ctype) == "string" and ctype:lower():match("^%s*application/x%-www%-form%-urlencoded") then
        form = ngx.decode_args(body, 0)
    end
    local uri = ngx.var.uri
    local version, rest = uri:match("^/(v%d+%.%d+)(/.*)$")
    return {
        method = ngx.req.get_method(),
        path = ngx.var.request_uri:match("^[^?]*"),
        query = ngx.var.args or "",
        args = ngx.req.get_uri_args(0),
        headers = headers,
        body = body,
        form = form,
        port = tonumber(ngx.var.server_port),
        scheme = ngx.var.scheme,
        host = ngx.var.http_host or ("127.0.0.1:" .. ngx.var.server_port),
        uri = uri,
        version = version,
        graph_path = rest or uri,
    }
end

local function handler(req)
    if req.uri == "/oauth/authorize" then
        return function() return oauth.authorize(req) end
    elseif req.uri == "/oauth/access_token" then
        return function() return oauth.access_token(req) end
    elseif req.graph_path == "/access_token" then
        return function() return graph.with_usage(tokens.exchange(req.args), nil) end
    elseif req.graph_path == "/refresh_access_token" then
        return function() return graph.with_usage(tokens.refresh(req.args), nil) end
    elseif req.graph_path:match("^/[^/]+/subscribed_apps$") then
        return function() return webhooks.subscribed_apps(req) end
    elseif req.uri:sub(1, 5) == "/cdn/" then
        return function() return cdn.handle(req) end
    end
    return function() return graph.handle(req) end
end

local function main()
    local req = request()
    ngx.ctx.fake_log = state.log_start({
        method = req.method, path = req.path, query = req.query, args = req.args,
        headers = req.headers, body = req.body, form = req.form, port = req.port,
        scheme = req.scheme, started = ngx.req.start_time(),
        -- which TCP connection carried it, and how many requests that connection has carried
        connection = tonumber(ngx.var.connection), connection_requests = tonumber(ngx.var.connection_requests),
    })
    return faults.respond(state.take_fault(req.path), handler(req), req)
end

local ok, err = xpcall(main, debug.traceback)
if not ok then
    ngx.log(ngx.ERR, "fake server error: ", err)
    if not ngx.headers_sent then
        ngx.status = 500
        ngx.header["Content-Type"] = "text/plain"
        ngx.say("fake server error: ", err)
    end
end
