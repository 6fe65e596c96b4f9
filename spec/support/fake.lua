-- Fake Instagram server for the specs and `make demo`: starts Debian's nginx
-- with the Lua module on loopback ports, serving spec/support/fake/*.lua, and
-- drives it through the /__fake/ control plane. See spec/support/README.md.
--
--   local Fake = require "spec.support.fake"
--   local f = Fake.start()          -- raises on failure
--   ... f.https, f.ca_file, f:endpoints(), f:log(), f:fault(...) ...
--   f:stop()                        -- always, e.g. in teardown()
local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"
local cjson = require "cjson"

local Fake = {}
Fake.__index = Fake

local NGINX = os.getenv("FAKE_NGINX") or "nginx"
-- Tools run without a sanitizer runtime a spec run may have preloaded.
local CLEAN_ENV = "env -u LD_PRELOAD "
local PORT_NAMES = { "http", "https", "alt", "untrusted", "wrong_host", "expired" }

local function q(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- os.execute's result as a boolean under Lua 5.1/LuaJIT and 5.2+.
local function run(cmd)
    local a, _, c = os.execute(cmd)
    if type(a) == "number" then return a == 0 end
    return a == true and (c == nil or c == 0)
end

local function capture(cmd)
    local p = assert(io.popen(cmd, "r"))
    local out = p:read("*a")
    p:close()
    return (out:gsub("%s+$", ""))
end

local function read_file(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local text = f:read("*a")
    f:close()
    return text
end

local function write_file(path, text)
    local f = assert(io.open(path, "wb"))
    assert(f:write(text))
    f:close()
end

local function tail(text, lines)
    if not text or text == "" then return "" end
    local all = {}
    for line in text:gmatch("[^\n]+") do all[#all + 1] = line end
    return table.concat(all, "\n", math.max(1, #all - lines + 1))
end

-- Absolute directory of this file (spec/support).
local function support_dir()
    local src = debug.getinfo(1, "S").source:gsub("^@", "")
    local dir = src:match("^(.*)/[^/]*$") or "."
    if dir:sub(1, 1) ~= "/" then dir = capture("pwd") .. "/" .. dir end
    dir = dir:gsub("/%./", "/"):gsub("/%.$", "")
    return dir
end

local SUPPORT = support_dir()
local FAKE_DIR = SUPPORT .. "/fake"

-- Kills `pid` and removes `dir` once this Lua process is gone, so a crashed
-- or aborted spec run leaves no nginx behind. Exits quietly when `dir`
-- disappears first (f:stop did the work). $PPID is this Lua process.
local function watchdog(dir, pid)
    local kill = pid and string.format("kill -TERM %d 2>/dev/null; sleep 1; kill -KILL %d 2>/dev/null; ",
        pid, pid) or ""
    run(string.format(
        "lua_pid=$PPID; (trap '' HUP INT; while kill -0 $lua_pid 2>/dev/null; do [ -d %s ] || exit 0; "
            .. "sleep 1; done; %srm -rf %s) </dev/null >/dev/null 2>&1 &",
        q(dir), kill, q(dir)))
end

local function mktemp_dir(tag)
    local dir = capture("mktemp -d /tmp/lua-instagram-" .. tag .. ".XXXXXX")
    if dir == "" then error("fake: mktemp -d failed", 3) end
    return dir
end

-- TLS material is made once per Lua process (about 0.2 s) and reused.
local cert_dir
local function certs()
    if cert_dir and read_file(cert_dir .. "/expired.pem") then return cert_dir end
    local dir = mktemp_dir("fake-certs")
    local log = dir .. "/gen-certs.log"
    if not run(string.format(CLEAN_ENV .. "sh %s %s >%s 2>&1", q(FAKE_DIR .. "/gen-certs.sh"), q(dir), q(log))) then
        local msg = read_file(log) or ""
        run("rm -rf " .. q(dir))
        error("fake: certificate generation failed: " .. msg, 3)
    end
    os.remove(log)
    watchdog(dir, nil)
    cert_dir = dir
    return dir
end

local function free_ports(n)
    local socks, ports = {}, {}
    for i = 1, n do
        local s = assert(socket.bind("127.0.0.1", 0))
        local _, port = s:getsockname()
        socks[i], ports[i] = s, tonumber(port)
    end
    for _, s in ipairs(socks) do s:close() end
    return ports
end

local function render(template, vars)
    return (template:gsub("%${([%w_]+)}", function(name)
        local v = vars[name]
        if v == nil then error("fake: template variable " .. name .. " unset") end
        return tostring(v)
    end))
end

-- A zombie counts as gone: the daemonized nginx is not our child, and the
-- reaper of this container may be slow or absent.
local function alive(pid)
    if not pid then return false end
    local stat = read_file(string.format("/proc/%d/stat", pid))
    if stat then return not stat:match("^%d+ %b() Z") end
    return run(string.format("kill -0 %d 2>/dev/null", pid))
end

-- Starts nginx once on fresh ports; nil, message on failure.
local function launch(prefix, cdir)
    local ports = free_ports(#PORT_NAMES)
    local p = {}
    for i, name in ipairs(PORT_NAMES) do p[name] = ports[i] end
    local conf = render(assert(read_file(FAKE_DIR .. "/nginx.conf")), {
        PREFIX = prefix, FAKE_DIR = FAKE_DIR, CERT_DIR = cdir,
        HTTP_PORT = p.http, HTTPS_PORT = p.https, ALT_PORT = p.alt,
        UNTRUSTED_PORT = p.untrusted, WRONG_HOST_PORT = p.wrong_host, EXPIRED_PORT = p.expired,
    })
    write_file(prefix .. "/conf/nginx.conf", conf)
    local errlog = prefix .. "/logs/error.log"
    local started = run(string.format(CLEAN_ENV .. "%s -p %s -c %s -e %s >%s 2>&1", NGINX, q(prefix),
        q(prefix .. "/conf/nginx.conf"), q(errlog), q(prefix .. "/logs/startup.log")))
    if not started then
        return nil, tail(read_file(prefix .. "/logs/startup.log"), 10) .. "\n" .. tail(read_file(errlog), 10)
    end
    return p
end

local function request(method, url, payload, timeout)
    local chunks = {}
    local headers
    if payload then
        headers = { ["content-type"] = "application/json", ["content-length"] = tostring(#payload) }
    end
    local ok, status = http.request({
        url = url, method = method, headers = headers,
        source = payload and ltn12.source.string(payload) or nil,
        sink = ltn12.sink.table(chunks),
        create = function()
            local s = socket.tcp()
            s:settimeout(timeout or 10)
            return s
        end,
    })
    if not ok then return nil, status end
    return status, table.concat(chunks)
end

--- Starts a fake server. opts.quiet: don't announce the ports on stderr.
function Fake.start(opts)
    opts = opts or {}
    local cdir = certs()
    local prefix = mktemp_dir("fake")
    for _, sub in ipairs({ "conf", "logs", "tmp" }) do
        run("mkdir -p " .. q(prefix .. "/" .. sub))
    end
    local ports, err
    for _ = 1, 3 do -- a port taken between probing and binding: try fresh ones
        ports, err = launch(prefix, cdir)
        if ports then break end
    end
    if not ports then
        run("rm -rf " .. q(prefix))
        error("fake: nginx failed to start:\n" .. tostring(err), 2)
    end
    local self = setmetatable({
        prefix = prefix,
        error_log = prefix .. "/logs/error.log",
        pid = tonumber(read_file(prefix .. "/nginx.pid") or ""),
        ports = ports,
        http = "http://127.0.0.1:" .. ports.http,
        https = "https://127.0.0.1:" .. ports.https,
        alt = "http://127.0.0.1:" .. ports.alt,
        tls = {
            untrusted = "https://127.0.0.1:" .. ports.untrusted,
            wrong_host = "https://127.0.0.1:" .. ports.wrong_host,
            expired = "https://127.0.0.1:" .. ports.expired,
        },
        ca_file = cdir .. "/ca.pem",
        -- the default app of each API profile, as f:reset() restores it
        apps = {
            basic_display = { client_id = "684477648739411", secret = "eb8c7a1b2c3d4e5f60718293a4b5c6d7",
                redirect_uri = "https://localhost/auth/" },
            instagram_login = { client_id = "990602627938098", secret = "a1b2c3d4e5f60718293a4b5c6d7e8f90",
                redirect_uri = "https://localhost/auth/" },
        },
        untrusted_ca_file = cdir .. "/other_ca.pem",
    }, Fake)
    watchdog(prefix, self.pid)
    local deadline = socket.gettime() + 5
    while true do
        local status = request("GET", self.http .. "/__fake/ping", nil, 1)
        if status == 200 then break end
        if socket.gettime() > deadline then
            local log = tail(read_file(self.error_log), 10)
            self:stop()
            error("fake: nginx started but does not answer:\n" .. log, 2)
        end
        socket.sleep(0.01)
    end
    if not opts.quiet then
        io.stderr:write(string.format("fake instagram: http %s https %s alt %s (CA %s)\n",
            self.http, self.https, self.alt, self.ca_file))
    end
    return self
end

-- lua-cjson decodes every number to a float under Lua 5.4; give whole
-- numbers (ports, counts, statuses) back their integer subtype.
local to_integer = math.tointeger
local function integers(v)
    if type(v) == "table" then
        for k, x in pairs(v) do v[k] = integers(x) end
    elseif to_integer and type(v) == "number" and v == math.floor(v) and math.abs(v) < 2 ^ 53 then
        return to_integer(v)
    end
    return v
end

-- A control-plane call; raises with the server's message on failure.
function Fake:_call(method, action, body)
    if self.stopped then error("fake: server already stopped", 3) end
    local status, text = request(method, self.http .. "/__fake/" .. action,
        body ~= nil and cjson.encode(body) or nil)
    if not status then error("fake: control request " .. action .. " failed: " .. tostring(text), 3) end
    local ok, decoded = pcall(cjson.decode, text)
    if status ~= 200 or not ok then
        local msg = ok and type(decoded) == "table" and decoded.error or text
        error(string.format("fake: %s: %s (HTTP %s)\n%s", action, tostring(msg), tostring(status),
            tail(read_file(self.error_log), 5)), 3)
    end
    return integers(decoded)
end

function Fake:endpoints(scheme)
    local base = (scheme or "https") == "https" and self.https or self.http
    if scheme and scheme ~= "https" and scheme ~= "http" then
        error("fake: endpoints: scheme must be \"https\" or \"http\"", 2)
    end
    return { authorize = base .. "/oauth/authorize", token = base .. "/oauth/access_token", graph = base }
end

function Fake:reset() self:_call("POST", "reset") end

function Fake:config(t)
    if t == nil then return self:_call("GET", "config") end
    return self:_call("POST", "config", t)
end

--- Requests in arrival order; filter: exact path string or predicate.
function Fake:log(filter)
    local entries = self:_call("GET", "log")
    if filter == nil then return entries end
    local out = {}
    for _, e in ipairs(entries) do
        local keep
        if type(filter) == "function" then keep = filter(e) else keep = e.path == filter end
        if keep then out[#out + 1] = e end
    end
    return out
end

function Fake:clear_log() self:_call("POST", "clear_log") end

function Fake:advance(seconds)
    return self:_call("POST", "advance", { seconds = seconds }).offset
end

function Fake:clock() return self:_call("GET", "clock") end

local function gzip_bomb(self, bytes)
    local file = string.format("%s/tmp/bomb-%d.json.gz", self.prefix, bytes)
    if not read_file(file) then
        -- {"data":"aaa...a"} of `bytes` bytes, compressed
        local script = string.format(
            "{ printf '{\"data\":\"'; head -c %d /dev/zero | tr '\\000' a; printf '\"}'; } | gzip -9",
            math.max(0, bytes - 11))
        local ok = run(string.format(CLEAN_ENV .. "sh -c %s >%s", q(script), q(file)))
        if not ok then error("fake: gzip_bomb: could not make " .. file, 3) end
    end
    return file
end

function Fake:fault(path, spec)
    if type(path) ~= "string" or type(spec) ~= "table" then
        error("fake: fault(path, spec): path string and spec table expected", 2)
    end
    local copy = {}
    for k, v in pairs(spec) do copy[k] = v end
    if copy.mode == "gzip_bomb" then copy.file = gzip_bomb(self, copy.bytes or 16 * 1024 * 1024) end
    self:_call("POST", "fault", { path = path, spec = copy })
end

function Fake:clear_faults() self:_call("POST", "clear_faults") end

function Fake:issue_code(client_id, user_key, opts)
    opts = opts or {}
    return self:_call("POST", "issue_code", {
        client_id = client_id, user_key = user_key, scopes = opts.scopes, redirect_uri = opts.redirect_uri,
    }).code
end

function Fake:issue_token(user_key, opts)
    local body = { user_key = user_key }
    for k, v in pairs(opts or {}) do body[k] = v end
    return self:_call("POST", "issue_token", body).access_token
end

--- The server's record of a token ({user_key, api, kind, issued_at, expires_at, ...}) or nil.
function Fake:token_info(token)
    local rec = self:_call("POST", "token", { access_token = token }).record
    if rec == cjson.null then return nil end
    return rec
end

--- Stops nginx and removes the prefix; safe to call twice.
function Fake:stop()
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

return Fake
