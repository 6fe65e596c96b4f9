-- Review of issue 11 inside nginx: the shared_dict store when its dict is full.
local Nginx = require "spec.support.nginx"
local cjson = require "cjson"

local CONF = Nginx.prologue{ worker_connections = 64 } .. Nginx.LUA_PATHS .. [[
    lua_shared_dict small 64k;
    server {
        listen ${LISTEN};
        location = /full {
            content_by_lua_block {
                local s = require("instagram").store.shared_dict({ dict = "small" })
                local value = string.rep("t", 300)
                local stored, full_err = {}, nil
                for i = 1, 10000 do
                    local ok, err = s:set("token:" .. i, value .. i)
                    if not ok then full_err = err; break end
                    stored[#stored + 1] = i
                end
                local locks, lock_errs = 0, 0
                for i = 1, 200 do
                    local owner, err = s:lock("feed:" .. i, 30)
                    if owner then locks = locks + 1 elseif err then lock_errs = lock_errs + 1 end
                end
                local lost = 0
                for _, i in ipairs(stored) do
                    if s:get("token:" .. i) ~= value .. i then lost = lost + 1 end
                end
                ngx.say(require("cjson").encode({ stored = #stored, full_kind = full_err and full_err.kind,
                    locks = locks, lock_errs = lock_errs, lost = lost }))
            }
        }
    }
}
]]

describe("review 11: the shared_dict store when its dict is full #nginx", function()
  local server
  setup(function()
    assert(Nginx.read_file(Nginx.repo_root() .. "/build/5.1/instagram/core.so"), "make build first")
    server = Nginx.start(CONF, { ROOT = Nginx.repo_root() }, nil, { name = "review11" })
  end)
  teardown(function() if server then server:stop() end end)

  it("a lock never evicts a stored token to make room; it fails as a store error instead", function()
    local status, _, body = server:get("/full")
    assert.equal(200, status, server:log_tail(20))
    local out = cjson.decode(body)
    assert.is_true(out.stored > 10, body)
    assert.equal("store", out.full_kind)
    assert.equal(0, out.lost, body)
    assert.equal(200, out.locks + out.lock_errs, body)
  end)
end)
