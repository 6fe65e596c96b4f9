-- Runs bin/instagram as a user would, in a child process of the interpreter running the specs,
-- with a clean environment (HOME in a temp dir, no INSTAGRAM_* unless given). Standard input
-- is a file, or a FIFO the spec writes to after reading the Authorization Window URL.
local socket = require "socket"
local Nginx = require "spec.support.nginx"

local M = {}

local q, read_file = Nginx.q, Nginx.read_file
M.ROOT = Nginx.repo_root()
M.LUA = jit and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))

local function write_file(path, text)
  local f = assert(io.open(path, "wb"))
  assert(f:write(text))
  f:close()
end
M.write_file = write_file

function M.tempdir()
  return Nginx.mktemp_dir("cli")
end

function M.rmdir(dir)
  if dir and dir:match("^/tmp/lua%-instagram%-cli%.") then Nginx.run("rm -rf " .. q(dir)) end
end

-- The shell command for argv with env ({NAME = value}), in dir (its HOME and working directory).
local function command(dir, argv, env, umask, script)
  local parts = { "env -i PATH=" .. q(os.getenv("PATH") or "/usr/bin:/bin"), "HOME=" .. q(dir) }
  local names = {}
  for k in pairs(env or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do parts[#parts + 1] = k .. "=" .. q(env[k]) end
  parts[#parts + 1] = M.LUA
  parts[#parts + 1] = q(script or (M.ROOT .. "/bin/instagram"))
  for _, a in ipairs(argv) do parts[#parts + 1] = q(a) end
  local cmd = "cd " .. q(dir) .. " && " .. table.concat(parts, " ")
  if umask then cmd = "umask " .. umask .. "; " .. cmd end
  return cmd
end

local function result(dir)
  local rc = read_file(dir .. "/rc")
  return {
    code = tonumber(rc and rc:match("%d+")),
    stdout = read_file(dir .. "/stdout") or "",
    stderr = read_file(dir .. "/stderr") or "",
  }
end

-- run(dir, argv[, opts]) -> {code, stdout, stderr}. opts.stdin: text; opts.env; opts.umask;
-- opts.script: another copy of bin/instagram.
function M.run(dir, argv, opts)
  opts = opts or {}
  write_file(dir .. "/stdin", opts.stdin or "")
  os.remove(dir .. "/rc")
  Nginx.run(string.format("(%s) <%s >%s 2>%s; echo $? >%s", command(dir, argv, opts.env, opts.umask, opts.script),
    q(dir .. "/stdin"), q(dir .. "/stdout"), q(dir .. "/stderr"), q(dir .. "/rc")))
  return result(dir)
end

local function wait_for(check, what)
  for _ = 1, 600 do -- a bound against a hung child, not a timing assertion
    local v = check()
    if v then return v end
    socket.sleep(0.05)
  end
  error("cli: gave up waiting for " .. what, 2)
end

-- interactive(dir, argv, answer[, opts]) -> result, url. Starts the command with a FIFO as stdin,
-- waits for the Authorization Window URL on its stdout, writes answer(url) .. "\n", waits for the end.
function M.interactive(dir, argv, answer, opts)
  opts = opts or {}
  local fifo = dir .. "/fifo"
  os.remove(fifo)
  os.remove(dir .. "/rc")
  os.remove(dir .. "/stdout")
  assert(Nginx.run("mkfifo " .. q(fifo)))
  assert(Nginx.run(string.format("((%s) <%s >%s 2>%s; echo $? >%s.part; mv %s.part %s) </dev/null >/dev/null 2>&1 &",
    command(dir, argv, opts.env, opts.umask), q(fifo), q(dir .. "/stdout"), q(dir .. "/stderr"), q(dir .. "/rc"),
    q(dir .. "/rc"), q(dir .. "/rc"))))
  local w = assert(io.open(fifo, "w"))
  local url = wait_for(function()
    local out = read_file(dir .. "/stdout") or ""
    local rc = read_file(dir .. "/rc")
    if rc then return "" end -- ended before asking
    return out:match("(https?://%S+/oauth/authorize%?%S+)\n")
  end, "the Authorization Window URL")
  if url ~= "" then w:write(answer(url), "\n") end
  pcall(w.close, w)
  wait_for(function() return read_file(dir .. "/rc") end, "the command to end")
  os.remove(fifo)
  return result(dir), url
end

-- The stderr lines of a result.
function M.lines(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

return M
