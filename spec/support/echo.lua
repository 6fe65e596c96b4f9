-- A throwaway echo server for the fork-safety specs: Debian nginx (one worker) on loopback,
-- plain HTTP and HTTPS (certificate for 127.0.0.1 and localhost, signed by a test CA made with
-- spec/support/fake/gen-certs.sh). Every path ending in /echo answers
--   {"n": <query arg n>, "conn": <nginx connection serial>, "reqs": <requests on it so far>,
--    "method": ..., "scheme": ..., "ssl_session_reused": "r" or "." (https)}
-- after sleeping `delay` seconds (query arg, default 0), so a response can be matched to its
-- request and to the TCP connection that carried it.
--
--   local Echo = require "spec.support.echo"
--   local e = Echo.start()        -- e.http, e.https, e.ca_file, e.cert_dir
--   e:stop()
local Nginx = require "spec.support.nginx"

local M = {}
M.__index = M

local CONF = Nginx.prologue{ worker_connections = 512 } .. [[
    keepalive_timeout 60s;
    keepalive_requests 10000;
    lua_socket_log_errors off;
    init_by_lua_block { require "cjson" }
    server {
        listen 127.0.0.1:${HTTP_PORT};
        listen 127.0.0.1:${HTTPS_PORT} ssl;
        ssl_certificate ${CERT_DIR}/server.pem;
        ssl_certificate_key ${CERT_DIR}/server.key;
        ssl_session_cache shared:echo_ssl:1m;
        location ~ /echo$ {
            default_type application/json;
            content_by_lua_block {
                local delay = tonumber(ngx.var.arg_delay)
                if delay and delay > 0 then ngx.sleep(delay) end
                ngx.say(require("cjson").encode({
                    n = ngx.var.arg_n, conn = tonumber(ngx.var.connection),
                    reqs = tonumber(ngx.var.connection_requests), method = ngx.req.get_method(),
                    scheme = ngx.var.scheme, ssl_session_reused = ngx.var.ssl_session_reused,
                }))
            }
        }
    }
}
]]

--- Echo.start() -> server; raises on failure.
function M.start()
    local dir = Nginx.mktemp_dir("echo-certs")
    local gen = Nginx.SUPPORT_DIR .. "/fake/gen-certs.sh"
    if not Nginx.run(string.format(Nginx.CLEAN_ENV .. "sh %s %s >/dev/null 2>&1", Nginx.q(gen), Nginx.q(dir))) then
        Nginx.run("rm -rf " .. Nginx.q(dir))
        error("echo: certificate generation failed", 2)
    end
    -- nginx workers forked by a master running as root are "nobody": let them read the CA
    Nginx.run("chmod 755 " .. Nginx.q(dir) .. " && chmod 644 " .. Nginx.q(dir .. "/ca.pem"))
    Nginx.watchdog(dir, nil)
    local server, err = Nginx.launch(CONF, { CERT_DIR = dir }, nil, { name = "echo", ports = { "http", "https" } })
    if not server then
        Nginx.run("rm -rf " .. Nginx.q(dir))
        error(err, 2)
    end
    return setmetatable({
        _nginx = server, cert_dir = dir, ca_file = dir .. "/ca.pem",
        http = "http://127.0.0.1:" .. server.ports.http,
        https = "https://127.0.0.1:" .. server.ports.https,
    }, M)
end

function M:log_tail(n)
    return self._nginx:log_tail(n)
end

function M:stop()
    if self._nginx then self._nginx:stop() end
    self._nginx = nil
    if self.cert_dir then Nginx.run("rm -rf " .. Nginx.q(self.cert_dir)) end
    self.cert_dir = nil
end

return M
