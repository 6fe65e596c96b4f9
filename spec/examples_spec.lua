-- The examples in examples/ run, against the bundled fake Instagram, under this spec's interpreter.
local lua = (type(jit) == "table") and "luajit" or "lua5.4"

local function run(script)
  local p = assert(io.popen(lua .. " " .. script .. " --fake 2>&1"))
  local out = p:read("*a")
  local ok, _, code = p:close()
  return out, ok, code
end

describe("examples", function()
  it("get_started.lua walks Steps 4-6 and ends with the user's id and username", function()
    local out, ok = run("examples/get_started.lua")
    assert.is_true(ok, out)
    assert.matches("Authorization Window URL:\n    https://127%.0%.0%.1:%d+/oauth/authorize%?"
      .. "client_id=684477648739411", out)
    assert.matches("redirected to:\n    https://localhost/auth/%?code=AQ[%w_-]+&state=[%w_-]+#_", out)
    assert.matches("Authorization Code %(the #_ stripped%): AQ[%w_-]+\n", out)
    assert.matches("access_token: IGQVJ.…\n", out)
    assert.matches("user_id: 17841405793187219\n", out)
    assert.matches("id: 17841405793187219\n  username: jayposiris\n$", out)
  end)

  it("refresh_tokens.lua keeps, refreshes, and asks for a new login", function()
    local out, ok = run("examples/refresh_tokens.lua")
    assert.is_true(ok, out)
    assert.matches("alice +kept", out)
    assert.matches("bob +refreshed", out)
    assert.matches("carol +relogin +instagram: api error 190", out)
    assert.matches("refreshed 1, kept 1, need login 1, failed 0", out)
  end)
end)
