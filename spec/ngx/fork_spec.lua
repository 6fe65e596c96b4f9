-- Fork safety inside nginx (review C1/S6): a client that makes a request in init_by_lua (in the
-- master, before the workers fork) with transport = "curl" must not share that libcurl
-- connection with the workers. nginx with a master and 2 workers; 10 concurrent requests per
-- scheme, each asking the echo server (spec/support/echo.lua) for its own n, over http and https.
local Echo = require "spec.support.echo"
local Nginx = require "spec.support.nginx"
local cjson = require "cjson"

local CONF = Nginx.prologue{ workers = 2 } .. Nginx.LUA_PATHS .. [[
    init_by_lua_block {
        local instagram = require "instagram"
        CLIENTS, STARTUP = {}, {}
        for scheme, base in pairs({ http = "${HTTP}", https = "${HTTPS}" }) do
            local ig = instagram.new({
                app_id = "684477648739411", app_secret = "eb8c7a1b2c3d4e5f60718293a4b5c6d7",
                redirect_uri = "https://localhost/auth/", api = "basic_display",
                transport = "curl", allow_http = true, ca_file = "${CA}", retries = 0, timeout = 10,
                endpoints = { authorize = base .. "/oauth/authorize", token = base .. "/oauth/access_token",
                              graph = base },
            })
            -- a start-up health check, in the master
            local v, err = ig:get("startup-token", "echo", { n = "startup" })
            assert(v and v.n == "startup", "start-up request failed: " .. tostring(err))
            CLIENTS[scheme], STARTUP[scheme] = ig, v.conn
        end
    }
    server {
        listen 127.0.0.1:${PORT};
        location = /t {
            content_by_lua_block {
                local scheme, n = ngx.var.arg_scheme, ngx.var.arg_n
                local v, err = CLIENTS[scheme]:get("token-" .. n, "echo", { n = n, delay = "0.1" })
                ngx.say(require("cjson").encode({
                    asked = n, got = v and v.n, conn = v and v.conn, startup_conn = STARTUP[scheme],
                    pid = ngx.worker.pid(), err = err and tostring(err) or nil,
                }))
            }
        }
    }
}
]]

describe("a client used in init_by_lua, then in 2 forked workers #nginx", function()
  local echo, server

  setup(function()
    echo = Echo.start()
    server = Nginx.start_beside(echo, CONF, { CA = echo.ca_file, HTTP = echo.http, HTTPS = echo.https },
      nil, { name = "ngx-fork", master = true })
  end)

  teardown(function()
    if server then server:stop() end
    if echo then echo:stop() end
  end)

  for _, scheme in ipairs({ "http", "https" }) do
    it("gives each of 10 concurrent requests its own response over " .. scheme, function()
      local dir = Nginx.mktemp_dir("ngx-fork-out")
      local cmd = {}
      for i = 1, 10 do
        cmd[#cmd + 1] = string.format("curl -s -m 30 -o %s/%d '%s/t?scheme=%s&n=r%d' &", dir, i, server.base, scheme, i)
      end
      assert(Nginx.run(Nginx.CLEAN_ENV .. "sh -c " .. Nginx.q(table.concat(cmd, " ") .. " wait")))
      for i = 1, 10 do
        local body = Nginx.read_file(dir .. "/" .. i)
        assert(body and body ~= "", "no answer for request " .. i .. "\n" .. server:log_tail(20))
        local r = cjson.decode(body)
        assert.is_nil(r.err)
        assert.equal("r" .. i, r.got) -- its own response, never another request's
        assert.not_equal(r.startup_conn, r.conn) -- a connection of the worker's own
      end
      Nginx.run("rm -rf " .. Nginx.q(dir))
      assert.equal("", server:log_tail():match("%[alert%][^\n]*") or "")
    end)
  end
end)
