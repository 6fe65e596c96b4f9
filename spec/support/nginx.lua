-- A throwaway Debian nginx for the specs: a ${NAME} config template rendered into a temp
-- prefix, started as a daemon without a master process on fresh loopback ports, stopped by
-- pid. Used by the fake Instagram (spec/support/fake.lua) and by spec/ngx/. Lua 5.4 or
-- LuaJIT with lua-socket. See spec/support/README.md ("How it runs").
--
--   local Nginx = require "spec.support.nginx"
--   local server = Nginx.start(template, vars, env)   -- raises with the log tails on failure
--   local status, headers, body = server:get("/path")
--   server:stop()                                      -- always, e.g. in teardown()
local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"

local M = {}
M.__index = M

-- Tools run without a sanitizer runtime a spec run may have preloaded.
M.CLEAN_ENV = "env -u LD_PRELOAD "

function M.q(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
local q = M.q

-- os.execute's result as a boolean under Lua 5.1/LuaJIT and 5.2+.
function M.run(cmd)
    local a, _, c = os.execute(cmd)
    if type(a) == "number" then return a == 0 end
    return a == true and (c == nil or c == 0)
end
local run = M.run

-- A command's standard output without trailing whitespace.
function M.capture(cmd)
    local p = assert(io.popen(cmd, "r"))
    local out = p:read("*a")
    p:close()
    return (out:gsub("%s+$", ""))
end
local capture = M.capture

function M.read_file(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local text = f:read("*a")
    f:close()
    return text
end
local read_file = M.read_file

local function write_file(path, text)
    local f = assert(io.open(path, "wb"))
    assert(f:write(text))
    f:close()
end

-- The last `lines` lines of text ("" for none).
function M.tail(text, lines)
    if not text or text == "" then return "" end
    local all = {}
    for line in text:gmatch("[^\n]+") do all[#all + 1] = line end
    return table.concat(all, "\n", math.max(1, #all - lines + 1))
end
local tail = M.tail

-- Absolute directory of this file (spec/support) and the checkout above it.
M.SUPPORT_DIR = (function()
    local src = debug.getinfo(1, "S").source:gsub("^@", "")
    local dir = src:match("^(.*)/[^/]*$") or "."
    if dir:sub(1, 1) ~= "/" then dir = capture("pwd") .. "/" .. dir end
    dir = dir:gsub("/%./", "/"):gsub("/%.$", "")
    return dir
end)()

function M.repo_root()
    return (M.SUPPORT_DIR:gsub("/spec/support$", ""))
end

-- A fresh /tmp/lua-instagram-<tag>.XXXXXX.
function M.mktemp_dir(tag)
    local dir = capture("mktemp -d /tmp/lua-instagram-" .. tag .. ".XXXXXX")
    if dir == "" then error(tag .. ": mktemp -d failed", 3) end
    return dir
end

-- Kills `pid` (if any) and removes `dir` once this Lua process is gone, so a crashed or
-- aborted spec run leaves no nginx behind. Exits quietly when `dir` disappears first
-- (stop() did the work). $PPID is this Lua process.
function M.watchdog(dir, pid)
    local kill = pid and string.format("kill -TERM %d 2>/dev/null; sleep 1; kill -KILL %d 2>/dev/null; ",
        pid, pid) or ""
    run(string.format(
        "lua_pid=$PPID; (trap '' HUP INT; while kill -0 $lua_pid 2>/dev/null; do [ -d %s ] || exit 0; "
            .. "sleep 1; done; %srm -rf %s) </dev/null >/dev/null 2>&1 &",
        q(dir), kill, q(dir)))
end

-- n ports free on 127.0.0.1 (bound together, so distinct; closed before returning):
-- ports nothing listens on, for servers to take or for "connection refused".
function M.free_ports(n)
    local socks, ports = {}, {}
    for i = 1, n do
        local s = assert(socket.bind("127.0.0.1", 0))
        local _, port = s:getsockname()
        socks[i], ports[i] = s, tonumber(port)
    end
    for _, s in ipairs(socks) do s:close() end
    return ports
end

-- ${NAME} in template from vars; raises on an unset name.
local function render(template, vars)
    return (template:gsub("%${([%w_]+)}", function(name)
        local v = vars[name]
        if v == nil then error("template variable ${" .. name .. "} unset", 0) end
        return tostring(v)
    end))
end

-- method, url[, body[, headers[, timeout]]] -> status, headers, body, or nil, message.
-- Never follows redirects; sets content-length for a body.
function M.http(method, url, body, headers, timeout)
    local chunks = {}
    local h = {}
    for k, v in pairs(headers or {}) do h[k] = v end
    if body then h["content-length"] = tostring(#body) end
    local ok, status, rh = http.request({
        url = url, method = method, headers = h, redirect = false,
        source = body and ltn12.source.string(body) or nil,
        sink = ltn12.sink.table(chunks),
        create = function()
            local s = socket.tcp()
            s:settimeout(timeout or 10)
            return s
        end,
    })
    if not ok then return nil, status end
    return status, rh or {}, table.concat(chunks)
end

-- A zombie counts as gone: the daemonized nginx is not our child, and the reaper of this
-- container may be slow or absent.
local function alive(pid)
    if not pid then return false end
    local stat = read_file(string.format("/proc/%d/stat", pid))
    if stat then return not stat:match("^%d+ %b() Z") end
    return run(string.format("kill -0 %d 2>/dev/null", pid))
end

-- One nginx start on fresh ports; true or nil, message.
local function launch(self, template, vars, env, opts, names)
    local ports = M.free_ports(#names)
    local all = { PREFIX = self.prefix, PORT = ports[1], LISTEN = "127.0.0.1:" .. ports[1] }
    self.ports = {}
    for i, name in ipairs(names) do
        self.ports[name] = ports[i]
        all[name:upper() .. "_PORT"] = ports[i]
    end
    for k, v in pairs(vars or {}) do all[k] = v end
    local ok, conf = pcall(render, template, all)
    if not ok then return nil, conf end
    local conf_path = self.prefix .. "/conf/nginx.conf"
    write_file(conf_path, conf)
    local envs = {}
    for k, v in pairs(env or {}) do envs[#envs + 1] = k .. "=" .. q(v) end
    local startup = self.prefix .. "/logs/startup.log"
    local started = run(string.format(M.CLEAN_ENV .. "%s %s -p %s -c %s -e %s -g %s >%s 2>&1",
        table.concat(envs, " "), opts.nginx or os.getenv("NGINX") or "nginx", q(self.prefix), q(conf_path),
        q(self.error_log), q(opts.master and "daemon on;" or "daemon on; master_process off;"), q(startup)))
    self.pid = tonumber(read_file(self.prefix .. "/nginx.pid") or "")
    if not (started and self.pid) then
        return nil, tail(read_file(startup), 10) .. "\n" .. tail(read_file(self.error_log), 10)
    end
    self.port = ports[1]
    self.base = "http://127.0.0.1:" .. self.port
    return true
end

-- Answers a TCP connect on the first port.
local function connects(self)
    local s = socket.tcp()
    s:settimeout(0.2)
    local connected = s:connect("127.0.0.1", self.port)
    s:close()
    return connected ~= nil
end

--- Nginx.prologue{workers = 1, worker_connections = 256, error_log = "warn", env = {}} -> text.
-- The start every spec config shares: the lua module, one pid file and error log under
-- ${PREFIX}, an `env NAME;` line for each name in env, the events block, then `http {` with
-- access_log off and the temp paths under ${PREFIX}/tmp. workers may be a placeholder such
-- as "${WORKERS}". ${...} stay literal for launch() to fill. The caller adds its own http
-- directives and closes the block.
function M.prologue(opts)
    opts = opts or {}
    local env = {}
    for i, name in ipairs(opts.env or {}) do env[i] = "env " .. name .. ";\n" end
    return string.format([[
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes %s;
pid ${PREFIX}/nginx.pid;
error_log ${PREFIX}/logs/error.log %s;
%sevents { worker_connections %d; }
http {
    access_log off;
    client_body_temp_path ${PREFIX}/tmp/body;
    proxy_temp_path ${PREFIX}/tmp/proxy;
    fastcgi_temp_path ${PREFIX}/tmp/fastcgi;
    uwsgi_temp_path ${PREFIX}/tmp/uwsgi;
    scgi_temp_path ${PREFIX}/tmp/scgi;
]], tostring(opts.workers or 1), opts.error_log or "warn", table.concat(env),
        opts.worker_connections or 256)
end

-- The http-block lines that load the project's Lua modules (lua/), the spec/ngx harnesses
-- and the Lua 5.1 build of the C core (nginx's Lua is LuaJIT); ${ROOT} is the checkout.
M.LUA_PATHS = [[
    lua_package_path "${ROOT}/lua/?.lua;${ROOT}/lua/?/init.lua;${ROOT}/spec/ngx/?.lua;;";
    lua_package_cpath "${ROOT}/build/5.1/?.so;;";
]]

--- Nginx.launch(template, vars, env, opts) -> server, or nil, message.
-- template: nginx.conf text with ${NAME} placeholders, filled from vars plus PREFIX, PORT
-- and LISTEN (the first port, "127.0.0.1:PORT") and <NAME>_PORT for each of opts.ports.
-- env: {NAME = value} for the nginx process (which never inherits LD_PRELOAD). opts:
--   name    label of messages and of the prefix /tmp/lua-instagram-<name>.XXXXXX ("ngx")
--   ports   names of the ports to probe ({"http"}); server.ports[name] = number
--   nginx   the binary ($NGINX or "nginx")
--   ready   function(server) -> true once it answers (default: a TCP connect to PORT)
--   master  run a master process and the config's worker_processes (default: one process)
-- A failed start (a port taken between probing and binding) is retried twice on fresh
-- ports. A watchdog kills nginx and removes the prefix when this Lua process exits.
function M.launch(template, vars, env, opts)
    opts = opts or {}
    local names = opts.ports or { "http" }
    local name = opts.name or "ngx"
    local self = setmetatable({ name = name }, M)
    self.prefix = M.mktemp_dir(name)
    self.error_log = self.prefix .. "/logs/error.log"
    run("mkdir -p " .. q(self.prefix .. "/conf") .. " " .. q(self.prefix .. "/logs") .. " "
        .. q(self.prefix .. "/tmp"))
    run("chmod 755 " .. q(self.prefix))
    local ok, err
    for _ = 1, 3 do
        ok, err = launch(self, template, vars, env, opts, names)
        if ok then break end
    end
    if not ok then
        run("rm -rf " .. q(self.prefix))
        return nil, name .. ": nginx failed to start:\n" .. tostring(err)
    end
    M.watchdog(self.prefix, self.pid)
    local ready = opts.ready or connects
    local deadline = socket.gettime() + 5
    while not ready(self) do
        if socket.gettime() > deadline then
            local log = self:log_tail(10)
            self:stop()
            return nil, name .. ": nginx started but does not answer:\n" .. log
        end
        socket.sleep(0.01)
    end
    return self
end

--- Nginx.start(template, vars, env, opts) -> server; raises launch's message on failure.
function M.start(template, vars, env, opts)
    local server, err = M.launch(template, vars, env, opts)
    if not server then error(err, 2) end
    return server
end

-- The last `lines` lines of the error log (default: all of it).
function M:log_tail(lines)
    local text = read_file(self.error_log) or ""
    if lines then return tail(text, lines) end
    return text
end

-- GET path (no redirects followed) -> status, headers, body; raises if the request fails.
function M:get(path, headers)
    local status, h, body = M.http("GET", self.base .. path, nil, headers, 30)
    assert(status, "request to nginx failed: " .. tostring(h))
    return status, h, body
end

-- Stops nginx by its pid (SIGTERM, up to 3 s, then SIGKILL) and removes the prefix;
-- safe to call twice.
function M:stop()
    if self.stopped then return end
    self.stopped = true
    local pid = self.pid
    if alive(pid) then
        run(string.format("kill -TERM %d 2>/dev/null", pid))
        local deadline = socket.gettime() + 3
        while alive(pid) and socket.gettime() < deadline do socket.sleep(0.01) end
        if alive(pid) then run(string.format("kill -KILL %d 2>/dev/null", pid)) end
    end
    run("rm -rf " .. q(self.prefix))
end

-- start_beside(companion, template, vars[, env[, opts]]) -> server: M.start for the in-nginx specs,
-- with ROOT filled in and the LuaJIT build of the core (build/5.1) checked first; on failure it
-- stops `companion` (the fake or echo server the spec started before) and raises.
function M.start_beside(companion, template, vars, env, opts)
    local ok, server = pcall(function()
        local root = M.repo_root()
        assert(M.read_file(root .. "/build/5.1/instagram/core.so"), "build/5.1/instagram/core.so missing: make build")
        vars.ROOT = root
        return M.start(template, vars, env, opts)
    end)
    if not ok then
        companion:stop()
        error(server, 0)
    end
    return server
end

-- fake_vars(f[, extra]) -> the template variables naming a started fake's URLs and CA (CA, HTTPS,
-- HTTP, UNTRUSTED, WRONG_HOST, EXPIRED), plus `extra`
function M.fake_vars(f, extra)
    local vars = { CA = f.ca_file, HTTPS = f.https, HTTP = f.http, UNTRUSTED = f.tls.untrusted,
        WRONG_HOST = f.tls.wrong_host, EXPIRED = f.tls.expired }
    for k, v in pairs(extra or {}) do vars[k] = v end
    return vars
end

-- query(args) -> "?k=v&..." with the values percent-encoded, sorted; "" for no args
function M.query(args)
    local parts = {}
    for k, v in pairs(args or {}) do
        parts[#parts + 1] = k .. "=" .. tostring(v):gsub("[^%w%-_.~]", function(c)
            return string.format("%%%02X", c:byte())
        end)
    end
    table.sort(parts)
    return #parts > 0 and ("?" .. table.concat(parts, "&")) or ""
end

-- call(server, path, args) -> the decoded answer of a spec harness location (`path` like "/t/me"):
-- args percent-encoded and sorted into the query (M.query); raises unless the answer is a 200
-- whose JSON did not report a raise
function M.call(server, path, args)
    local status, _, body = server:get(path .. M.query(args))
    assert(status == 200, path .. " answered " .. tostring(status) .. ": " .. tostring(body) .. "\n"
        .. server:log_tail())
    local out = require("cjson").decode(body)
    assert(out.raised == nil, path .. " raised: " .. tostring(out.raised))
    return out
end

return M
