-- S1: the retry back-off's jitter differs between processes (nginx workers are forked from one
-- master, and LuaJIT's math.random starts from the same seed in every process).
local Nginx = require "spec.support.nginx"

-- the back-off delays of one client in a fresh process of `lua`, for six transient failures
local CHILD = [[
package.path = ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;" .. package.path
package.cpath = ROOT .. "/build/" .. BUILD .. "/?.so;" .. package.cpath
local ig = require("instagram").new({
  app_id = "1", app_secret = "s3cr3t", redirect_uri = "https://localhost/auth/", retries = 6,
  sleep = function(d) io.write(string.format("%.17g\n", d)) end,
  transport = function()
    return { status = 503, headers = {}, body = '{"error":{"message":"x","code":2,"is_transient":true}}' }
  end,
})
ig:me("IGQVJtoken")
]]

local function delays(lua, build)
  local root = Nginx.repo_root()
  local script = os.tmpname()
  local fh = assert(io.open(script, "w"))
  fh:write("ROOT = '", root, "'\nBUILD = '", build, "'\n", CHILD)
  fh:close()
  local p = assert(io.popen(lua .. " " .. script .. " 2>&1"))
  local out = p:read("*a") -- "*a": Lua 5.1 and 5.2 (make test-all) know no "a"
  p:close()
  os.remove(script)
  local list = {}
  for line in out:gmatch("[^\n]+") do list[#list + 1] = assert(tonumber(line), out) end
  return list
end

describe("retry jitter", function()
  for _, case in ipairs({ { "luajit", "5.1" }, { "lua5.4", "5.4" } }) do
    it("differs between two " .. case[1] .. " processes", function()
      local a, b = delays(case[1], case[2]), delays(case[1], case[2])
      assert.equal(6, #a)
      assert.equal(6, #b)
      local same = 0
      for i = 1, 6 do
        assert.is_true(a[i] >= 0 and a[i] <= math.min(30, 0.5 * 2 ^ (i - 1)), "delay " .. i .. ": " .. a[i])
        if a[i] == b[i] then same = same + 1 end
      end
      assert.is_true(same < 6, "the same jitter in both processes")
    end)
  end
end)
