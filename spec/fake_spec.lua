-- Proves the fake Instagram server (spec/support) behaves as
-- spec/support/README.md documents. Plain HTTP through socket.http, HTTPS
-- through the curl CLI.
local Fake = require "spec.support.fake"
local Nginx = require "spec.support.nginx"
local socket = require "socket"
local cjson = require "cjson"

local BASIC = "684477648739411"
local BASIC_SECRET = "eb8c7a1b2c3d4e5f60718293a4b5c6d7"
local LOGIN = "990602627938098"
local LOGIN_SECRET = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
local REDIRECT = "https://localhost/auth/"
-- the curl CLI, without any sanitizer runtime the spec run preloads
local CURL = Nginx.CLEAN_ENV .. "curl "

local function escape(s)
    return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function query(t)
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    table.sort(keys)
    local out = {}
    for _, k in ipairs(keys) do out[#out + 1] = escape(k) .. "=" .. escape(t[k]) end
    return table.concat(out, "&")
end

-- {status, headers, body} over plain HTTP; never follows redirects.
local function request(method, url, body, headers)
    local status, h, text = Nginx.http(method, url, body, headers, 10)
    if not status then return { err = h } end
    return { status = status, headers = h, body = text }
end

local function get(url, headers) return request("GET", url, nil, headers) end

local function post_form(url, form)
    return request("POST", url, query(form), { ["content-type"] = "application/x-www-form-urlencoded" })
end

local function json(res)
    return cjson.decode(res.body)
end

-- curl exit code and HTTP status for an https URL.
local function curl(url, extra)
    local p = io.popen(CURL .. "-s -o /dev/null -w '%{http_code}' --max-time 10 " .. (extra or "") .. " '"
        .. url .. "'; echo \" $?\"")
    local out = p:read("*a")
    p:close()
    local status, rc = out:match("(%d+) (%d+)")
    return tonumber(rc), tonumber(status)
end

local function authorize_url(f, params)
    local p = { client_id = BASIC, redirect_uri = REDIRECT, response_type = "code", scope = "user_profile,user_media" }
    for k, v in pairs(params or {}) do
        if v == false then p[k] = nil else p[k] = v end
    end
    return f.http .. "/oauth/authorize?" .. query(p)
end

local function code_from(location)
    return location:match("[?&]code=([^&#]+)")
end

describe("fake instagram server", function()
    local f

    setup(function()
        f = Fake.start({ quiet = true })
    end)

    teardown(function()
        if f then f:stop() end
    end)

    before_each(function()
        f:reset()
    end)

    describe("start/stop", function()
        it("listens on distinct loopback ports and knows its CA", function()
            local seen = {}
            for _, url in ipairs({ f.http, f.https, f.alt, f.tls.untrusted, f.tls.wrong_host, f.tls.expired }) do
                local port = assert(url:match("^https?://127%.0%.0%.1:(%d+)$"))
                assert.is_nil(seen[port])
                seen[port] = true
            end
            assert.truthy(io.open(f.ca_file)):close()
        end)

        it("gives endpoints for https (default) and http", function()
            assert.same({ authorize = f.https .. "/oauth/authorize", token = f.https .. "/oauth/access_token",
                graph = f.https }, f:endpoints())
            assert.same({ authorize = f.http .. "/oauth/authorize", token = f.http .. "/oauth/access_token",
                graph = f.http }, f:endpoints("http"))
        end)

        it("stops nginx and removes its prefix, twice is fine", function()
            local g = Fake.start({ quiet = true })
            local pid, prefix = g.pid, g.prefix
            assert.equal(200, get(g.http .. "/__fake/ping").status)
            g:stop()
            g:stop()
            local stat = io.open(string.format("/proc/%d/stat", pid))
            if stat then -- gone, or a zombie waiting for init to reap it
                assert.matches("^%d+ %b() Z", stat:read("*a"))
                stat:close()
            end
            assert.is_nil(io.open(prefix .. "/conf/nginx.conf"))
            assert.truthy(get(g.http .. "/__fake/ping").err)
        end)
    end)

    describe("GET /oauth/authorize", function()
        it("redirects with a code, the state and #_", function()
            local res = get(authorize_url(f, { state = "a b/c" }))
            assert.equal(302, res.status)
            local loc = res.headers.location
            assert.matches("^https://localhost/auth/%?code=AQ[%w_%-]+&state=a%%20b%%2Fc#_$", loc)
            assert.is_true(#code_from(loc) >= 100)
        end)

        it("leaves state out when none was sent, and accepts space-separated scopes", function()
            local res = get(authorize_url(f, { scope = "user_profile user_media" }))
            assert.equal(302, res.status)
            assert.matches("^https://localhost/auth/%?code=AQ[%w_%-]+#_$", res.headers.location)
        end)

        it("redirects with access_denied in deny mode", function()
            f:config({ authorize_mode = "deny" })
            local res = get(authorize_url(f, { state = "xyz" }))
            assert.equal(302, res.status)
            assert.equal("https://localhost/auth/?error=access_denied&error_reason=user_denied"
                .. "&error_description=The+user+denied+your+request&state=xyz", res.headers.location)
        end)

        local bad = {
            { "an unknown client_id", { client_id = "1" }, "Invalid client_id" },
            { "a redirect_uri without the trailing slash", { redirect_uri = "https://localhost/auth" },
                "Invalid redirect_uri" },
            { "a response_type other than code", { response_type = "token" }, "Invalid response_type" },
            { "an unknown scope", { scope = "user_profile,bogus" }, "Invalid scope: bogus" },
            { "an instagram_login scope on a basic_display app", { scope = "user_profile,instagram_business_basic" },
                "Invalid scope: instagram_business_basic" },
            { "no user_profile", { scope = "user_media" }, "Invalid scope: user_profile is required" },
            { "no scope", { scope = false }, "Invalid scope" },
        }
        for _, case in ipairs(bad) do
            it("shows a 400 page for " .. case[1], function()
                local res = get(authorize_url(f, case[2]))
                assert.equal(400, res.status)
                assert.matches("^text/html", res.headers["content-type"])
                assert.is_nil(res.headers.location)
                assert.truthy(res.body:find(case[3], 1, true))
            end)
        end

        it("validates instagram_login scopes", function()
            local res = get(authorize_url(f, { client_id = LOGIN,
                scope = "instagram_business_basic,instagram_business_content_publish" }))
            assert.equal(302, res.status)
            res = get(authorize_url(f, { client_id = LOGIN, scope = "business_basic" }))
            assert.equal(400, res.status)
            assert.truthy(res.body:find("Invalid scope: business_basic", 1, true))
        end)
    end)

    describe("POST /oauth/access_token", function()
        local function exchange(code, over)
            local form = { client_id = BASIC, client_secret = BASIC_SECRET, grant_type = "authorization_code",
                redirect_uri = REDIRECT, code = code }
            for k, v in pairs(over or {}) do form[k] = v end
            return post_form(f.http .. "/oauth/access_token", form)
        end

        local function oauth_error(res, message)
            assert.equal(400, res.status)
            assert.same({ error_type = "OAuthException", code = 400, error_message = message }, json(res))
        end

        it("exchanges a code from the authorize redirect (basic shape, bare big user_id)", function()
            local code = code_from(get(authorize_url(f)).headers.location)
            local res = exchange(code)
            assert.equal(200, res.status)
            assert.matches('^{"access_token":"IGQVJ[%w]+","user_id":17841405793187219}$', res.body)
        end)

        it("makes codes single-use", function()
            local code = f:issue_code(BASIC)
            assert.equal(200, exchange(code).status)
            oauth_error(exchange(code), "Matching code was not found or was already used")
        end)

        it("expires codes after an hour of fake clock", function()
            local code = f:issue_code(BASIC)
            f:advance(3601)
            oauth_error(exchange(code), "Matching code was not found or was already used")
        end)

        it("binds codes to the client_id", function()
            local code = f:issue_code(LOGIN)
            oauth_error(exchange(code), "Matching code was not found or was already used")
        end)

        it("rejects a redirect_uri different from the one authorized", function()
            local code = f:issue_code(BASIC)
            oauth_error(exchange(code, { redirect_uri = "https://localhost/auth" }),
                "Error validating verification code. Please make sure your redirect_uri is identical to the one "
                    .. "you used in the OAuth dialog request")
        end)

        it("rejects a wrong secret or unknown app", function()
            local code = f:issue_code(BASIC)
            oauth_error(exchange(code, { client_secret = "nope" }), "Invalid platform app")
            oauth_error(exchange(code, { client_id = "42" }), "Invalid platform app")
        end)

        it("rejects a wrong grant_type and missing fields", function()
            local code = f:issue_code(BASIC)
            oauth_error(exchange(code, { grant_type = "client_credentials" }),
                "Invalid grant_type: client_credentials")
            oauth_error(exchange(nil), "You must provide a code")
        end)

        it("accepts only form-encoded bodies", function()
            local code = f:issue_code(BASIC)
            local body = cjson.encode({ client_id = BASIC, client_secret = BASIC_SECRET, code = code,
                grant_type = "authorization_code", redirect_uri = REDIRECT })
            oauth_error(request("POST", f.http .. "/oauth/access_token", body,
                { ["content-type"] = "application/json" }), "You must provide a client_id")
            local multipart = "--XX\r\nContent-Disposition: form-data; name=\"client_id\"\r\n\r\n" .. BASIC
                .. "\r\n--XX--\r\n"
            oauth_error(request("POST", f.http .. "/oauth/access_token", multipart,
                { ["content-type"] = "multipart/form-data; boundary=XX" }), "You must provide a client_id")
            assert.equal(200, exchange(code).status)
        end)

        it("answers instagram_login apps in each configured shape", function()
            local function shape_body(shape)
                f:config({ apps = { [LOGIN] = { shape = shape } } })
                local code = f:issue_code(LOGIN, nil, {
                    scopes = { "instagram_business_basic", "instagram_business_content_publish" } })
                local res = exchange(code, { client_id = LOGIN, client_secret = LOGIN_SECRET })
                assert.equal(200, res.status)
                return res.body
            end
            assert.matches('^{"access_token":"IGAA%w+","user_id":27640875392278831,"permissions":'
                .. '%["instagram_business_basic","instagram_business_content_publish"%]}$', shape_body("flat_array"))
            assert.matches('^{"data":%[{"access_token":"IGAA%w+","user_id":"27640875392278831","permissions":'
                .. '"instagram_business_basic,instagram_business_content_publish"}%]}$', shape_body("data_wrapper"))
            assert.matches('^{"access_token":"IGAA%w+","user_id":"27640875392278831"}$', shape_body("flat_string"))
        end)

        it("gives a short-lived token good for an hour", function()
            local token = json(exchange(f:issue_code(BASIC))).access_token
            local info = f:token_info(token)
            assert.equal("short", info.kind)
            assert.equal(3600, info.expires_at - info.issued_at)
            assert.equal(200, get(f.http .. "/me?access_token=" .. token).status)
            f:advance(3600)
            assert.equal(463, json(get(f.http .. "/me?access_token=" .. token)).error.error_subcode)
        end)
    end)

    describe("Graph /me and /{user-id}", function()
        it("returns id and username by default, fields when asked", function()
            local token = f:issue_token("jayposiris")
            local res = get(f.http .. "/me?access_token=" .. token)
            assert.equal(200, res.status)
            assert.equal('{"id":"17841405793187219","username":"jayposiris"}', res.body)
            res = get(f.http .. "/v21.0/me?fields=id,username,account_type,media_count&access_token=" .. token)
            assert.same({ id = "17841405793187219", username = "jayposiris", account_type = "PERSONAL",
                media_count = 7 }, json(res))
        end)

        it("answers /{user-id}, with a version prefix too", function()
            local token = f:issue_token("jayposiris")
            local res = get(f.http .. "/v25.0/17841405793187219?fields=username&access_token=" .. token)
            assert.same({ username = "jayposiris" }, json(res))
        end)

        it("knows id and user_id apart for instagram_login users", function()
            local token = f:issue_token("biz")
            local res = get(f.http .. "/me?fields=user_id,username,id&access_token=" .. token)
            assert.equal('{"user_id":"17841477965412210","username":"biz","id":"27640875392278831"}', res.body)
            assert.equal(200, get(f.http .. "/17841477965412210?access_token=" .. token).status)
            assert.equal(200, get(f.http .. "/27640875392278831?access_token=" .. token).status)
        end)

        it("takes the token from an Authorization: Bearer header", function()
            local token = f:issue_token("biz")
            local res = get(f.http .. "/me", { authorization = "Bearer " .. token })
            assert.equal("biz", json(res).username)
        end)

        it("rejects missing, unknown and expired tokens with code 190", function()
            local res = get(f.http .. "/me?access_token=EAAnope")
            assert.equal(400, res.status)
            local e = json(res).error
            assert.equal(190, e.code)
            assert.equal("OAuthException", e.type)
            assert.equal("Invalid OAuth access token - Cannot parse access token", e.message)
            assert.is_string(e.fbtrace_id)
            assert.equal(104, json(get(f.http .. "/me")).error.code)
            local old = f:issue_token("jayposiris", { kind = "short", age = 3601 })
            e = json(get(f.http .. "/me?access_token=" .. old)).error
            assert.equal(190, e.code)
            assert.equal(463, e.error_subcode)
            assert.matches("^Error validating access token: Session has expired", e.message)
        end)

        it("rejects unknown fields with code 100", function()
            local token = f:issue_token("jayposiris")
            local res = get(f.http .. "/me?fields=id,user_id&access_token=" .. token)
            assert.equal(400, res.status)
            local e = json(res).error
            assert.equal(100, e.code)
            assert.equal("(#100) Tried accessing nonexisting field (user_id) on node type (User)", e.message)
        end)

        it("does not serve other users' nodes", function()
            local token = f:issue_token("jayposiris")
            local res = get(f.http .. "/17841477965412210?access_token=" .. token)
            assert.equal(400, res.status)
            assert.equal(100, json(res).error.code)
        end)
    end)

    describe("request log", function()
        it("records requests in order with method, path, query, args, headers, body and form", function()
            get(f.http .. "/me?access_token=abc&x=1&x=2", { ["x-test"] = "yes" })
            post_form(f.http .. "/oauth/access_token", { client_id = BASIC, code = "c d" })
            local log = f:log()
            assert.equal(2, #log)
            local a, b = log[1], log[2]
            assert.equal("GET", a.method)
            assert.equal("/me", a.path)
            assert.equal("access_token=abc&x=1&x=2", a.query)
            assert.same({ access_token = "abc", x = { "1", "2" } }, a.args)
            assert.equal("yes", a.headers["x-test"])
            assert.equal(f.ports.http, a.port)
            assert.equal("http", a.scheme)
            assert.equal(400, a.status)
            assert.equal("POST", b.method)
            assert.equal("c d", b.form.code)
            assert.equal("client_id=" .. BASIC .. "&code=c%20d", b.body)
            assert.is_true(a.started <= a.finished and a.finished <= b.started + 0.01)
        end)

        it("filters by path or predicate, leaves out the control plane, clears", function()
            get(f.http .. "/me")
            get(f.alt .. "/me/media")
            f:config({ foreign_next = false })
            assert.equal(1, #f:log("/me"))
            local alt = f:log(function(e) return e.port == f.ports.alt end)
            assert.equal(1, #alt)
            assert.equal("/me/media", alt[1].path)
            assert.equal(2, #f:log())
            f:clear_log()
            assert.same({}, f:log())
        end)

        it("logs https requests with their scheme", function()
            assert.equal(0, (curl(f.https .. "/me", "--cacert " .. f.ca_file)))
            local e = f:log()[1]
            assert.equal("https", e.scheme)
            assert.equal(f.ports.https, e.port)
        end)
    end)

    describe("reset and config", function()
        it("deep-merges config and reset restores the defaults", function()
            f:config({ apps = { ["123"] = { secret = "s", redirect_uri = "http://127.0.0.1/cb",
                api = "basic_display", shape = "basic" } } })
            local cfg = f:config({ apps = { [BASIC] = { redirect_uri = "https://example.com/" } } })
            assert.equal("s", cfg.apps["123"].secret)
            assert.equal("https://example.com/", cfg.apps[BASIC].redirect_uri)
            assert.equal(BASIC_SECRET, cfg.apps[BASIC].secret)
            f:reset()
            cfg = f:config()
            assert.is_nil(cfg.apps["123"])
            assert.equal(REDIRECT, cfg.apps[BASIC].redirect_uri)
        end)

        it("lets a new app authorize", function()
            f:config({ apps = { ["123"] = { secret = "s", redirect_uri = "http://127.0.0.1:9/cb",
                api = "instagram_login", shape = "flat_string" } } })
            local res = get(authorize_url(f, { client_id = "123", redirect_uri = "http://127.0.0.1:9/cb",
                scope = "instagram_business_basic" }))
            assert.equal(302, res.status)
            assert.matches("^http://127.0.0.1:9/cb%?code=", res.headers.location)
        end)

        it("picks the authorizing user per api", function()
            f:config({ authorize_user = { basic_display = "biz" } })
            local code = code_from(get(authorize_url(f)).headers.location)
            local res = post_form(f.http .. "/oauth/access_token", { client_id = BASIC, client_secret = BASIC_SECRET,
                grant_type = "authorization_code", redirect_uri = REDIRECT, code = code })
            assert.matches('"user_id":27640875392278831', res.body)
        end)

        it("raises on bad control calls", function()
            assert.has_error(function() f:issue_code("nope") end)
            assert.has_error(function() f:fault("/me", { mode = "no_such_mode" }) end)
        end)
    end)

    describe("faults", function()
        local token
        before_each(function()
            token = f:issue_token("jayposiris")
        end)

        local function me()
            return get(f.http .. "/me?access_token=" .. token)
        end

        it("answers with a status and its default Graph error body", function()
            f:fault("/me", { status = 500 })
            local res = me()
            assert.equal(500, res.status)
            local e = json(res).error
            assert.equal(2, e.code)
            assert.is_true(e.is_transient)
            assert.equal("An unexpected error has occurred. Please retry your request later.", e.message)
            assert.equal(4, json((function() f:fault("/me", { status = 429 }) return me() end)()).error.code)
        end)

        it("takes a body and headers, and can redirect", function()
            f:fault("/me", { status = 302, headers = { Location = f.alt .. "/me" }, body = "" })
            local res = me()
            assert.equal(302, res.status)
            assert.equal(f.alt .. "/me", res.headers.location)
            f:fault("/me", { status = 503, body = "nope", headers = { ["Retry-After"] = "3" } })
            res = me()
            assert.equal(503, res.status)
            assert.equal("nope", res.body)
            assert.equal("3", res.headers["retry-after"])
        end)

        it("fails only the first `times` requests", function()
            f:fault("/me", { status = 500, times = 2 })
            assert.equal(500, me().status)
            assert.equal(500, me().status)
            assert.equal(200, me().status)
            assert.equal(3, #f:log("/me"))
        end)

        it("matches the exact path, or every path with *", function()
            f:fault("/v21.0/me", { status = 500 })
            assert.equal(200, me().status)
            assert.equal(500, get(f.http .. "/v21.0/me?access_token=" .. token).status)
            f:clear_faults()
            f:fault("*", { status = 502 })
            assert.equal(502, me().status)
            assert.equal(502, get(authorize_url(f)).status)
            f:clear_faults()
            assert.equal(200, me().status)
        end)

        it("delays answers, normal ones included, and logs start and finish", function()
            f:fault("/me", { delay = 0.3 })
            assert.equal(200, me().status)
            local e = f:log("/me")[1]
            assert.is_true(e.finished - e.started >= 0.25)
        end)

        it("closes the connection without an answer", function()
            f:fault("/me", { mode = "close" })
            assert.truthy(me().err)
            assert.equal(1, #f:log("/me"))
        end)

        it("logs a request while it is still stalled", function()
            f:fault("/me", { mode = "stall", seconds = 5 })
            local s = socket.tcp()
            s:settimeout(2)
            assert(s:connect("127.0.0.1", f.ports.http))
            s:send("GET /me HTTP/1.1\r\nHost: x\r\n\r\n")
            s:settimeout(0.2)
            local line, err = s:receive("*l")
            s:close()
            assert.is_nil(line)
            assert.equal("timeout", err)
            local e = f:log("/me")[1]
            assert.is_number(e.started)
            assert.is_nil(e.finished)
        end)

        -- raw exchange on a fresh connection: the bytes the server sent, and how it ended
        local function raw_get(path, limit)
            local s = socket.tcp()
            s:settimeout(5)
            assert(s:connect("127.0.0.1", f.ports.http))
            s:send("GET " .. path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            local data, err, partial = s:receive(limit or "*a")
            s:close()
            return data or partial, err
        end

        local function split(raw)
            local head, body = raw:match("^(.-\r\n)\r\n(.*)$")
            return head or raw, body or ""
        end

        it("reset_mid_body: announces the full length, sends half, resets the connection", function()
            f:fault("/me", { mode = "reset_mid_body" })
            local head, body = split(raw_get("/me?access_token=" .. token))
            local length = tonumber(head:match("Content%-Length: (%d+)"))
            assert.is_true(#body > 0 and #body < length)
        end)

        it("ends connections the way curl tells apart: RST, FIN mid-body, no reply", function()
            local url = f.http .. "/me?access_token=" .. token
            local expect = { reset = 56, reset_mid_headers = 56, reset_mid_body = 56, fin_mid_body = 18,
                bad_length_long = 18, bad_length_short = 0, broken_chunked = 56, close = 52 }
            for mode, rc in pairs(expect) do
                f:fault("/me", { mode = mode })
                assert.equal(rc, (curl(url)), mode)
            end
        end)

        it("fin_mid_body: the same half body, closed with a FIN", function()
            f:fault("/me", { mode = "fin_mid_body" })
            local head, body = split(raw_get("/me?access_token=" .. token))
            assert.equal('{"id":"17841405793187219"', body)
            assert.equal("50", head:match("Content%-Length: (%d+)"))
        end)

        it("bad_length_long / bad_length_short: wrong Content-Length, then close", function()
            f:fault("/me", { mode = "bad_length_long" })
            local head, body = split(raw_get("/me?access_token=" .. token))
            assert.equal(#body + 100, tonumber(head:match("Content%-Length: (%d+)")))
            assert.same({ id = "17841405793187219", username = "jayposiris" }, cjson.decode(body))
            f:fault("/me", { mode = "bad_length_short" })
            head, body = split(raw_get("/me?access_token=" .. token))
            assert.is_true(tonumber(head:match("Content%-Length: (%d+)")) < #body)
        end)

        it("broken_chunked: an invalid chunk size", function()
            f:fault("/me", { mode = "broken_chunked" })
            local head, body = split(raw_get("/me?access_token=" .. token))
            assert.matches("Transfer%-Encoding: chunked", head)
            assert.matches("\r\nzz\r\n", body)
        end)

        it("trickle: the normal body, one byte at a time", function()
            f:fault("/me", { mode = "trickle", interval = 0.02 })
            local res = me()
            assert.equal('{"id":"17841405793187219","username":"jayposiris"}', res.body)
            local e = f:log("/me")[1]
            assert.is_true(e.finished - e.started >= 0.02 * (#res.body - 1))
        end)

        it("html_500: an HTML error page", function()
            f:fault("/me", { mode = "html_500" })
            local res = me()
            assert.equal(500, res.status)
            assert.matches("^text/html", res.headers["content-type"])
        end)

        it("oversize: a JSON body of `bytes`, with or without Content-Length", function()
            f:fault("/me", { mode = "oversize", bytes = 300000 })
            local res = me()
            assert.equal("300000", res.headers["content-length"])
            assert.equal(300000, #res.body)
            assert.equal(300000 - 11, #cjson.decode(res.body).data)
            f:fault("/me", { mode = "oversize", bytes = 300000, length = false })
            res = me()
            assert.is_nil(res.headers["content-length"])
            assert.equal("chunked", res.headers["transfer-encoding"])
            assert.equal(300000, #res.body)
        end)

        it("gzip_bomb: a small gzip body that inflates to `bytes`", function()
            f:fault("/me", { mode = "gzip_bomb", bytes = 2000000 })
            local res = me()
            assert.equal("gzip", res.headers["content-encoding"])
            assert.is_true(#res.body < 20000)
            local p = io.popen(CURL .. "-s --compressed '" .. f.http .. "/me' | wc -c")
            local n = tonumber(p:read("*a"))
            p:close()
            assert.equal(2000000, n)
        end)

        it("deep_json, invalid_utf8, empty, error_200", function()
            f:fault("/me", { mode = "deep_json" })
            local res = me()
            assert.equal(8 + 2 * 10000 + 1, #res.body)
            assert.matches('^{"data":%[%[%[', res.body)
            f:fault("/me", { mode = "invalid_utf8" })
            assert.truthy(me().body:find("\255", 1, true))
            f:fault("/me", { mode = "empty" })
            res = me()
            assert.equal(200, res.status)
            assert.equal("", res.body)
            f:fault("/me", { mode = "error_200" })
            res = me()
            assert.equal(200, res.status)
            assert.equal(1, json(res).error.code)
            f:fault("/oauth/access_token", { mode = "error_200" })
            res = post_form(f.http .. "/oauth/access_token", {})
            assert.equal("OAuthException", json(res).error_type)
        end)

        it("dup_keys: the first member repeated in front with a decoy value", function()
            f:fault("/me", { mode = "dup_keys" })
            assert.equal('{"id":"DUPLICATE_KEY_DECOY","id":"17841405793187219","username":"jayposiris"}',
                me().body)
        end)

        it("truncated_json: half the normal body with a matching Content-Length", function()
            f:fault("/me", { mode = "truncated_json" })
            local res = me()
            assert.equal('{"id":"17841405793187219"', res.body)
        end)

        it("retry_after: 429 with Retry-After and a spent X-App-Usage", function()
            f:fault("/me", { mode = "retry_after", retry_after = "Wed, 21 Oct 2015 07:28:00 GMT" })
            local res = me()
            assert.equal(429, res.status)
            assert.equal("Wed, 21 Oct 2015 07:28:00 GMT", res.headers["retry-after"])
            assert.equal(100, cjson.decode(res.headers["x-app-usage"]).call_count)
            assert.equal(4, json(res).error.code)
        end)

        it("reset clears faults", function()
            f:fault("*", { status = 500 })
            f:reset()
            assert.equal(200, get(f.http .. "/me?access_token=" .. f:issue_token("jayposiris")).status)
        end)
    end)

    describe("long-lived tokens", function()
        local function exchange(short, secret)
            return get(f.http .. "/access_token?" .. query({ grant_type = "ig_exchange_token",
                client_secret = secret or BASIC_SECRET, access_token = short }))
        end

        local function refresh(long)
            return get(f.http .. "/refresh_access_token?" .. query({ grant_type = "ig_refresh_token",
                access_token = long }))
        end

        it("exchanges a short-lived token for a 60-day one", function()
            local short = f:issue_token("jayposiris", { kind = "short" })
            local res = exchange(short)
            assert.equal(200, res.status)
            local body = json(res)
            assert.equal("bearer", body.token_type)
            assert.equal(60 * 86400, body.expires_in)
            assert.not_equal(short, body.access_token)
            assert.matches("^IGQVJ", body.access_token)
            assert.equal("long", f:token_info(body.access_token).kind)
            assert.equal(200, get(f.http .. "/me?access_token=" .. body.access_token).status)
        end)

        it("refuses an expired short token (190), a wrong secret and a long token (100)", function()
            local short = f:issue_token("jayposiris", { kind = "short" })
            assert.equal(100, json(exchange(short, "wrong")).error.code)
            assert.equal(100, json(exchange(f:issue_token("jayposiris"))).error.code)
            f:advance(3600)
            local e = json(exchange(short)).error
            assert.equal(190, e.code)
            assert.equal(463, e.error_subcode)
        end)

        it("refreshes a token at least 24 h old, keeping the string, for 60 more days", function()
            local long = f:issue_token("jayposiris", { kind = "long", age = 86400 })
            local res = refresh(long)
            assert.equal(200, res.status)
            local body = json(res)
            assert.equal(long, body.access_token)
            assert.equal(60 * 86400, body.expires_in)
            f:advance(59 * 86400)
            assert.equal(200, get(f.http .. "/me?access_token=" .. long).status)
        end)

        it("hands out a new string on refresh with refresh_new_token", function()
            f:config({ refresh_new_token = true })
            local long = f:issue_token("jayposiris", { kind = "long", age = 2 * 86400 })
            local new = json(refresh(long)).access_token
            assert.not_equal(long, new)
            assert.equal(190, json(get(f.http .. "/me?access_token=" .. long)).error.code)
            assert.equal(200, get(f.http .. "/me?access_token=" .. new).status)
        end)

        it("refuses to refresh a young token (100) and an expired one (190)", function()
            local young = f:issue_token("jayposiris", { kind = "long", age = 3600 })
            local e = json(refresh(young)).error
            assert.equal(100, e.code)
            assert.matches("24 hours", e.message)
            local old = f:issue_token("jayposiris", { kind = "long", age = 61 * 86400 })
            assert.equal(190, json(refresh(old)).error.code)
        end)

        it("expires long tokens after 60 days of fake clock", function()
            local long = f:issue_token("jayposiris", { kind = "long" })
            f:advance(60 * 86400)
            assert.equal(463, json(get(f.http .. "/me?access_token=" .. long)).error.error_subcode)
            assert.is_true(f:clock().offset >= 60 * 86400)
        end)
    end)

    describe("media", function()
        local token
        before_each(function()
            token = f:issue_token("jayposiris")
        end)

        local function media(params, base)
            params.access_token = params.access_token or token
            return json(get((base or f.http) .. "/me/media?" .. query(params)))
        end

        it("lists 7 media with ids only by default", function()
            local page = media({})
            assert.equal(7, #page.data)
            for _, m in ipairs(page.data) do
                assert.matches("^%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d$", m.id)
                assert.same({ "id" }, (function() local k = {} for x in pairs(m) do k[#k + 1] = x end return k end)())
            end
            assert.is_nil(page.paging.next)
        end)

        it("honours fields: one VIDEO with thumbnail_url, one CAROUSEL_ALBUM", function()
            local page = media({ fields = "id,media_type,media_url,thumbnail_url,timestamp,caption" })
            local kinds = {}
            for _, m in ipairs(page.data) do
                kinds[m.media_type] = (kinds[m.media_type] or 0) + 1
                assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%+0000$", m.timestamp)
                assert.equal(m.media_type == "VIDEO", m.thumbnail_url ~= nil)
            end
            assert.same({ IMAGE = 5, VIDEO = 1, CAROUSEL_ALBUM = 1 }, kinds)
        end)

        it("pages with limit and cursors; next is absolute and keeps the prefix and query", function()
            local res = get(f.http .. "/v21.0/me/media?fields=id,caption&limit=3&access_token=" .. token)
            local page = json(res)
            assert.equal(3, #page.data)
            local nxt = page.paging.next
            assert.equal(f.http .. "/v21.0/me/media?fields=id,caption&limit=3&access_token=" .. token
                .. "&after=" .. page.paging.cursors.after, nxt)
            local seen = {}
            for _, m in ipairs(page.data) do seen[#seen + 1] = m.id end
            local pages = 1
            while nxt do
                page = json(get(nxt))
                for _, m in ipairs(page.data) do seen[#seen + 1] = m.id end
                nxt = page.paging.next
                pages = pages + 1
            end
            assert.equal(3, pages)
            assert.equal(7, #seen)
            assert.equal(1, #page.data)
            assert.is_string(page.paging.previous)
            local back = json(get(page.paging.previous))
            assert.equal(3, #back.data)
            assert.equal(seen[4], back.data[1].id)
        end)

        it("builds next from the scheme, host and port the request came in on", function()
            local p = io.popen(CURL .. "-s --cacert " .. f.ca_file .. " '" .. f.https
                .. "/me/media?limit=2&access_token=" .. token .. "'")
            local page = cjson.decode(p:read("*a"))
            p:close()
            assert.matches("^" .. f.https:gsub("%p", "%%%0") .. "/me/media%?", page.paging.next)
        end)

        it("points next at the alt host with foreign_next", function()
            f:config({ foreign_next = true })
            local page = media({ limit = 2 })
            assert.matches("^" .. f.alt:gsub("%p", "%%%0") .. "/me/media%?", page.paging.next)
        end)

        it("repeats the same cursor with cursor_loop", function()
            f:config({ cursor_loop = true })
            local first = media({ limit = 3 })
            local second = json(get(first.paging.next))
            assert.equal(first.paging.next, second.paging.next)
        end)

        it("serves /{user-id}/media, /{media-id} and /{media-id}/children", function()
            local page = json(get(f.http .. "/17841405793187219/media?fields=id,media_type&access_token=" .. token))
            local album
            for _, m in ipairs(page.data) do
                if m.media_type == "CAROUSEL_ALBUM" then album = m.id end
            end
            local one = json(get(f.http .. "/" .. album .. "?fields=id,media_type,username&access_token=" .. token))
            assert.same({ id = album, media_type = "CAROUSEL_ALBUM", username = "jayposiris" }, one)
            local kids = json(get(f.http .. "/" .. album .. "/children?fields=id,media_type,media_url&access_token="
                .. token))
            assert.equal(3, #kids.data)
            assert.is_nil(kids.paging.next)
            local child = json(get(f.http .. "/" .. kids.data[1].id .. "?fields=id,caption&access_token=" .. token))
            assert.same({ id = kids.data[1].id }, child)
            local expanded = json(get(f.http .. "/" .. album .. "?fields=id,children%7Bid,media_type%7D&access_token="
                .. token))
            assert.equal(3, #expanded.children.data)
            assert.is_string(expanded.children.data[1].media_type)
        end)

        it("rejects unknown media fields and bad cursors with code 100", function()
            local res = get(f.http .. "/me/media?fields=id,nope&access_token=" .. token)
            assert.equal(400, res.status)
            assert.equal("(#100) Tried accessing nonexisting field (nope) on node type (Media)",
                json(res).error.message)
            assert.equal(100, media({ after = "garbage" }).error.code)
        end)

        it("gives instagram_login media their extra fields", function()
            local biz = f:issue_token("biz")
            local page = media({ access_token = biz, fields = "id,media_product_type,like_count,owner" })
            assert.equal(7, #page.data)
            assert.equal("17841477965412210", page.data[1].owner.id)
        end)
    end)

    describe("usage headers", function()
        it("counts Graph calls in X-App-Usage", function()
            local token = f:issue_token("jayposiris")
            local res = get(f.http .. "/me?access_token=" .. token)
            local n = cjson.decode(res.headers["x-app-usage"]).call_count
            res = get(f.http .. "/me/media?access_token=" .. token)
            assert.same({ call_count = n + 1, total_cputime = 1, total_time = 1 },
                cjson.decode(res.headers["x-app-usage"]))
            assert.is_nil(res.headers["x-business-use-case-usage"])
        end)

        it("adds X-Business-Use-Case-Usage for instagram_login tokens", function()
            local res = get(f.http .. "/me?access_token=" .. f:issue_token("biz"))
            local buc = cjson.decode(res.headers["x-business-use-case-usage"])
            local entry = buc["17841477965412210"][1]
            assert.equal("instagram", entry.type)
            assert.equal(1, entry.call_count)
        end)

        it("reports a configured X-App-Usage", function()
            f:config({ app_usage = { call_count = 95, total_cputime = 10, total_time = 20 } })
            local res = get(f.http .. "/me?access_token=" .. f:issue_token("jayposiris"))
            assert.equal(95, cjson.decode(res.headers["x-app-usage"]).call_count)
        end)

        it("leaves the OAuth endpoints alone", function()
            local res = get(authorize_url(f))
            assert.is_nil(res.headers["x-app-usage"])
        end)
    end)

    describe("TLS listeners", function()
        it("serves the good certificate for 127.0.0.1 and localhost", function()
            assert.same({ 0, 400 }, { curl(f.https .. "/me", "--cacert " .. f.ca_file) })
            local port = f.ports.https
            assert.same({ 0, 400 }, { curl("https://localhost:" .. port .. "/me",
                "--cacert " .. f.ca_file .. " --resolve localhost:" .. port .. ":127.0.0.1") })
        end)

        it("fails verification on the untrusted, wrong-host and expired listeners", function()
            for _, name in ipairs({ "untrusted", "wrong_host", "expired" }) do
                local rc = curl(f.tls[name] .. "/me", "--cacert " .. f.ca_file)
                assert.is_true(rc == 60 or rc == 35 or rc == 51, name .. ": curl exit " .. tostring(rc))
                assert.same({ 0, 400 }, { curl(f.tls[name] .. "/me", "-k") })
            end
            local p = io.popen("openssl x509 -checkend 0 -noout -in " .. f.ca_file:gsub("ca%.pem$", "expired.pem")
                .. " >/dev/null 2>&1; echo $?")
            assert.equal("1", p:read("*l"))
            p:close()
        end)

        it("refuses plain HTTP on the https port", function()
            local res = get(f.https:gsub("^https", "http") .. "/me")
            assert.equal(400, res.status)
            assert.equal(0, #f:log("/me"))
        end)
    end)
end)
