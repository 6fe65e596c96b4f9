-- Publishing and comment writes on the cosocket transport inside a real nginx (spec/ngx/
-- business_harness.lua), against the fake Instagram: a write that is never retried goes out
-- exactly once even when a pooled connection was at hand, DELETE works, post_* and batch run.
local Fake = require "spec.support.fake"
local Nginx = require "spec.support.nginx"
local clients = require "spec.support.client"
local cjson = require "cjson"

local CONF = Nginx.prologue() .. Nginx.LUA_PATHS .. [[
    lua_ssl_trusted_certificate ${CA};
    lua_ssl_verify_depth 3;
    lua_socket_log_errors off;
    init_by_lua_block {
        require("business_harness").configure({
            https = "${HTTPS}", ca_file = "${CA}", app_id = "${APP_ID}", app_secret = "${APP_SECRET}",
            redirect_uri = "${REDIRECT}",
        })
    }
    server {
        listen 127.0.0.1:${PORT};
        location ~ ^/b/(\w+)$ {
            content_by_lua_block { require("business_harness").run(ngx.var[1]) }
        }
    }
}
]]

local IMG = "https://cdn.example.com/photo.jpg"

describe("publishing and comment writes inside nginx (ngx transport) #nginx", function()
  local f, server, token

  local function call(args)
    local query = {}
    for k, v in pairs(args) do
      query[#query + 1] = k .. "=" .. tostring(v):gsub("[^%w%-_.~]", function(c)
        return string.format("%%%02X", c:byte())
      end)
    end
    table.sort(query)
    local status, _, body = server:get("/b/write?" .. table.concat(query, "&"))
    assert(status == 200, "harness answered " .. tostring(status) .. ": " .. body .. "\n" .. server:log_tail())
    local out = cjson.decode(body)
    assert(out.raised == nil, "harness raised: " .. tostring(out.raised))
    return out
  end

  local function count(method, suffix)
    return #f:log(function(e) return e.method == method and e.path:sub(-#suffix) == suffix end)
  end

  setup(function()
    f = Fake.start({ quiet = true })
    local app = f.apps.instagram_login
    server = Nginx.start_beside(f, CONF, Nginx.fake_vars(f, { APP_ID = app.client_id, APP_SECRET = app.secret,
      REDIRECT = app.redirect_uri }))
  end)

  teardown(function()
    if server then server:stop() end
    if f then f:stop() end
  end)

  before_each(function()
    f:reset()
    token = f:issue_token("biz", { kind = "long" })
  end)

  local function finished_container()
    local ig = clients.login(f)
    local c = assert(ig:create_container(token, { type = "IMAGE", image_url = IMG }))
    assert(ig:wait_container(token, c.id, { initial = 0 }))
    ig:close()
    return c.id
  end

  local function first_comment()
    local ig = clients.login(f)
    local media = assert(ig:media(token, { fields = "id", limit = 1 })).data[1].id
    local id = assert(ig:comments(token, media)).data[1].id
    ig:close()
    return id
  end

  it("a publish after a GET on a pooled connection, dropped after the handler ran, goes out once", function()
    local id = finished_container()
    f:clear_log()
    f:fault("/me/media_publish", { mode = "drop_after" })
    local out = call({ call = "publish", token = token, id = id })
    assert.is_nil(out.value)
    assert.equal("network", out.err.kind)
    assert.is_true(out.err.outcome_unknown)
    assert.equal(1, count("POST", "/media_publish"))
    assert.equal(1, f:business().published)
  end)

  it("returns a publish's numeric media id above 2^53 as the exact string", function()
    local id = finished_container()
    f:fault("/me/media_publish", { status = 200, body = '{"id":18000000000000000123}' })
    local out = call({ call = "publish", token = token, id = id })
    assert.is_nil(out.err)
    assert.equal("18000000000000000123", out.value.id)
  end)

  it("a publish answered 200 with a cut body (it went live) says outcome_unknown", function()
    local id = finished_container()
    f:fault("/me/media_publish", { mode = "truncated_json" })
    local out = call({ call = "publish", token = token, id = id })
    assert.is_true(out.err.outcome_unknown)
    assert.equal(1, count("POST", "/media_publish"))
    assert.equal(1, f:business().published)
  end)

  it("a reply and a private reply dropped after the handler ran go out once", function()
    local comment = first_comment()
    for _, which in ipairs({ { "reply", "/" .. comment .. "/replies" }, { "private_reply", "/me/messages" } }) do
      f:clear_log()
      f:fault(which[2], { mode = "drop_after" })
      local out = call({ call = which[1], token = token, id = comment })
      f:clear_faults()
      assert.is_nil(out.value, which[1])
      assert.is_true(out.err.outcome_unknown, which[1])
      assert.equal(1, count("POST", which[2]), which[1])
    end
  end)

  local FAULTS = {
    { mode = "close" }, { mode = "reset" }, { mode = "reset_mid_body" }, { mode = "truncated_json" },
    { status = 503 }, { mode = "html_500", status = 502 },
  }
  for _, fault in ipairs(FAULTS) do
    local name = fault.mode or tostring(fault.status)
    it("publish, reply and private reply go out once on a warm pool: " .. name, function()
      local comment = first_comment()
      local cases = {
        { "publish", "/me/media_publish", finished_container() },
        { "reply", "/" .. comment .. "/replies", comment },
        { "private_reply", "/me/messages", comment },
      }
      for _, c in ipairs(cases) do
        f:clear_log()
        f:fault(c[2], fault)
        local out = call({ call = c[1], token = token, id = c[3] })
        f:clear_faults()
        assert.is_nil(out.value, c[1])
        assert.equal(1, count("POST", c[2]), c[1] .. " " .. name)
        if out.err.kind ~= "api" then assert.is_true(out.err.outcome_unknown, c[1] .. " " .. name) end
      end
    end)
  end

  it("a publish that stalls past the timeout goes out once: outcome_unknown", function()
    local id = finished_container()
    f:clear_log()
    f:fault("/me/media_publish", { mode = "stall", seconds = 5 })
    local out = call({ call = "publish", token = token, id = id })
    assert.equal("timeout", out.err.kind)
    assert.is_true(out.err.outcome_unknown)
    assert.equal(1, count("POST", "/media_publish"))
  end)

  it("post_image on a 4/2207051 block of a post that went live: published, one publish", function()
    f:config({ publishing = { block_on_publish = true } })
    local out = call({ call = "post_image", token = token, url = IMG })
    assert.is_nil(out.err)
    assert.is_true(out.value.published)
    assert.equal(1, count("POST", "/media_publish"))
  end)

  it("a reply in ig:batch dropped after the handler ran goes out once", function()
    local comment = first_comment()
    f:clear_log()
    f:fault("/" .. comment .. "/replies", { mode = "drop_after" })
    local out = call({ call = "batch_reply", token = token, id = comment })
    assert.is_true(out.err.outcome_unknown)
    assert.equal(1, count("POST", "/replies"))
  end)

  it("post_image whose publish answer is lost reconciles to published with one publish", function()
    f:fault("/me/media_publish", { mode = "drop_after" })
    local out = call({ call = "post_image", token = token, url = IMG })
    assert.is_nil(out.err)
    assert.is_true(out.value.published)
    assert.equal(1, count("POST", "/media_publish"))
    assert.equal(1, f:business().published)
  end)

  it("deletes a comment with DELETE; a dropped delete is retried and 'does not exist' is success", function()
    local comment = first_comment()
    local out = call({ call = "delete_comment", token = token, id = comment })
    assert.is_nil(out.err)
    assert.is_true(out.value)
    assert.equal(1, count("DELETE", "/" .. comment))
    local other = first_comment()
    f:clear_log()
    f:fault("/" .. other, { mode = "drop_after", times = 1 })
    out = call({ call = "delete_comment", token = token, id = other })
    assert.is_nil(out.err)
    assert.is_true(out.value)
    assert.equal(2, count("DELETE", "/" .. other))
  end)

  it("posts a carousel: children waited for on light threads, one publish", function()
    local out = call({ call = "post_carousel", token = token, url = IMG })
    assert.is_nil(out.err)
    assert.matches("^%d+$", out.value.id)
    assert.equal(1, count("POST", "/media_publish"))
    assert.equal(4, count("POST", "/media"))
  end)
end)
