-- ig:download(url, dest[, opts]): a media file from Instagram's CDN to a path or a function, streamed
-- by the C core to a temp file as the bytes arrive (API.md "Downloads"). No token is ever sent;
-- redirects are answers, never followed; only https on the CDN hosts.
local core = require "instagram.core"
local errors = require "instagram.errors"

local DEFAULT_HOSTS = { "*.cdninstagram.com", "*.fbcdn.net" }
local DEFAULT_MAX_BYTES = 1024 * 1024 * 1024
local DEFAULT_TIMEOUT = 3600 -- a whole transfer; a stalled one fails sooner (libcurl's low-speed limit)
local CHUNK = 64 * 1024

-- the host of an https:// URL, lower-case, without port or user info; nil for anything else
local function https_host(url)
  local authority = url:match("^[Hh][Tt][Tt][Pp][Ss]://([^/?#]+)")
  if not authority or authority:find("@", 1, true) then return nil end
  local host = authority:match("^%[([%x:.]+)%]:?%d*$") or authority:gsub(":%d*$", "")
  -- a DNS name or an IP address, nothing a looser URL parser could read as another host
  if not host:match("^[%w.:-]+$") then return nil end
  return host:lower()
end

-- "*.example.com" matches every name under example.com (not example.com itself); else exact
local function host_allowed(host, hosts)
  for _, pattern in ipairs(hosts) do
    pattern = pattern:lower()
    if pattern:sub(1, 2) == "*." then
      local suffix = pattern:sub(2)
      if #host > #suffix and host:sub(-#suffix) == suffix then return true end
    elseif host == pattern then
      return true
    end
  end
  return false
end

local function temp_name(base)
  local r = assert(core.random_state(16))
  return base .. ".part-" .. r
end

return function(Client, h)
  function Client:download(url, dest, opts)
    local fname = "ig:download"
    h.check_self(fname, self)
    h.check_string(fname, "url", url)
    if type(dest) ~= "string" and type(dest) ~= "function" then
      h.raise(fname, "dest must be a file path or a function")
    end
    if type(dest) == "string" then h.check_string(fname, "dest", dest) end
    if opts ~= nil and type(opts) ~= "table" then h.raise(fname, "opts must be a table") end
    opts = opts or {}
    local hosts = opts.hosts or DEFAULT_HOSTS
    if type(hosts) ~= "table" or #hosts == 0 then h.raise(fname, "opts.hosts must be an array of host names") end
    for i = 1, #hosts do h.check_string(fname, "opts.hosts[" .. i .. "]", hosts[i]) end
    local max_bytes = opts.max_bytes or DEFAULT_MAX_BYTES
    if type(max_bytes) ~= "number" or max_bytes < 1 or max_bytes ~= math.floor(max_bytes) then
      h.raise(fname, "opts.max_bytes must be a positive integer")
    end
    local timeout = opts.timeout or DEFAULT_TIMEOUT
    if type(timeout) ~= "number" or timeout <= 0 then h.raise(fname, "opts.timeout must be a positive number") end
    local host = https_host(url)
    if not host or not host_allowed(host, hosts) then
      h.raise(fname, "url must be an https:// URL on " .. table.concat(hosts, ", "))
    end

    local tmp
    if type(dest) == "string" then
      tmp = temp_name(dest)
    else
      tmp = temp_name((os.getenv("TMPDIR") or "/tmp") .. "/lua-instagram-download")
    end
    -- no token, no cookies: the CDN URL carries its own signature
    local res, kind, msg, status = self:_request({
      method = "GET", url = url, headers = { Accept = "*/*" }, file = tmp, max_bytes = max_bytes,
      timeout = timeout, connect_timeout = self.connect_timeout,
    })
    local function failed(err)
      os.remove(tmp)
      return nil, err
    end
    if res == h.BATCH_ABORT then
      -- another call of the batch raised: this transfer may have made its temp file already
      os.remove(tmp)
      error("ig:batch: abandoned, another call of the batch raised", 0)
    end
    if not res then
      if kind == "file" then
        return failed(errors.new("store", "cannot write " .. (type(dest) == "string" and dest or "the temp file")
          .. ": " .. tostring(msg)))
      end
      return failed(errors.new(kind or "network", msg or "download failed", { status = status }))
    end
    if res.status < 200 or res.status >= 300 then
      local body = type(res.body) == "string" and res.body or ""
      local expired = res.status == 403 and body:find("URL signature expired", 1, true) ~= nil
      local err = errors.new("http", expired and "URL signature expired" or (res.status >= 300 and res.status < 400
        and "unexpected redirect (not followed)" or "download refused"), { status = res.status })
      err.expired_url = expired or nil
      err.transient = res.status >= 500 or nil
      return failed(err)
    end
    local bytes = res.bytes
    if bytes == nil then
      -- a transport that does not stream (cosockets, a function): the body came in memory, and the
      -- size cap is checked here
      if #(res.body or "") > max_bytes then
        return failed(errors.new("response", "response body larger than " .. string.format("%d", max_bytes)
          .. " bytes", { status = res.status }))
      end
      local f, oerr = io.open(tmp, "wb")
      if not f then return failed(errors.new("store", "cannot write the download: " .. tostring(oerr))) end
      local ok, werr = f:write(res.body or "")
      f:close()
      if not ok then return failed(errors.new("store", "cannot write the download: " .. tostring(werr))) end
      bytes = #(res.body or "")
    end
    if type(dest) == "function" then
      local f = io.open(tmp, "rb")
      if not f then return failed(errors.new("store", "cannot read the download back")) end
      local ok, serr = pcall(function()
        while true do
          local chunk = f:read(CHUNK)
          if not chunk then break end
          dest(chunk)
        end
      end)
      f:close()
      os.remove(tmp)
      if not ok then error(serr, 0) end -- the sink's own error, as it raised it
    else
      local ok, rerr = os.rename(tmp, dest)
      if not ok then return failed(errors.new("store", "cannot write " .. dest .. ": " .. tostring(rerr))) end
    end
    return { bytes = math.floor(bytes), status = res.status }
  end

  h.BATCHABLE.download = true
end
