-- lua/instagram/transport.lua in plain Lua: which transport a request takes (outside nginx: libcurl,
-- made on the first request only), the phase table behind that choice, and a caller's transport
-- function. spec/ngx/phases_spec.lua checks the same choice inside a real nginx.
local instagram = require "instagram"
local transport = require "instagram.transport"
local Fake = require "spec.support.fake"

local APP = {
  app_id = "684477648739411", app_secret = "eb8c7a1b2c3d4e5f60718293a4b5c6d7",
  redirect_uri = "https://localhost/auth/", api = "basic_display",
}

local function client(extra)
  local conf = {}
  for k, v in pairs(APP) do conf[k] = v end
  for k, v in pairs(extra or {}) do conf[k] = v end
  return instagram.new(conf)
end

describe("transport choice", function()
  describe("the phase table", function()
    local saved
    before_each(function() saved = rawget(_G, "ngx") end)
    after_each(function() rawset(_G, "ngx", saved) end)

    -- an ngx table with get_phase only: the function under test reads nothing else for known phases
    local function in_phase(phase, tcp)
      rawset(_G, "ngx", { get_phase = function() return phase end, socket = { tcp = tcp } })
      return transport.in_cosocket_phase()
    end

    it("allows cosockets in rewrite, server_rewrite, access, content, timer, ssl and stream preread phases", function()
      for _, phase in ipairs({ "rewrite", "server_rewrite", "access", "content", "timer", "ssl_cert",
                               "ssl_session_fetch", "ssl_client_hello", "preread" }) do
        assert.is_true(in_phase(phase), phase)
      end
    end)

    it("refuses them in init, init_worker, set, filters, log, balancer and exit_worker", function()
      for _, phase in ipairs({ "init", "init_worker", "set", "header_filter", "body_filter", "log",
                               "balancer", "ssl_session_store", "exit_worker" }) do
        assert.is_false(in_phase(phase, function() error("must not be probed") end), phase)
      end
    end)

    it("probes an unknown phase with ngx.socket.tcp", function()
      assert.is_true(in_phase("some_new_phase", function() return {} end))
      assert.is_false(in_phase("some_new_phase", function() error("API disabled in the context of x") end))
    end)

    it("is false outside nginx", function()
      rawset(_G, "ngx", nil)
      assert.is_false(transport.in_cosocket_phase())
    end)
  end)

  describe("outside nginx", function()
    local f
    setup(function() f = Fake.start({ quiet = true }) end)
    teardown(function() if f then f:stop() end end)

    it("uses libcurl, and makes its session only on the first request", function()
      local core = require "instagram.core"
      local real, made = core.session, 0
      core.session = function(...)
        made = made + 1
        return real(...)
      end
      local ok, err = pcall(function()
        local ig = client({ endpoints = f:endpoints(), ca_file = f.ca_file, retries = 0 })
        assert.equal(0, made)
        local token = f:issue_token("jayposiris", { kind = "short" })
        assert.equal("jayposiris", assert(ig:me(token)).username)
        assert.equal("jayposiris", assert(ig:me(token)).username)
        assert.equal(1, made)
        ig:close()
        ig:close()
      end)
      core.session = real
      assert(ok, err)
    end)
  end)

  describe("a transport function", function()
    it("keeps the HTTP status with a body over max_response_bytes, alone and in ig:batch", function()
      local ig = client({ max_response_bytes = 1000, retries = 0, transport = function()
        return { status = 203, headers = {}, body = string.rep("a", 1001) }
      end })
      local value, err = ig:me("IGQVJtoken")
      assert.is_nil(value)
      assert.equal("response", err.kind)
      assert.equal(203, err.status)
      assert.matches("larger than 1000 bytes", err.message)
      local results = ig:batch({ { "me", "IGQVJtoken" }, { "me", "IGQVJtoken" } })
      for i = 1, 2 do
        assert.is_false(results[i].ok)
        assert.equal("response", results[i].err.kind)
        assert.equal(203, results[i].err.status)
      end
    end)
  end)
end)
