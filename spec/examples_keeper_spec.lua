-- examples/keeper_sweep.lua runs against the bundled fake Instagram, under this spec's interpreter.
local lua = (type(jit) == "table") and "luajit" or "lua5.4"

describe("examples/keeper_sweep.lua", function()
  it("leaves a young token, refreshes a due one, marks a revoked one dead once", function()
    local p = assert(io.popen(lua .. " examples/keeper_sweep.lua --fake 2>&1"))
    local out = p:read("*a")
    local ok = p:close()
    assert.is_truthy(ok, out)
    local _, n = out:gsub("needs to log in again", "")
    assert.equal(1, n, out)
    assert.matches("1003 +needs to log in again: instagram: api error 190", out)
    assert.matches("1001 +ok ", out)
    assert.matches("1002 +ok ", out)
    assert.matches("1003 +dead ", out)
    assert.matches("refreshed 1, not due 1, dead 1, failed 0", out)
  end)
end)
