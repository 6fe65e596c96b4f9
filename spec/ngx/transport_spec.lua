-- The "ngx" (cosocket) transport inside a real nginx, against the fake Instagram.
-- This spec starts the fake, then a second Debian nginx (lua module 0.10.23) whose handlers
-- (spec/ngx/harness.lua) run the client there, and checks the JSON they answer with.
local Fake = require "spec.support.fake"
local Nginx = require "spec.support.nginx"
local cjson = require "cjson"

local CONF = Nginx.prologue() .. Nginx.LUA_PATHS .. [[
    lua_ssl_trusted_certificate ${CA};
    lua_ssl_verify_depth 3;
    lua_socket_log_errors off;
    lua_shared_dict ig_refresh 1m;
    init_by_lua_block {
        require("harness").configure({
            https = "${HTTPS}", http = "${HTTP}", untrusted = "${UNTRUSTED}",
            wrong_host = "${WRONG_HOST}", expired = "${EXPIRED}", ca_file = "${CA}",
        })
    }
    server {
        listen 127.0.0.1:${PORT};
        location ~ ^/t/(\w+)$ {
            content_by_lua_block { require("harness").run(ngx.var[1]) }
        }
    }
}
]]

describe("ngx transport inside nginx #nginx", function()
  local f, server

  local function get(name, args) return Nginx.call(server, "/t/" .. name, args) end

  setup(function()
    f = Fake.start({ quiet = true })
    server = Nginx.start_beside(f, CONF, Nginx.fake_vars(f))
  end)

  teardown(function()
    if server then server:stop() end
    if f then f:stop() end
  end)

  it("splits URLs in nginx (target checked by ngx.re.find) exactly as parse_url does", function()
    local out = get("split_urls")
    assert.is_true(out.has_re)
    assert.equal(14, out.count)
    assert.same({}, out.mismatches)
  end)

  before_each(function()
    f:reset()
  end)

  it("is the default transport in a content handler, and libcurl is not used", function()
    local token = f:issue_token("jayposiris", { kind = "short" })
    local out = get("detect", { token = token })
    assert.equal("content", out.phase)
    assert.is_true(out.is_ngx)
    assert.is_nil(out.err)
    assert.equal("jayposiris", out.me.username)
  end)

  it("runs the whole tutorial flow and does not follow the authorize 302", function()
    local out = get("flow")
    assert.equal("done", out.step, cjson.encode(out))
    assert.equal(302, out.authorize_status)
    assert.matches("^https://localhost/auth/%?code=", out.location)
    assert.equal("state", out.wrong_state.kind)
    assert.is_string(out.token_user_id)
    assert.equal(out.token_user_id, out.me.id)
    assert.equal("jayposiris", out.me.username)
    -- nothing went to the redirect target; the token POST carried our headers
    local posts = f:log("/oauth/access_token")
    assert.equal(1, #posts)
    assert.matches("^lua%-instagram/", posts[1].headers["user-agent"])
    assert.matches("^localhost:%d+$", posts[1].headers.host)
    assert.equal(1, #f:log("/oauth/authorize"))
    assert.equal(0, #f:log("/auth/"))
  end)

  it("maps an error body to kind api with code 190", function()
    local out = get("me", { token = "IGQVJnot-a-real-token" })
    assert.equal("api", out.err.kind)
    assert.equal(190, out.err.code)
    assert.is_true(out.err.token_invalid)
  end)

  it("gives kind timeout when the server is slower than the timeout", function()
    local token = f:issue_token("jayposiris", { kind = "short" })
    f:fault("/me", { delay = 3, times = 1 })
    local out = get("me", { token = token, timeout = 0.5 })
    assert.equal("timeout", out.err.kind)
    assert.not_matches("access_token", out.err.message)
    assert.not_matches(token, out.err.message, 1, true)
  end)

  it("gives kind response for a body above max_response_bytes, with or without a length", function()
    local token = f:issue_token("jayposiris", { kind = "short" })
    f:fault("/me", { mode = "oversize", bytes = 200000, times = 1 })
    local out = get("me", { token = token, max = 10000 })
    assert.equal("response", out.err.kind)
    assert.matches("larger than 10000 bytes", out.err.message)
    assert.equal(200, out.err.status)
    f:fault("/me", { mode = "oversize", bytes = 200000, length = false, times = 1 })
    out = get("me", { token = token, max = 10000 })
    assert.equal("response", out.err.kind)
    assert.equal(200, out.err.status)
    -- and in ig:batch (request_many), as with libcurl
    f:fault("/me", { mode = "oversize", bytes = 200000, times = 2 })
    out = get("batch", { token = token, n = 2, max = 10000 })
    for i = 1, 2 do
      assert.equal("response", out.results[i].err.kind)
      assert.equal(200, out.results[i].err.status)
    end
  end)

  it("gives kind response for broken chunked framing", function()
    f:fault("/x", { mode = "broken_chunked" })
    local out = get("raw", { path = "/x" })
    assert.equal("response", out.results[1].kind)
    assert.matches("chunk", out.results[1].message)
  end)

  it("gives kind network, as libcurl does, when the connection is cut", function()
    for _, mode in ipairs({ "close", "reset", "reset_mid_headers", "reset_mid_body", "fin_mid_body",
                            "bad_length_long" }) do
      f:fault("/cut", { mode = mode })
      local out = get("raw", { path = "/cut?access_token=SECRET-IN-QUERY" })
      assert.equal("network", out.results[1].kind, mode .. ": " .. cjson.encode(out.results[1]))
      assert.not_matches("SECRET", out.results[1].message)
    end
  end)

  it("keeps the overall deadline while a slow server still trickles bytes", function()
    f:fault("/slow", { mode = "trickle", interval = 0.3 })
    local out = get("raw", { path = "/slow", timeout = 1 })
    assert.equal("timeout", out.results[1].kind, cjson.encode(out.results[1]))
  end)

  it("reads a body cut short by its Content-Length and does not reuse that connection", function()
    f:fault("/short", { mode = "bad_length_short" })
    local out = get("raw", { path = "/short", n = 2 })
    assert.is_number(out.results[1].status, cjson.encode(out.results[1]))
    assert.equal(0, out.results[2].reused)
  end)

  it("gives kind tls for an untrusted CA, a wrong host name, an expired certificate", function()
    for _, which in ipairs({ "untrusted", "wrong_host", "expired" }) do
      local out = get("tls", { which = which })
      assert.equal("tls", out.kind, which .. ": " .. cjson.encode(out))
      assert.not_matches("SECRET", out.message)
    end
  end)

  it("fails closed (kind tls) for https to an IP literal: nginx cannot match IP SANs", function()
    local out = get("tls", { which = "ip" })
    assert.equal("tls", out.kind, cjson.encode(out))
    assert.matches("TLS handshake", out.message)
  end)

  it("refuses http:// unless allow_http, and raises on CR/LF/NUL like the C core", function()
    local out = get("raw", { scheme = "http", path = "/__fake/ping" })
    assert.equal("network", out.results[1].kind)
    assert.matches("allow_http", out.results[1].message)
    out = get("raw", { scheme = "http", path = "/__fake/ping", allow_http = "1" })
    assert.equal(200, out.results[1].status)
    local m = get("misuse")
    for _, case in ipairs({ "header_crlf", "header_nul", "url_lf", "bad_name", "many" }) do
      assert.is_false(m[case].ok, case)
    end
    assert.matches("CR, LF or NUL", m.header_crlf.err)
    assert.matches("request #2", m.many.err)
  end)

  it("returns a 302 as a response and never follows it", function()
    f:fault("/moved", { status = 302, headers = { Location = f.https .. "/elsewhere" } })
    local out = get("raw", { path = "/moved" })
    assert.equal(302, out.results[1].status)
    assert.equal(f.https .. "/elsewhere", out.results[1].headers.location)
    assert.equal(0, #f:log("/elsewhere"))
  end)

  it("reuses the connection for a second request (keep-alive)", function()
    local out = get("raw", { path = "/__nothing", n = 3 })
    for i = 1, 3 do assert.is_number(out.results[i].status) end
    assert.is_true(out.results[2].reused > 0, cjson.encode(out.results))
    assert.is_true(out.results[3].reused > out.results[2].reused)
    local log = f:log("/__nothing")
    assert.equal(3, #log)
  end)

  it("sends a request table given again as it is at each call, changed in place or not", function()
    local out = get("reuse")
    assert.equal(7, #out.results)
    local log = f:log(function(r) return r.path == "/__reuse" end)
    assert.equal(7, #log)
    local seen = {}
    for i, r in ipairs(log) do
      seen[i] = table.concat({ r.method, r.args.n, r.headers["x-test"], r.headers["x-more"] or "-" }, " ")
    end
    assert.same({ "GET 1 one -", "GET 1 one -", "GET 1 two -", "GET 2 two -", "GET 2 two three",
      "GET 2 four -", "DELETE 2 four -" }, seen)
  end)

  it("runs ig:batch calls concurrently on light threads", function()
    local token = f:issue_token("jayposiris", { kind = "short" })
    f:fault("/me", { delay = 0.3, times = 4 })
    local out = get("batch", { token = token, n = 4 })
    for i = 1, 4 do
      assert.is_true(out.results[i].ok, cjson.encode(out.results[i]))
      assert.equal("jayposiris", out.results[i].value.username)
    end
    local log = f:log("/me")
    assert.equal(4, #log)
    local first_finish = math.huge
    for _, e in ipairs(log) do first_finish = math.min(first_finish, e.finished) end
    for _, e in ipairs(log) do
      assert.is_true(e.started < first_finish, "a request started only after another had finished")
    end
  end)

  it("keeps at most `concurrency` requests in flight", function()
    local token = f:issue_token("jayposiris", { kind = "short" })
    f:fault("/me", { delay = 0.2, times = 5 })
    local out = get("batch", { token = token, n = 5, concurrency = 2 })
    for i = 1, 5 do assert.is_true(out.results[i].ok) end
    local log = f:log("/me")
    assert.equal(5, #log)
    local most = 0
    for _, e in ipairs(log) do
      local running = 0
      for _, o in ipairs(log) do
        if o.started <= e.started and e.started < o.finished then running = running + 1 end
      end
      most = math.max(most, running)
    end
    assert.equal(2, most)
  end)
  it("makes one refresh request for concurrent refresh_if_needed calls sharing a lua_shared_dict", function()
    f:reset()
    f:fault("/refresh_access_token", { delay = 0.3 })
    local token = f:issue_token("jayposiris", { kind = "long", age = 55 * 86400 })
    local out = get("refresh", { token = token, n = 5, dict = "ig_refresh" })
    assert.equal(5, #out.results)
    for i, r in ipairs(out.results) do
      assert.is_true(r.ok, "thread " .. i .. ": " .. cjson.encode(r))
      assert.is_true(r.expires_at > out.previous_expires_at)
    end
    assert.equal(1, #f:log("/refresh_access_token"))
  end)

  it("raises when opts.shared_dict names no lua_shared_dict", function()
    local token = f:issue_token("jayposiris", { kind = "long", age = 55 * 86400 })
    local status, _, body = server:get("/t/refresh?n=1&dict=nope&token=" .. token)
    assert.equal(200, status)
    assert.matches("opts.shared_dict 'nope' is not a lua_shared_dict", body)
  end)
end)
