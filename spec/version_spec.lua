-- One version everywhere: instagram.VERSION, both rockspecs, the command's --version, the
-- changelog's top entry; and the rockspecs install every module and C source of the tree.
local instagram = require "instagram"
local Nginx = require "spec.support.nginx"
local Cli = require "spec.support.cli"

local ROOT = Nginx.repo_root()
local VERSION = instagram.VERSION

-- A rockspec is Lua assignments: run it in an empty environment and return that.
local function rockspec(path)
  local text = assert(Nginx.read_file(ROOT .. "/" .. path), path .. " is missing")
  local env = {}
  local chunk
  if setfenv then
    chunk = assert(loadstring(text, path))
    setfenv(chunk, env)
  else
    chunk = assert(load(text, path, "t", env))
  end
  chunk()
  return env
end

local function lines_of(cmd)
  local p = assert(io.popen(cmd))
  local out = {}
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  table.sort(out)
  return out
end

describe("version", function()
  local versioned = "rockspec/lua-instagram-" .. VERSION .. "-1.rockspec"

  it("instagram.VERSION is MAJOR.MINOR.PATCH", function()
    assert.matches("^%d+%.%d+%.%d+$", VERSION)
  end)

  it("the versioned rockspec carries it, and its source is the v<version> tag", function()
    local r = rockspec(versioned)
    assert.equal("lua-instagram", r.package)
    assert.equal(VERSION .. "-1", r.version)
    assert.equal("v" .. VERSION, r.source.tag)
  end)

  it("scm-1 and the versioned rockspec build and install the same things", function()
    local scm, rel = rockspec("rockspec/lua-instagram-scm-1.rockspec"), rockspec(versioned)
    assert.equal("scm-1", scm.version)
    assert.same(scm.dependencies, rel.dependencies)
    assert.same(scm.build, rel.build)
    assert.same(scm.external_dependencies, rel.external_dependencies)
    assert.same(scm.description, rel.description)
  end)

  it("the rockspec installs every Lua module, every C source and the command", function()
    local r = rockspec(versioned)
    local listed = {}
    for _, src in pairs(r.build.modules) do
      if type(src) == "string" then listed[#listed + 1] = src end
    end
    table.sort(listed)
    assert.same(lines_of("cd " .. Nginx.q(ROOT) .. " && git ls-files 'lua/*.lua'"), listed)
    for name, src in pairs(r.build.modules) do
      if type(src) == "string" then
        local expected = src:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
        assert.equal(expected, name)
      end
    end
    local sources = {}
    for _, s in ipairs(r.build.modules["instagram.core"].sources) do sources[#sources + 1] = s end
    table.sort(sources)
    assert.same(lines_of("cd " .. Nginx.q(ROOT) .. " && git ls-files 'src/*.c'"), sources)
    assert.same({ instagram = "bin/instagram" }, r.build.install.bin)
    assert.same({ "spec/support" }, r.build.copy_directories)
  end)

  it("the changelog's top entry is this version", function()
    local text = assert(Nginx.read_file(ROOT .. "/CHANGELOG.md"))
    assert.equal(VERSION, text:match("\n## (%d+%.%d+%.%d+)"))
  end)

  it("instagram --version says it", function()
    local dir = Cli.tempdir()
    local r = Cli.run(dir, { "--version" })
    Cli.rmdir(dir)
    assert.equal(0, r.code)
    assert.equal("instagram (lua-instagram) " .. VERSION .. "\n", r.stdout)
  end)

  it("the README's module table says it", function()
    local text = assert(Nginx.read_file(ROOT .. "/README.md"))
    assert.matches("| `instagram.VERSION` | `\"" .. VERSION:gsub("%.", "%%.") .. "\"` |", text, 1, false)
  end)
end)
