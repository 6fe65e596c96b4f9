-- make test-torture driver: starts the fake Instagram, finds a closed loopback
-- port, runs the torture harness (build/torture/torture) against them, stops
-- the fake. Run with lua5.4 from the repository root; arguments are passed on
-- to the harness (e.g. -j 4 -s 2000). TORTURE_TLS=1 adds an https transfer to
-- the pass (thousands more OpenSSL allocations). Exits with the harness's status.
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
local Fake = require "spec.support.fake"

local function closed_port() return require("spec.support.nginx").free_ports(1)[1] end

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local harness = os.getenv("TORTURE_BIN") or "build/torture/torture"
local args = {}
for i = 1, #arg do args[#args + 1] = quote(arg[i]) end

local f = Fake.start({ quiet = true })
-- a body that grows the core's buffer a few times, and one over the script's 1 MiB cap
f:fault("/torture/big", { mode = "oversize", bytes = 100000 })
f:fault("/torture/huge", { mode = "oversize", bytes = 1536 * 1024, length = false })
local tls = os.getenv("TORTURE_TLS") == "1"
  and string.format("TORTURE_HTTPS=%s TORTURE_CA=%s ", quote(f.https), quote(f.ca_file)) or ""
local cmd = string.format("%sTORTURE_HTTP=%s TORTURE_CLOSED_URL=%s %s %s tools/torture/script.lua", tls,
  quote(f.http), quote("http://127.0.0.1:" .. closed_port() .. "/"), quote(harness), table.concat(args, " "))
local ok, how, code = os.execute(cmd)
f:stop()
if not ok then
  io.stderr:write(string.format("torture: harness %s %s\n", tostring(how), tostring(code)))
  os.exit(how == "exit" and code or 1)
end
