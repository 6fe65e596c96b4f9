-- Proves the fake Instagram server (spec/support) behaves as
-- spec/support/README.md documents. Plain HTTP through socket.http, HTTPS
-- through the curl CLI.
local Fake = require "spec.support.fake"
local http = require "socket.http"
local ltn12 = require "ltn12"
local socket = require "socket"
local cjson = require "cjson"

local BASIC = "684477648739411"
local BASIC_SECRET = "eb8c7a1b2c3d4e5f60718293a4b5c6d7"
local LOGIN = "990602627938098"
local LOGIN_SECRET = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
local REDIRECT = "https://localhost/auth/"

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
    local chunks = {}
    headers = headers or {}
    if body then headers["content-length"] = tostring(#body) end
    local ok, status, h = http.request({
        url = url, method = method, headers = headers, redirect = false,
        source = body and ltn12.source.string(body) or nil,
        sink = ltn12.sink.table(chunks),
        create = function()
            local s = socket.tcp()
            s:settimeout(10)
            return s
        end,
    })
    if not ok then return { err = status } end
    return { status = status, headers = h, body = table.concat(chunks) }
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
    local p = io.popen("curl -s -o /dev/null -w '%{http_code}' --max-time 10 " .. (extra or "") .. " '"
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
            assert.is_nil(io.open(string.format("/proc/%d/cmdline", pid)) and
                io.open(string.format("/proc/%d/cmdline", pid)):read("*a"):match("nginx"))
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
end)
