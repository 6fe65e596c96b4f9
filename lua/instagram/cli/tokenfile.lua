-- The token file of the `instagram` command: a token table as JSON, mode 0600, written
-- atomically (src/fileio.c), refused when other users can read it.
local core = require "instagram.core"
local json = require "instagram.json"

local M = {}

-- The default path: $XDG_CONFIG_HOME/instagram/token.json, else ~/.config/instagram/token.json.
function M.default_path(getenv)
  getenv = getenv or os.getenv
  local base = getenv("XDG_CONFIG_HOME")
  if not base or base == "" or base:sub(1, 1) ~= "/" then
    local home = getenv("HOME")
    if not home or home == "" then return nil end
    base = home .. "/.config"
  end
  return base .. "/instagram/token.json"
end

local function octal(mode)
  return string.format("%04o", mode)
end

-- load(path) -> token table | nil, message, why ("missing", "unsafe", "bad")
function M.load(path)
  local mode, what, why = core.fs_mode(path)
  if not mode then
    if why == "missing" then
      return nil, "no token stored in " .. path .. " (run: instagram login)", "missing"
    end
    return nil, "cannot read the token file " .. path .. ": " .. tostring(what), "bad"
  end
  if what ~= "file" then
    return nil, "the token file " .. path .. " is not a regular file", "bad"
  end
  if mode % 64 ~= 0 then -- any group or other bit (0077)
    return nil, string.format("the token file %s can be read by other users (mode %s); refusing it: "
      .. "run chmod 600 %s and revoke the token if others may have seen it", path, octal(mode), path), "unsafe"
  end
  local f, err = io.open(path, "rb")
  if not f then return nil, "cannot read the token file: " .. tostring(err), "bad" end
  local text = f:read("*a")
  f:close()
  local t = json.decode(text)
  if type(t) ~= "table" or type(t.access_token) ~= "string" or t.access_token == "" then
    return nil, "the token file " .. path .. " holds no token (run: instagram login)", "missing"
  end
  t.user_id = json.id(t.user_id)
  for _, k in ipairs({ "issued_at", "expires_in", "expires_at" }) do
    if type(t[k]) ~= "number" then t[k] = nil end
  end
  return t
end

-- The directories above path, made 0700 where missing.
local function make_parents(path)
  local dir = path:match("^(.*)/[^/]*$")
  if not dir or dir == "" then return true end
  local mode, what = core.fs_mode(dir)
  if mode then
    if what ~= "dir" then return nil, dir .. " is not a directory" end
    return true
  end
  local ok, err = make_parents(dir)
  if not ok then return nil, err end
  local made, merr = core.fs_mkdir(dir)
  if not made then return nil, "cannot create " .. dir .. ": " .. tostring(merr) end
  return true
end

-- mkdirs(dir) -> true | nil, message: dir and the directories above it, made 0700 where missing.
function M.mkdirs(dir)
  return make_parents(dir .. "/.")
end

-- save(path, token) -> true | nil, message. Only the known fields are written.
local FIELDS = {
  "access_token", "user_id", "username", "api", "app_id", "redirect_uri", "token_type",
  "issued_at", "expires_in", "expires_at", "permissions",
}
function M.save(path, token)
  local out = {}
  for _, k in ipairs(FIELDS) do out[k] = token[k] end
  local text = json.encode(out)
  if not text then return nil, "cannot encode the token" end
  local ok, err = make_parents(path)
  if not ok then return nil, err end
  local done, werr = core.fs_write(path, text .. "\n")
  if not done then return nil, "cannot write the token file " .. path .. ": " .. tostring(werr) end
  return true
end

return M
