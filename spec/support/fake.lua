-- Fake Instagram server for the specs and `make demo`: starts Debian's nginx
-- with the Lua module on loopback ports (through spec/support/nginx.lua),
-- serving spec/support/fake/*.lua, and
-- drives it through the /__fake/ control plane. See spec/support/README.md.
--
--   local Fake = require "spec.support.fake"
--   local f = Fake.start()          -- raises on failure
--   ... f.https, f.ca_file, f:endpoints(), f:log(), f:fault(...) ...
--   f:stop()                        -- always, e.g. in teardown()
local cjson = require "cjson"
local Nginx = require "spec.support.nginx"

local Fake = {}
Fake.__index = Fake

local NGINX = os.getenv("FAKE_NGINX") or "nginx"
local PORT_NAMES = { "http", "https", "alt", "untrusted", "wrong_host", "expired" }
local FAKE_DIR = Nginx.SUPPORT_DIR .. "/fake"
local q, run, read_file, tail = Nginx.q, Nginx.run, Nginx.read_file, Nginx.tail

-- TLS material is made once per Lua process (about 0.2 s) and reused.
local cert_dir
local function certs()
    if cert_dir and read_file(cert_dir .. "/expired.pem") then return cert_dir end
    local dir = Nginx.mktemp_dir("fake-certs")
    local log = dir .. "/gen-certs.log"
    if not run(string.format(Nginx.CLEAN_ENV .. "sh %s %s >%s 2>&1", q(FAKE_DIR .. "/gen-certs.sh"), q(dir),
            q(log))) then
        local msg = read_file(log) or ""
        run("rm -rf " .. q(dir))
        error("fake: certificate generation failed: " .. msg, 3)
    end
    os.remove(log)
    Nginx.watchdog(dir, nil)
    cert_dir = dir
    return dir
end

-- A control-plane request: status, body or nil, message.
local function request(method, url, payload, timeout)
    local headers = payload and { ["content-type"] = "application/json" } or nil
    local status, h, body = Nginx.http(method, url, payload, headers, timeout)
    if not status then return nil, h end
    return status, body
end

--- Starts a fake server. opts.quiet: don't announce the ports on stderr.
function Fake.start(opts)
    opts = opts or {}
    local cdir = certs()
    local server, err = Nginx.launch(assert(read_file(FAKE_DIR .. "/nginx.conf")),
        { FAKE_DIR = FAKE_DIR, CERT_DIR = cdir }, nil, {
            name = "fake", ports = PORT_NAMES, nginx = NGINX,
            ready = function(srv)
                return request("GET", srv.base .. "/__fake/ping", nil, 1) == 200
            end,
        })
    if not server then error(err, 2) end
    local ports = server.ports
    local self = setmetatable({
        _nginx = server,
        prefix = server.prefix,
        error_log = server.error_log,
        pid = server.pid,
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
        local ok = run(string.format(Nginx.CLEAN_ENV .. "sh -c %s >%s", q(script), q(file)))
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

--- Counts from the publishing endpoints: {published = n, quota_used = n}.
function Fake:business() return self:_call("GET", "business") end

--- The server's record of a token ({user_key, api, kind, issued_at, expires_at, ...}) or nil.
function Fake:token_info(token)
    local rec = self:_call("POST", "token", { access_token = token }).record
    if rec == cjson.null then return nil end
    return rec
end

--- Signs and POSTs a webhook delivery to spec.url (see spec/support/README.md, "Webhooks").
function Fake:send_webhook(spec)
    return self:_call("POST", "webhook", spec)
end

--- Stops nginx and removes the prefix; safe to call twice.
function Fake:stop()
    if self.stopped then return end
    self.stopped = true
    self._nginx:stop()
end

return Fake
