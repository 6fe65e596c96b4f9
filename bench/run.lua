-- make bench: lua-instagram against every alternative, in one run, on loopback (issue 9).
-- Starts Debian's nginx (bench/nginx.conf: static Graph JSON over HTTP and HTTPS with a fresh test
-- CA, a token endpoint, a 50 ms endpoint) and a second nginx for the OpenResty figure
-- (bench/front.conf), runs every contender as its own process in alternating rounds, and prints
-- one Markdown table: medians, ratios, and each target of issue 9 marked met or not met.
-- A target not met is a finding, not a failure; a contender that crashes fails the run.
--
--   lua5.4 bench/run.lua        (make bench; make bench-callgrind runs the callgrind part alone)
-- Environment: BENCH_ROUNDS (300) and BENCH_SECONDS per contender per round (0.02) of the
--   sequential part, BENCH_WRK_ROUNDS (20) and BENCH_WRK_SECONDS (1) of the OpenResty part,
--   BENCH_ONLY=wall,callgrind,counts,overlap,openresty,pure,memory (default: all),
--   BENCH_OUT (build/bench/report.md), BENCH_RAWCURL (build/bench/rawcurl), NGINX, WRK.
local Nginx = require "spec.support.nginx"
local common = require "bench.common"
local cjson = require "cjson"

local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS")) or 300
local SECONDS = tonumber(os.getenv("BENCH_SECONDS")) or 0.02
local OUT = os.getenv("BENCH_OUT") or "build/bench/report.md"
local RAWCURL = os.getenv("BENCH_RAWCURL") or "build/bench/rawcurl"
local WRK = os.getenv("WRK") or "wrk"
-- alternating wrk rounds per location, after a warm-up: many short rounds, so that each pair of
-- /ig and /proxy figures is taken close together (this machine's speed drifts over seconds)
local WRK_ROUNDS = tonumber(os.getenv("BENCH_WRK_ROUNDS")) or 20
local WRK_SECONDS = tonumber(os.getenv("BENCH_WRK_SECONDS")) or 1
local PYTHON = "/usr/bin/python3"
local CALLGRIND_N = 100 -- calls; the figure is (Ir(2N) - Ir(N)) / N
local PURE_ROUNDS = 40 -- rounds of the pure work, the fastest counts

local ONLY = {}
for part in (os.getenv("BENCH_ONLY") or "wall,callgrind,counts,overlap,openresty,pure,memory"):gmatch("[%w]+") do
  ONLY[part] = true
end

local q, run, read_file, capture = Nginx.q, Nginx.run, Nginx.read_file, Nginx.capture
local REPO = Nginx.repo_root()


local function progress(fmt, ...)
  io.stderr:write(string.format("bench: " .. fmt .. "\n", ...))
  io.stderr:flush()
end

---------------------------------------------------------------------------
-- running contenders: each is a process; a non-zero exit or a missing RESULT line fails the run

local TMP = Nginx.mktemp_dir("bench")
Nginx.watchdog(TMP, nil)

local LUA_PATH = string.format("%s/lua/?.lua;%s/lua/?/init.lua;%s/?.lua;;", REPO, REPO, REPO)
local INTERPRETERS = {
  lua54 = { bin = "lua5.4", cpath = REPO .. "/build/5.4/?.so;;", label = "Lua 5.4" },
  luajit = { bin = "luajit", cpath = REPO .. "/build/5.1/?.so;;", label = "LuaJIT" },
}

local function lua_cmd(interp, script, ...)
  local i = INTERPRETERS[interp]
  local args = {}
  for n, a in ipairs({ ... }) do args[n] = q(a) end
  return string.format("%sLUA_PATH=%s LUA_CPATH=%s %s %s %s", Nginx.CLEAN_ENV, q(LUA_PATH), q(i.cpath), i.bin,
    q(REPO .. "/bench/" .. script), table.concat(args, " "))
end

local errfile = TMP .. "/stderr"
-- runs cmd; returns its decoded RESULT (or true without one) and its stderr; raises on failure
local function execute(what, cmd, want_result)
  local p = assert(io.popen(cmd .. " 2>" .. q(errfile), "r"))
  local out = p:read("*a")
  local ok, how, code = p:close()
  local stderr = read_file(errfile) or ""
  if not ok then
    error(string.format("%s crashed (%s %s): %s\n%s", what, tostring(how), tostring(code), cmd,
      Nginx.tail(stderr, 15)), 0)
  end
  local line = out:match("RESULT (%b{})")
  if want_result ~= false and not line then
    error(string.format("%s printed no result: %s\n%s\n%s", what, cmd, Nginx.tail(out, 5), Nginx.tail(stderr, 10)), 0)
  end
  return line and cjson.decode(line) or true, stderr
end

---------------------------------------------------------------------------
-- the servers

local function gen_certs()
  local dir = TMP .. "/certs"
  local gen = REPO .. "/spec/support/fake/gen-certs.sh"
  if not run(string.format(Nginx.CLEAN_ENV .. "sh %s %s >%s/gen-certs.log 2>&1", q(gen), q(dir), q(TMP))) then
    error("bench: certificate generation failed:\n" .. (read_file(TMP .. "/gen-certs.log") or ""), 0)
  end
  return dir
end

local servers = {}
local function stop_servers()
  for i = #servers, 1, -1 do servers[i]:stop() end
  servers = {}
end

---------------------------------------------------------------------------
-- the report

local rows = {} -- {section, measure, figure, compared, ratio, target, met}
local targets_met, targets_total = 0, 0
local notes = {}

local function row(t)
  if t.met ~= nil then
    targets_total = targets_total + 1
    if t.met then targets_met = targets_met + 1 end
  end
  rows[#rows + 1] = t
end

-- x as "0.88×"; given the bound of x's target, with a third decimal when two would not tell them apart
-- (0.897 is "0.897×", not a "0.90×" marked not met)
local function fmt_ratio(x, bound)
  if not x then return "" end
  local s = string.format("%.2f", x)
  if bound and x ~= bound and tonumber(s) == bound then s = string.format("%.3f", x) end
  return s .. "×"
end
local function fmt_int(n)
  local s = string.format("%d", math.floor(n + 0.5))
  local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (out:gsub("^,", ""))
end
local function fmt_time(s)
  if s >= 1 then return string.format("%.2f s", s) end
  if s >= 1e-3 then return string.format("%.1f ms", s * 1e3) end
  if s >= 1e-5 then return string.format("%.1f µs", s * 1e6) end
  return string.format("%.2f µs", s * 1e6)
end
local function fmt_rate(calls_per_s) return fmt_int(calls_per_s) .. "/s (" .. fmt_time(1 / calls_per_s) .. ")" end

local function machine()
  local cpuinfo = read_file("/proc/cpuinfo") or ""
  local model = cpuinfo:match("model name%s*:%s*([^\n]+)") or "unknown CPU"
  local os_release = read_file("/etc/os-release") or ""
  return {
    cpu = model, cores = capture("nproc"), kernel = capture("uname -sr"),
    os = os_release:match('PRETTY_NAME="([^"]+)"') or "unknown OS",
    load = (read_file("/proc/loadavg") or ""):match("^(%S+ %S+ %S+)") or "?",
    commit = capture("git -C " .. q(REPO) .. " rev-parse --short HEAD 2>/dev/null"),
    dirty = capture("git -C " .. q(REPO) .. " status --porcelain --untracked-files=no 2>/dev/null") ~= "",
    curl = capture("curl-config --version 2>/dev/null"),
    nginx = capture("nginx -v 2>&1"):gsub("^nginx version: ", ""),
    lua = capture("lua5.4 -v 2>&1"):match("^(Lua %S+)") or "lua5.4",
    luajit = capture("luajit -v 2>&1"):match("^(LuaJIT %S+)") or "luajit",
    python = capture(PYTHON .. " -c 'import sys, requests; print(sys.version.split()[0], requests.__version__)'"),
  }
end

local function print_report(m, elapsed)
  local lines = {}
  local function out(s) lines[#lines + 1] = s end
  out(string.format("Machine: %s, %s cores, %s, %s", m.cpu, m.cores, m.kernel, m.os))
  out(string.format("Software: lua-instagram %s%s, %s, %s, %s, %s, Python %s (requests %s)",
    m.commit ~= "" and m.commit or "?", m.dirty and " (modified)" or "", m.curl, m.lua, m.luajit, m.nginx,
    (m.python:match("^(%S+)") or "?"), (m.python:match(" (%S+)$") or "?")))
  out(string.format("Run: %d alternating rounds of %.3f s per contender, medians; load average at start %s; "
    .. "%.0f s in all", ROUNDS, SECONDS, m.load, elapsed))
  out("")
  out("| part | measure | figure | compared with | ratio | target | |")
  out("|---|---|---|---|---|---|---|")
  local last
  for _, r in ipairs(rows) do
    local verdict = r.met == nil and "" or (r.met and "met" or "**not met**")
    out(string.format("| %s | %s | %s | %s | %s | %s | %s |", r.section ~= last and r.section or "", r.measure,
      r.figure or "", r.compared or "", r.ratio or "", r.target or "", verdict))
    last = r.section
  end
  out("")
  out(string.format("Targets met: %d of %d.", targets_met, targets_total))
  for _, n in ipairs(notes) do out("- " .. n) end
  if ONLY.wall then
    out("- LuaSocket over HTTPS: LuaSec sends the request line and the headers as two TLS records, so most "
      .. "calls wait for a delayed ACK (about 40 ms) on top of the full handshake.")
  end
  local text = table.concat(lines, "\n") .. "\n"
  run("mkdir -p " .. q(OUT:match("^(.*)/[^/]*$") or "."))
  local f = io.open(OUT, "w")
  if f then
    f:write(text)
    f:close()
    progress("table written to %s", OUT)
  end
  io.stdout:write("\n", text)
  io.stdout:flush()
end

---------------------------------------------------------------------------
-- the parts

local S = {} -- server facts: http, https, ca, prefix, front

-- A contender kept running for the whole sequential part: it reads time slices (seconds, one per
-- line) from a FIFO and answers each with a RESULT line (bench/common.lua's serve). All of them are
-- started first, so that slices of every contender alternate many times within the part: a slice
-- lasts tens of milliseconds, and the machine's slower and faster moments fall on all alike.
local function start_server_contender(what, cmd, n)
  local fifo = string.format("%s/slices.%d", TMP, n)
  local err = string.format("%s/stderr.%d", TMP, n)
  if not run("mkfifo " .. q(fifo)) then error("bench: mkfifo failed", 0) end
  local out = assert(io.popen(cmd .. " <" .. q(fifo) .. " 2>" .. q(err), "r"))
  local input = assert(io.open(fifo, "w")) -- returns once the contender has opened its end
  input:setvbuf("line")
  return { what = what, out = out, input = input, err = err }
end

local function slice(c, seconds)
  c.input:write(string.format("%.3f\n", seconds))
  c.input:flush()
  local line = c.out:read("l")
  local res = line and line:match("^RESULT (%b{})")
  if not res then
    error(string.format("%s stopped without a result: %s\n%s", c.what, tostring(line),
      Nginx.tail(read_file(c.err) or "", 15)), 0)
  end
  return cjson.decode(res)
end

local function stop_server_contender(c)
  c.input:close() -- end of input: the contender returns
  local ok, how, code = c.out:close()
  if not ok then
    error(string.format("%s crashed (%s %s)\n%s", c.what, tostring(how), tostring(code),
      Nginx.tail(read_file(c.err) or "", 15)), 0)
  end
end

local function wall()
  local contenders = {
    { key = "raw", label = "raw libcurl C loop (one easy handle)", cmd = function(base, ca)
      return string.format("%s %s serve 20 %s", q(RAWCURL), q(base .. "/me?fields=id%2Cusername&access_token="
        .. common.TOKEN), ca and q(ca) or "")
    end },
    { key = "lua54", label = "lua-instagram, Lua 5.4", cmd = function(base, ca)
      return lua_cmd("lua54", "module.lua", "serve", base, ca)
    end },
    { key = "luajit", label = "lua-instagram, LuaJIT", cmd = function(base, ca)
      return lua_cmd("luajit", "module.lua", "serve", base, ca)
    end },
    { key = "floor", label = "Lua 5.4 floor: a one-function C binding + cjson.decode", cmd = function(base, ca)
      local args = { q(base .. "/me?fields=id%2Cusername&access_token=" .. common.TOKEN) }
      if ca then args[2] = q(ca) end
      return string.format("%sLUA_PATH=%s LUA_CPATH=%s lua5.4 %s %s", Nginx.CLEAN_ENV, q(LUA_PATH),
        q(REPO .. "/build/bench/5.4/?.so;;"), q(REPO .. "/bench/floor.lua"), table.concat(args, " "))
    end },
    { key = "python", label = "Python requests.Session + .json()", cmd = function(base, ca)
      return string.format("%s%s %s %s %s %s %s", Nginx.CLEAN_ENV, PYTHON, q(REPO .. "/bench/requests_bench.py"),
        q(base), q(common.TOKEN), q(common.USER_ID), ca and q(ca) or "")
    end },
    { key = "luasocket", label = "LuaSocket socket.http + cjson (Lua 5.4)", cmd = function(base, ca)
      return lua_cmd("lua54", "luasocket.lua", base, ca)
    end },
  }
  for _, proto in ipairs({ "HTTP", "HTTPS" }) do
    local base = proto == "HTTP" and S.http or S.https
    local ca = proto == "HTTPS" and S.ca or nil
    local rates, running = {}, {}
    progress("sequential ig:me over %s: %d rounds of %.3f s per contender", proto, ROUNDS, SECONDS)
    for n, c in ipairs(contenders) do
      rates[c.key] = {}
      local fifo_n = n + (proto == "HTTPS" and 10 or 0)
      running[c.key] = start_server_contender(c.label .. " over " .. proto, c.cmd(base, ca), fifo_n)
    end
    for r = 1, ROUNDS do
      for k = 0, #contenders - 1 do
        local c = contenders[(k + r - 1) % #contenders + 1]
        local res = slice(running[c.key], SECONDS)
        rates[c.key][r] = res.calls / res.seconds
      end
    end
    -- last started first: each contender holds (inherited through popen) the FIFO ends that were
    -- open when it started, so an earlier one sees the end of its input only after the later ones
    for n = #contenders, 1, -1 do stop_server_contender(running[contenders[n].key]) end
    local function ratio(a, b)
      local per_round = {}
      for r = 1, ROUNDS do per_round[r] = rates[a][r] / rates[b][r] end
      return common.median(per_round)
    end
    local section = "sequential keep-alive `ig:me`, " .. proto
    local label = {}
    for _, c in ipairs(contenders) do label[c.key] = c.label end
    local raw = common.median(rates.raw)
    row({ section = section, measure = label.raw, figure = fmt_rate(raw), compared = "the ceiling",
      ratio = "1.00×" })
    for _, key in ipairs({ "lua54", "luajit" }) do
      local x = ratio(key, "raw")
      row({ section = section, measure = label[key], figure = fmt_rate(common.median(rates[key])),
        compared = "raw libcurl", ratio = fmt_ratio(x, 0.90), target = "≥ 0.90×", met = x >= 0.90 })
    end
    row({ section = section, measure = label.floor, figure = fmt_rate(common.median(rates.floor)),
      compared = "raw libcurl", ratio = fmt_ratio(ratio("floor", "raw")) })
    row({ section = section, measure = "lua-instagram, Lua 5.4, vs that floor", compared = "the floor",
      ratio = fmt_ratio(ratio("lua54", "floor")) })
    row({ section = section, measure = label.python, figure = fmt_rate(common.median(rates.python)),
      compared = "raw libcurl", ratio = fmt_ratio(ratio("python", "raw")) })
    for _, key in ipairs({ "lua54", "luajit" }) do
      local x = ratio(key, "python")
      row({ section = section, measure = INTERPRETERS[key].label .. " module vs Python requests",
        compared = "Python requests", ratio = fmt_ratio(x, 5), target = "≥ 5×", met = x >= 5 })
    end
    row({ section = section, measure = label.luasocket
      .. (proto == "HTTPS" and " + LuaSec; a new connection and TLS handshake per call"
        or "; a new connection per call (socket.http has no keep-alive)"),
      figure = fmt_rate(common.median(rates.luasocket)), compared = "raw libcurl",
      ratio = fmt_ratio(ratio("luasocket", "raw")) })
  end
end

local function collected(stderr)
  local n = stderr:match("Collected%s*:%s*(%d+)")
  if not n then error("callgrind: no 'Collected' line in:\n" .. Nginx.tail(stderr, 10), 0) end
  return tonumber(n)
end

local function callgrind()
  local valgrind = Nginx.CLEAN_ENV .. "valgrind --tool=callgrind --callgrind-out-file=/dev/null "
  for _, proto in ipairs({ "HTTP", "HTTPS" }) do
    local base = proto == "HTTP" and S.http or S.https
    local ca = proto == "HTTPS" and S.ca or nil
    local per_call = {}
    for _, who in ipairs({ "module", "raw" }) do
      local ir = {}
      for k, n in ipairs({ CALLGRIND_N, 2 * CALLGRIND_N }) do
        progress("callgrind, %s, %s, %d calls", proto, who, n)
        local cmd
        if who == "module" then
          cmd = lua_cmd("lua54", "module.lua", "calls", base, n, ca)
          cmd = cmd:gsub("lua5%.4 ", valgrind .. "lua5.4 ", 1)
        else
          cmd = valgrind .. string.format("%s %s count %d %s", q(RAWCURL), q(base
            .. "/me?fields=id%2Cusername&access_token=" .. common.TOKEN), n, ca and q(ca) or "")
        end
        local _, stderr = execute("callgrind " .. who .. " " .. proto, cmd, false)
        ir[k] = collected(stderr)
      end
      per_call[who] = (ir[2] - ir[1]) / CALLGRIND_N
    end
    local x = per_call.module / per_call.raw
    local section = "instructions per call (callgrind), " .. proto
    row({ section = section, measure = "raw libcurl C loop", figure = fmt_int(per_call.raw), compared = "the ceiling",
      ratio = "1.00×" })
    row({ section = section, measure = "lua-instagram `ig:me`, Lua 5.4", figure = fmt_int(per_call.module),
      compared = "raw libcurl", ratio = fmt_ratio(x, 1.3), target = "≤ 1.3×", met = x <= 1.3 })
  end
  notes[#notes + 1] = string.format("Instructions per call: valgrind --tool=callgrind, (Ir(%d calls) − Ir(%d calls)) "
    .. "/ %d, so process start-up, module loading and the first connection cancel out.", 2 * CALLGRIND_N,
    CALLGRIND_N, CALLGRIND_N)
end

-- the count log: {conn, requests, reused, method, uri, status}
local function read_count_log(uri)
  local out = {}
  for line in (read_file(S.prefix .. "/logs/count.log") or ""):gmatch("[^\n]+") do
    local conn, nreq, reused, method, u, status = line:match("^(%d+) (%d+) (%S*) (%S+) (%S+) (%d+)$")
    if u == uri then
      out[#out + 1] = { conn = conn, reused = reused, method = method, status = tonumber(status) }
    end
    assert(nreq)
  end
  return out
end

local function tally(entries)
  local conns, full, resumed, bad = {}, 0, 0, 0
  local n = 0
  for _, e in ipairs(entries) do
    if e.status ~= 200 then bad = bad + 1 end
    if not conns[e.conn] then
      conns[e.conn] = true
      n = n + 1
      if e.reused == "r" then resumed = resumed + 1 elseif e.reused == "." then full = full + 1 end
    end
  end
  return { requests = #entries, connections = n, full = full, resumed = resumed, bad = bad }
end

local function counts()
  local section = "connections and TLS handshakes (server log)"
  for _, proto in ipairs({ "HTTP", "HTTPS" }) do
    progress("1,000 sequential ig:me over %s, counting connections", proto)
    local f = io.open(S.prefix .. "/logs/count.log", "w")
    f:close()
    local base = (proto == "HTTP" and S.http or S.https) .. "/count"
    execute("1,000 ig:me over " .. proto, lua_cmd("lua54", "module.lua", "calls", base, 1000,
      proto == "HTTPS" and S.ca or nil), false)
    local t = tally(read_count_log("/count/me"))
    if t.requests ~= 1000 or t.bad > 0 then
      error(string.format("counts: %d requests logged, %d not 200", t.requests, t.bad), 0)
    end
    row({ section = section, measure = "1,000 sequential `ig:me`, " .. proto .. ": TCP connections",
      figure = fmt_int(t.connections), target = "1", met = t.connections == 1 })
    if proto == "HTTPS" then
      row({ section = section, measure = "1,000 sequential `ig:me`, HTTPS: full TLS handshakes",
        figure = string.format("%d (%d resumed)", t.full, t.resumed), target = "1", met = t.full == 1 })
    end
  end
  progress("100 ig:exchange_code over HTTPS, counting handshakes")
  local f = io.open(S.prefix .. "/logs/count.log", "w")
  f:close()
  execute("100 ig:exchange_code", lua_cmd("lua54", "module.lua", "exchange", S.https, 100, S.ca))
  local t = tally(read_count_log("/oauth/access_token"))
  if t.requests ~= 100 or t.bad > 0 then
    error(string.format("counts: %d exchange_code requests logged, %d not 200", t.requests, t.bad), 0)
  end
  row({ section = section, measure = "100 `exchange_code`: TCP connections (a fresh one per POST, by design)",
    figure = fmt_int(t.connections), target = "100 (must not regress)", met = t.connections == 100 })
  row({ section = section, measure = "100 `exchange_code`: full TLS handshakes / resumed (`$ssl_session_reused`)",
    figure = string.format("%d full, %d resumed", t.full, t.resumed), target = "resumed: all but the first",
    met = t.full == 1 and t.resumed == t.connections - 1 })
end

local function overlap()
  local section = "overlap: `ig:batch` of 200 × 50 ms, HTTP"
  for _, c in ipairs({ 1, 8, 32 }) do
    local rounds = c == 1 and 1 or 3
    progress("ig:batch of 200 calls at concurrency %d (%d round%s)", c, rounds, rounds > 1 and "s" or "")
    local res = execute("ig:batch concurrency " .. c, lua_cmd("lua54", "module.lua", "batch", S.http .. "/slow", c,
      rounds))
    local s = common.median(res.seconds)
    local ideal = math.ceil(200 / c) * 0.05
    local x = s / ideal
    row({ section = section, measure = "concurrency " .. c, figure = fmt_time(s),
      compared = "ideal ⌈200/" .. c .. "⌉ × 50 ms = " .. fmt_time(ideal), ratio = fmt_ratio(x, c > 1 and 1.25 or nil),
      target = c > 1 and "≤ 1.25×" or nil, met = (c > 1 or nil) and x <= 1.25 })
  end
end

local function wrk_rate(path, seconds)
  local cmd = string.format("%s%s -t1 -c16 -d%ds %s", Nginx.CLEAN_ENV, WRK, seconds or WRK_SECONDS, q(S.front .. path))
  local p = assert(io.popen(cmd .. " 2>&1", "r"))
  local out = p:read("*a")
  local ok = p:close()
  local rate = tonumber(out:match("Requests/sec:%s*([%d.]+)"))
  if not ok or not rate then error("wrk " .. path .. " failed:\n" .. out, 0) end
  if out:find("Non%-2xx") or out:find("Socket errors") then
    error("wrk " .. path .. ": errors:\n" .. out, 0)
  end
  return rate
end

local function openresty()
  local section = "OpenResty: wrk -c16 against a front nginx"
  local rates = { ig = {}, proxy = {} }
  -- warm-up, not counted: LuaJIT compiles the handler's hot paths in the first second or two
  -- (a cold worker serves the ig location at about 60% of its warm rate), as the sequential
  -- contenders get their 20 warm-up calls
  progress("wrk, warm-up")
  wrk_rate("/ig", 3)
  wrk_rate("/proxy", 1)
  for r = 1, WRK_ROUNDS do
    progress("wrk, round %d of %d", r, WRK_ROUNDS)
    local order = r % 2 == 1 and { "ig", "proxy" } or { "proxy", "ig" }
    for _, k in ipairs(order) do rates[k][r] = wrk_rate("/" .. k) end
    progress("wrk, round %d: /ig %.0f req/s, /proxy %.0f req/s", r, rates.ig[r], rates.proxy[r])
  end
  local per_round = {}
  for r = 1, WRK_ROUNDS do per_round[r] = rates.ig[r] / rates.proxy[r] end
  local x = common.median(per_round)
  row({ section = section, measure = "`proxy_pass` to the bench server (keepalive upstream)",
    figure = fmt_int(common.median(rates.proxy)) .. " req/s", compared = "the ceiling", ratio = "1.00×" })
  row({ section = section, measure = "`ig:me` over the ngx (cosocket) transport",
    figure = fmt_int(common.median(rates.ig)) .. " req/s", compared = "proxy_pass", ratio = fmt_ratio(x, 0.6),
    target = "≥ 0.6×", met = x >= 0.6 })
end

local function pure()
  for _, interp in ipairs({ "lua54", "luajit" }) do
    progress("pure work on %s", INTERPRETERS[interp].label)
    local res = execute("pure work on " .. interp, lua_cmd(interp, "pure.lua", PURE_ROUNDS))
    local section = "pure work, " .. INTERPRETERS[interp].label .. " (per call)"
    for _, r in ipairs(res.rows) do
      local bytes = string.format(", %s B", fmt_int(r.bytes))
      if r.cjson then
        local x = r.vs_cjson
        local limit = r.name:find("25 items") and 1.15 or r.name:find("token") and 1.3 or nil
        local met
        if limit then met = x <= limit end
        row({ section = section, measure = r.name .. ": exact-ID decode", figure = fmt_time(r.module) .. bytes,
          compared = "`cjson.safe.decode` " .. fmt_time(r.cjson), ratio = fmt_ratio(x, limit),
          target = limit and ("≤ " .. limit .. "×"), met = met })
      end
      local speedup = r.speedup
      row({ section = section, measure = r.name .. ": speed-up over pure Lua",
        figure = r.cjson and "" or fmt_time(r.module) .. bytes, compared = "pure Lua " .. fmt_time(r.purelua),
        ratio = fmt_ratio(speedup, 3), target = "≥ 3×", met = speedup >= 3 })
    end
  end
  notes[#notes + 1] = "Pure work: the fastest of " .. PURE_ROUNDS .. " interleaved rounds per contender, each from a "
    .. "collected heap "
    .. "(CPU-bound: an interrupted "
    .. "round only gets slower); each ratio is the median of the per-round ratios (the contenders of a round "
    .. "run back to back). bench/purelua.lua holds the baselines (string.format + gsub URL encoding; "
    .. "gmatch query parser; pure-Lua base64url + the C core's HMAC-SHA256 + cjson; utf8 check + "
    .. "string-aware big-integer quoting scanner + cjson). Figures after the time are Lua bytes allocated per call."
end

local function memory()
  local section = "memory, `ig:me` over HTTP"
  -- the RSS run (100,000 calls) once, on Lua 5.4; bytes per call on both interpreters
  for _, interp in ipairs({ "lua54", "luajit" }) do
    local calls = interp == "lua54" and 100000 or 0
    progress("memory on %s%s", INTERPRETERS[interp].label, calls > 0 and ": 100,000 ig:me calls" or "")
    local res = execute("memory " .. interp, lua_cmd(interp, "module.lua", "memory", S.http, calls))
    local label = INTERPRETERS[interp].label
    row({ section = section, measure = label .. ": Lua bytes allocated per call (collector stopped)",
      figure = fmt_int(res.bytes_per_call) .. " B" })
    if calls > 0 then
      local growth = res.rss_100k - res.rss_10k
      row({ section = section, measure = label .. ": RSS after 10k → 100k calls",
        figure = string.format("%s → %s KiB", fmt_int(res.rss_10k), fmt_int(res.rss_100k)),
        compared = "growth " .. fmt_int(growth) .. " KiB", target = "≤ 1,024 KiB growth", met = growth <= 1024 })
    end
  end
end

---------------------------------------------------------------------------

local function main()
  local t0 = common.now()
  local m = machine()
  progress("%s, %s cores; load average %s", m.cpu, m.cores, m.load)
  if not read_file(RAWCURL) then error("bench: " .. RAWCURL .. " is missing (make bench builds it)", 0) end
  local floor_so = REPO .. "/build/bench/5.4/benchfloor.so"
  if ONLY.wall and not read_file(floor_so) then
    error("bench: " .. floor_so .. " is missing (make bench builds it)", 0)
  end

  local certs = gen_certs()
  S.ca = certs .. "/ca.pem"
  local srv = Nginx.start(assert(read_file(REPO .. "/bench/nginx.conf")), {
    CERT_DIR = certs, ME_JSON = common.ME_JSON, TOKEN_JSON = common.TOKEN_JSON,
  }, nil, { name = "bench", ports = { "http", "https" } })
  servers[#servers + 1] = srv
  S.http = "http://127.0.0.1:" .. srv.ports.http
  S.https = "https://127.0.0.1:" .. srv.ports.https
  S.prefix = srv.prefix
  progress("bench server: %s %s", S.http, S.https)
  if ONLY.openresty then
    local front = Nginx.start(assert(read_file(REPO .. "/bench/front.conf")), {
      REPO = REPO, UPSTREAM_PORT = srv.ports.http, TOKEN = common.TOKEN,
    }, nil, { name = "bench-front" })
    servers[#servers + 1] = front
    S.front = "http://127.0.0.1:" .. front.ports.http
  end

  for _, part in ipairs({ "wall", "callgrind", "counts", "overlap", "openresty", "pure", "memory" }) do
    if ONLY[part] then
      local fn = ({ wall = wall, callgrind = callgrind, counts = counts, overlap = overlap,
        openresty = openresty, pure = pure, memory = memory })[part]
      fn()
    end
  end
  if ONLY.wall then
    notes[#notes + 1] = string.format("Sequential figures: every contender is its own process, started once "
      .. "per protocol and warmed up (20 calls; LuaSocket 5), that times its own calls in slices of %.3f s; "
      .. "the slices of all contenders alternate, in an order that rotates each round, for %d rounds; the ratio "
      .. "is the median of the per-round ratios. The raw loop sets its URL once and does not decode; the "
      .. "module builds the URL and decodes with exact IDs on every call. The floor (bench/floor.c) is the raw "
      .. "loop's transfer called from Lua 5.4 through one C function, then plain cjson.decode: the least any "
      .. "Lua client pays.", SECONDS, ROUNDS)
  end
  if ONLY.openresty then
    notes[#notes + 1] = string.format("OpenResty: wrk -t1 -c16, %d alternating rounds of %d s per location after a "
      .. "warm-up of 3 s (/ig) and 1 s (/proxy) that is not counted; the ratio is the median of the per-round "
      .. "ratios. Both locations run in one nginx worker on this machine's cores, with wrk and the bench "
      .. "server.", WRK_ROUNDS, WRK_SECONDS)
  end
  local err_tail = srv:log_tail(5)
  if err_tail:find("%[alert%]") or err_tail:find("%[emerg%]") then
    notes[#notes + 1] = "nginx error log: " .. err_tail
  end
  print_report(m, common.now() - t0)
end

local ok, err = pcall(main)
stop_servers()
run("rm -rf " .. q(TMP))
if not ok then
  io.stderr:write("bench: FAILED: ", tostring(err), "\n")
  os.exit(1)
end
