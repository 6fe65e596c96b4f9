-- The OpenResty transport: HTTP/1.1 over ngx.socket.tcp cosockets, so a request handler never blocks
-- the nginx worker (libcurl would). Same interface as the other transports (instagram.transport):
--   t:request(req) -> res | nil, kind, message[, status]
--   t:request_many(reqs, concurrency) -> { res | {error = kind, message = msg[, status]}, ... }
--   t:close()
-- req = {method, url, headers, body, timeout, connect_timeout};
-- res = {status, headers (lower-case names, repeated joined with ", "), body, reused}.
-- t:request also returns the status as a 4th value with kind "response" once the status line had
-- arrived (a body over max_response_bytes), and request_many puts it in the error table.
-- kinds: network, timeout, tls, response. Misuse (a bad request table, CR/LF/NUL in the URL or a
-- header) raises, as the C core does.
--
-- Operator notes (see also examples/openresty/nginx.conf):
-- * Works in the phases that allow cosockets: rewrite, server_rewrite, access, content, ngx.timer,
--   ssl_certificate, ssl_session_fetch, ssl_client_hello (stream: preread, content, timer). Not in
--   init/init_worker/set/log/header_filter/body_filter/balancer: there a client left on the default
--   transport uses libcurl for that request (instagram.transport decides per request).
-- * TLS is always verified (sslhandshake(nil, host, true)) against `lua_ssl_trusted_certificate`,
--   which nginx has no default for: set it (e.g. /etc/ssl/certs/ca-certificates.crt) and set
--   `lua_ssl_verify_depth 3` or more (the default 1 is too shallow for public chains). Cosockets
--   cannot take a CA file per request, so a client `ca_file` is not read here: it must name the
--   same bundle as lua_ssl_trusted_certificate (it is part of the connection-pool name, so
--   clients configured with different bundles never share a connection).
-- * Host names need the nginx `resolver` directive. IP literals connect without one, and
--   `localhost` is connected to at 127.0.0.1 (RFC 6761, as libcurl does) while the certificate is
--   still checked for the name "localhost". nginx checks certificate names with X509_check_host,
--   which does not match IP SANs: https to an IP literal fails with kind "tls" (use a name).
-- * Name resolution goes through nginx's resolver (bounded by `resolver_timeout`); the request's
--   connect_timeout and timeout bound it too (the connect runs on a light thread raced against them).
-- * Redirects are never followed. Connections go back to the per-worker pool
--   (lua_socket_keepalive_timeout, lua_socket_pool_size) only after a complete, well-framed
--   response to a GET without `Connection: close`. Only GETs take pooled connections, and only
--   GETs are sent again (once or twice, on another connection) when a pooled connection turns out
--   to be closed before any byte of the answer. A POST (the code exchange) always goes on a new
--   connection from a pool name nothing is ever kept under, is closed after its answer, and is
--   never sent twice, as with libcurl (CURLOPT_FRESH_CONNECT).
local M = {}

local T = {}
T.__index = T

local MAX_HEADER_BYTES = 256 * 1024
local MAX_HEADER_COUNT = 200
local MAX_INTERIM = 5            -- 1xx responses skipped before the final one
local READ_PIECE = 64 * 1024
local MAX_STALE_RETRIES = 2      -- fresh tries after a pooled connection turned out closed

local MANAGED_HEADERS = {
  host = true, ["content-length"] = true, connection = true, ["transfer-encoding"] = true,
  te = true, upgrade = true, expect = true,
}

local concat, floor, min = table.concat, math.floor, math.min
-- LuaJIT's table.new presizes the response headers table (plain {} elsewhere, e.g. in the specs)
local has_table_new, table_new = pcall(require, "table.new")
local function new_table(narr, nrec)
  if has_table_new then return table_new(narr, nrec) end
  return {}
end

local function ngx_api()
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or not ngx.socket then
    error("instagram.ngx: needs OpenResty (ngx.socket.tcp is not available here)", 0)
  end
  return ngx
end

local function now(ngx)
  ngx.update_time()
  return ngx.now()
end

---------------------------------------------------------------------------
-- request checks: misuse raises with the function name

local function raise(fname, index, msg)
  if index then error(string.format("%s: request #%d: %s", fname, index, msg), 0) end
  error(fname .. ": " .. msg, 0)
end

local function is_token(s)
  return s ~= "" and not s:find("[^%w!#$%%&'*+%-.^_`|~]")
end

local byte, find, sub, lower, match = string.byte, string.find, string.sub, string.lower, string.match
local MAX_CACHED_NAMES = 256

-- true when s holds a byte of 0-32 or 127 (controls and space). A byte loop: LuaJIT compiles it
-- to a tight loop, where a pattern class ("[%z\1-\32\127]") costs ~25 ns a byte in the matcher,
-- and a request target carries the whole token.
local CTL_OR_SPACE = "[\\x00-\\x20\\x7f]"

local function has_ctl_or_space(s)
  -- in nginx, PCRE (JIT, compiled once): no loop here, so LuaJIT can compile the callers too
  local ngx = rawget(_G, "ngx")
  local re = type(ngx) == "table" and type(ngx.re) == "table" and ngx.re.find
  if re then
    local from, _, err = re(s, CTL_OR_SPACE, "jo")
    if not err then return from ~= nil end
  end
  for i = 1, #s do
    local b = byte(s, i)
    if b <= 32 or b == 127 then return true end
  end
  return false
end

-- true when s holds CR, LF or NUL (plain searches: no pattern matcher)
local function has_crlf_nul(s)
  return find(s, "\r", 1, true) ~= nil or find(s, "\n", 1, true) ~= nil or find(s, "\0", 1, true) ~= nil
end

-- A cache of header names: name as given -> lower-case name, or false (not a token). Bounded: a
-- peer that sends many distinct names only makes the later ones uncached.
local function name_cache()
  local names, count = {}, 0
  return function(name)
    local lname = names[name]
    if lname == nil then
      lname = is_token(name) and lower(name) or false
      if count < MAX_CACHED_NAMES then
        names[name], count = lname, count + 1
      end
    end
    return lname
  end
end

-- response header names seen, and request header names validated (those come from code, so
-- that set stays small)
local response_name, request_name = name_cache(), name_cache()

local function seconds(fname, index, v, default, what)
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v < 0 or v > 2147483 then
    raise(fname, index, what .. " must be a non-negative number of seconds")
  end
  return v
end

local split_url -- below

-- url -> {scheme, host, port, connect_host, authority, target} or nil, message (never the query)
local function parse_url(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "malformed URL (no scheme)" end
  scheme = scheme:lower()
  local authority, target = rest:match("^([^/?#]*)(.*)$")
  target = target:gsub("#.*$", "")
  if target == "" then
    target = "/"
  elseif target:sub(1, 1) == "?" then
    target = "/" .. target
  end
  if target:find("[%z\1-\32\127]") then return nil, "malformed URL (spaces or control characters)" end
  if authority:find("@", 1, true) then return nil, "URLs with user info are not supported" end
  local host, port
  if authority:sub(1, 1) == "[" then
    local h, p = authority:match("^(%[[%x:.]+%])(.*)$")
    host, port = h, p
  else
    host, port = authority:match("^([%w.%-]+)(.*)$")
  end
  if not host then return nil, "malformed URL (bad host)" end
  host = host:lower()
  local default_port = scheme == "https" and 443 or 80
  if port == "" then
    port = default_port
  else
    port = port:match("^:(%d+)$")
    port = port and tonumber(port)
    if not port or port < 1 or port > 65535 then return nil, "malformed URL (bad port)" end
  end
  local connect_host = host
  if host == "localhost" then connect_host = "127.0.0.1" end
  return {
    scheme = scheme,
    host = host,
    port = port,
    connect_host = connect_host,
    authority = port == default_port and host or (host .. ":" .. port),
    target = target,
    ip = host:match("^%d+%.%d+%.%d+%.%d+$") ~= nil or host:sub(1, 1) == "[",
    connect_ip = connect_host:match("^%d+%.%d+%.%d+%.%d+$") ~= nil or connect_host:sub(1, 1) == "[",
  }
end

-- What a transport keeps per origin ("scheme://authority"), built on the first request to it:
-- the parsed URL parts, the scheme check, the Host and default User-Agent lines, where, the pool
-- names and connect options. Bounded: a transport that sees many origins starts over.
local MAX_ORIGINS = 64

local function origin_entry(self, key)
  local u, err = parse_url(key)
  if not u then return { error = err } end
  local opts = self.opts
  local e = u
  if u.scheme ~= "https" and not (u.scheme == "http" and opts.allow_http) then
    e.scheme_error = opts.allow_http
      and "URL scheme not allowed: only https and http URLs are accepted"
      or "URL scheme not allowed: only https URLs are accepted (allow_http is off)"
  end
  e.host_line = "Host: " .. u.authority .. "\r\n"
  local ua = opts.user_agent
  e.ua_line = (ua and ua ~= "") and ("User-Agent: " .. ua .. "\r\n") or ""
  e.where = u.scheme .. "://" .. u.authority
  e.pool = concat({ "instagram", u.scheme, u.host, u.port,
    u.scheme == "https" and ("verify:" .. (opts.ca_file or "lua_ssl_trusted_certificate")) or "plain" }, "|")
  e.pool_fresh = e.pool .. "|fresh"
  e.connect_pooled = { pool = e.pool }
  e.connect_fresh = { pool = e.pool_fresh }
  return e
end

-- url -> origin entry, request target | nil, nil, message: parse_url's answers, with the origin
-- part parsed once per transport and the target (which carries the query, and so the token)
-- checked with plain searches and one byte loop instead of patterns.
split_url = function(self, url)
  local sep = find(url, "://", 1, true)
  if not sep then return nil, nil, "malformed URL (no scheme)" end
  -- the authority ends at the first "/", "?" or "#" (three plain searches, no loop: a loop
  -- inside a function keeps LuaJIT from compiling the function)
  local stop = find(url, "/", sep + 3, true)
  local q = find(url, "?", sep + 3, true)
  if q and (not stop or q < stop) then stop = q end
  q = find(url, "#", sep + 3, true)
  if q and (not stop or q < stop) then stop = q end
  local key = stop and sub(url, 1, stop - 1) or url
  local origins = self.origins
  local o = origins[key]
  if not o then
    if self.origin_count >= MAX_ORIGINS then
      origins = {}
      self.origins, self.origin_count = origins, 0
    end
    o = origin_entry(self, key)
    origins[key], self.origin_count = o, self.origin_count + 1
  end
  -- the scheme check comes first, as in parse_url (the key fails it exactly when the URL does)
  if o.error == "malformed URL (no scheme)" then return nil, nil, o.error end
  local target = stop and sub(url, stop) or ""
  local hash = find(target, "#", 1, true)
  if hash then target = sub(target, 1, hash - 1) end
  if target == "" then
    target = "/"
  elseif byte(target, 1) == 63 then -- "?"
    target = "/" .. target
  end
  if has_ctl_or_space(target) then return nil, nil, "malformed URL (spaces or control characters)" end
  if o.error then return nil, nil, o.error end
  return o, target
end

-- one request header, checked: its line, or nil and the value of a User-Agent header
local function header_line(fname, index, name, value)
  local lname = request_name(name)
  if not lname then
    raise(fname, index, "header name must be a non-empty token (no CR, LF, NUL, ':' or spaces)")
  end
  if type(value) == "number" then value = tostring(value) end
  if type(value) ~= "string" then raise(fname, index, "header values must be strings") end
  if has_crlf_nul(value) then raise(fname, index, "header value contains CR, LF or NUL") end
  if MANAGED_HEADERS[lname] then raise(fname, index, "header " .. name .. " is set by the transport") end
  if lname == "user-agent" then return nil, value end
  return name .. ": " .. value .. "\r\n"
end

-- Validates req (raises on misuse) and builds what perform needs.
local function prepare(self, fname, index, req)
  if type(req) ~= "table" then raise(fname, index, "request must be a table") end
  local method = req.method
  if method == nil then method = "GET" end
  if method ~= "GET" and method ~= "POST" and method ~= "DELETE" then
    raise(fname, index, "method must be \"GET\", \"POST\" or \"DELETE\"")
  end
  local url = req.url
  if type(url) ~= "string" then raise(fname, index, "url must be a string") end
  if has_crlf_nul(url) then raise(fname, index, "url contains CR, LF or NUL") end
  local body = req.body
  if body ~= nil then
    if type(body) ~= "string" then raise(fname, index, "body must be a string") end
    if method ~= "POST" then raise(fname, index, "body is only allowed with POST") end
  end
  local timeout = seconds(fname, index, req.timeout, self.opts.timeout, "timeout")
  local connect_timeout = seconds(fname, index, req.connect_timeout, self.opts.connect_timeout,
    "connect_timeout")

  -- the header lines, in name order; the User-Agent apart (it goes first, as before)
  local lines, user_agent = "", nil
  local headers = req.headers
  if headers ~= nil then
    if type(headers) ~= "table" then raise(fname, index, "headers must be a table") end
    local first = next(headers)
    if first ~= nil and next(headers, first) == nil then
      -- one header (the usual Accept): no loop
      if type(first) ~= "string" then raise(fname, index, "header names must be strings") end
      local line, ua = header_line(fname, index, first, headers[first])
      lines, user_agent = line or lines, ua
    elseif first ~= nil then
      local names = {}
      for name in pairs(headers) do
        if type(name) ~= "string" then raise(fname, index, "header names must be strings") end
        names[#names + 1] = name
      end
      table.sort(names)
      for i = 1, #names do
        local line, ua = header_line(fname, index, names[i], headers[names[i]])
        if line then lines = lines .. line else user_agent = ua end
      end
    end
  end

  local o, target, err = split_url(self, url)
  if not o then
    return { method = method, body = body, timeout = timeout, connect_timeout = connect_timeout, url_error = err }
  end
  local ua_line = o.ua_line
  if user_agent then
    ua_line = user_agent ~= "" and ("User-Agent: " .. user_agent .. "\r\n") or ""
  end
  -- only a GET may be sent again, so only a GET may take a pooled connection (which the server
  -- may have closed): anything else connects under a pool name that nothing is ever kept under
  local fresh = method ~= "GET"
  -- the fields every request has in one constructor (eight: the table is made at its final size)
  local p = {
    method = method, timeout = timeout, connect_timeout = connect_timeout,
    url = o, fresh = fresh, where = o.where,
    connect_opts = fresh and o.connect_fresh or o.connect_pooled,
    head = method .. " " .. target .. " HTTP/1.1\r\n" .. o.host_line .. ua_line .. lines
      .. (method == "POST" and ("Content-Length: " .. #(body or "") .. "\r\n") or "")
      .. "Connection: keep-alive\r\n\r\n",
  }
  if body then p.body = body end
  if o.scheme_error then p.url_error = o.scheme_error end
  return p
end

---------------------------------------------------------------------------
-- one exchange on one connection

local Fail = {}  -- error(setmetatable({kind, message}, Fail)) inside perform, caught there

local function fail(kind, message)
  error(setmetatable({ kind = kind, message = message }, Fail), 0)
end

local function sock_kind(err)
  return err == "timeout" and "timeout" or "network"
end

-- A buffered reader over receiveany: every wait is bounded by the request's overall deadline.
local Conn = {}
Conn.__index = Conn

function Conn:arm()
  -- the same clock reading (ms) as the last arm of this connection sets the same timeouts again
  local at = self.deadline and now(self.ngx) or false
  if at == self.armed_at then return end
  self.armed_at = at
  local left = self.deadline and (self.deadline - at) or nil
  if left and left <= 0 then fail("timeout", "request timed out after " .. self.timeout .. " s") end
  local ms = left and math.max(1, floor(left * 1000)) or 0
  local connect_ms = self.connect_ms
  if ms > 0 and (connect_ms == 0 or connect_ms > ms) then connect_ms = ms end
  self.sock:settimeouts(connect_ms, ms, ms)
end

-- the next piece from the socket, or false at the peer's close
function Conn:fill(what)
  self:arm()
  local data, err = self.sock:receiveany(READ_PIECE)
  if not data then
    if err == "timeout" then fail("timeout", "timed out reading the " .. what .. " from " .. self.where) end
    -- a pooled connection that the server had closed: a GET may go again on another one
    if self.retryable and not self.got_bytes then fail("stale", "pooled connection was closed") end
    if err == "closed" then
      self.closed = true
      return false
    end
    fail("network", "reading the " .. what .. " from " .. self.where .. " failed: " .. tostring(err))
  end
  self.got_bytes = true
  return data
end

-- a line without its "\n" (a "\r" before it is kept), at most limit bytes. The pieces of a line
-- that spans reads are collected and joined once, and each piece is searched once: linear.
function Conn:line(limit, what)
  local buf, pos = self.buf, self.pos
  local i = buf:find("\n", pos, true)
  if i then
    if i - pos > limit then fail("response", what .. " too long") end
    self.pos = i + 1
    return buf:sub(pos, i - 1)
  end
  if pos > #buf then
    -- nothing buffered (the status line of the usual response, read whole in one piece): the
    -- next piece becomes the buffer, with no list of pieces to make and join
    local data = self:fill(what)
    if not data then
      fail("network", "connection closed by " .. self.where .. " in the " .. what)
    end
    i = find(data, "\n", 1, true)
    if i then
      if i - 1 > limit then fail("response", what .. " too long") end
      self.buf, self.pos = data, i + 1
      return sub(data, 1, i - 1)
    end
    buf, pos = data, 1
  end
  local parts, size = { buf:sub(pos) }, #buf - pos + 1
  self.buf, self.pos = "", 1
  while true do
    if size > limit then fail("response", what .. " too long") end
    local data = self:fill(what)
    if not data then
      -- as libcurl (GOT_NOTHING, RECV_ERROR): a cut connection is the network, not the response
      fail("network", "connection closed by " .. self.where .. " in the " .. what)
    end
    i = data:find("\n", 1, true)
    if i then
      if size + i - 1 > limit then fail("response", what .. " too long") end
      parts[#parts + 1] = data:sub(1, i - 1)
      self.buf, self.pos = data, i + 1
      return concat(parts)
    end
    parts[#parts + 1] = data
    size = size + #data
  end
end

-- a header line without its "\n" and one "\r" before it, and 1 when there was that "\r" (else 0):
-- Conn:line, with the "\r" left out of the one substring made in the usual case
function Conn:field_line(limit, what)
  local buf, pos = self.buf, self.pos
  local i = find(buf, "\n", pos, true)
  if i then
    if i - pos > limit then fail("response", what .. " too long") end
    self.pos = i + 1
    if byte(buf, i - 1) == 13 and i > pos then return sub(buf, pos, i - 2), 1 end
    return sub(buf, pos, i - 1), 0
  end
  local line = self:line(limit, what)
  if byte(line, -1) == 13 then return sub(line, 1, -2), 1 end
  return line, 0
end

-- appends exactly n bytes to out
function Conn:exact(n, out, what)
  local have = #self.buf - self.pos + 1
  if have > 0 then
    local take = min(have, n)
    out[#out + 1] = self.buf:sub(self.pos, self.pos + take - 1)
    self.pos = self.pos + take
    n = n - take
  end
  while n > 0 do
    self:arm()
    local data, err = self.sock:receiveany(min(n, READ_PIECE))
    if not data then
      if err == "timeout" then fail("timeout", "timed out reading the " .. what .. " from " .. self.where) end
      if err == "closed" then
        self.closed = true
        fail("network", "connection closed by " .. self.where .. " in the " .. what)
      end
      fail("network", "reading the " .. what .. " from " .. self.where .. " failed: " .. tostring(err))
    end
    out[#out + 1] = data
    n = n - #data
  end
end

-- appends everything up to the peer's close to out, at most max bytes
function Conn:rest(out, max)
  local total = 0
  local have = #self.buf - self.pos + 1
  if have > 0 then
    out[#out + 1] = self.buf:sub(self.pos)
    total = have
    self.pos = #self.buf + 1
  end
  while true do
    if total > max then fail("response", "response body larger than " .. max .. " bytes") end
    self:arm()
    local data, err = self.sock:receiveany(READ_PIECE)
    if not data then
      if err == "closed" then
        self.closed = true
        return
      end
      if err == "timeout" then fail("timeout", "timed out reading the body from " .. self.where) end
      fail("network", "reading the body from " .. self.where .. " failed: " .. tostring(err))
    end
    out[#out + 1] = data
    total = total + #data
  end
end

-- true when s holds a comma or a %s blank (tab, LF, VT, FF, CR, space): a byte loop, which LuaJIT
-- compiles, where a pattern search goes through the C matcher on every call
local function has_comma_or_blank(s)
  for i = 1, #s do
    local b = byte(s, i)
    if b == 44 or b == 32 or (b >= 9 and b <= 13) then return true end
  end
  return false
end

-- true when s is one or more ASCII digits
local function all_digits(s)
  if s == "" then return false end
  for i = 1, #s do
    local b = byte(s, i)
    if b < 48 or b > 57 then return false end
  end
  return true
end

local function has_token(value, token)
  if not value then return false end
  local lv = lower(value)
  if lv == token then return true end
  -- one item with nothing to trim (the usual "keep-alive"): no list to walk
  if not has_comma_or_blank(lv) then return false end
  for item in value:gmatch("[^,]+") do
    if item:match("^%s*(.-)%s*$"):lower() == token then return true end
  end
  return false
end

local function is_digit(b)
  return b ~= nil and b >= 48 and b <= 57
end

-- status line and headers of one response -> status, headers, version minor
local function read_head(c)
  local line = c:line(8192, "status line")
  -- "HTTP/1.<digit> <3 digits>", then nothing, a space or a CR: byte tests, no captures
  local minor, space, d1, d2, d3 = byte(line, 8, 12)
  if find(line, "HTTP/1.", 1, true) ~= 1 or not is_digit(minor) or space ~= 32 or not is_digit(d1)
      or not is_digit(d2) or not is_digit(d3) then
    fail("response", "malformed status line from " .. c.where)
  end
  local status = (d1 - 48) * 100 + (d2 - 48) * 10 + (d3 - 48)
  local after = byte(line, 13)
  if after and after ~= 32 and after ~= 13 then
    fail("response", "malformed status line from " .. c.where)
  end
  minor = minor - 48
  local headers, count, bytes, last = new_table(0, 8), 0, #line, nil
  while true do
    local cr
    line, cr = c:field_line(MAX_HEADER_BYTES, "response headers")
    bytes = bytes + #line + cr + 1
    if bytes > MAX_HEADER_BYTES then
      fail("response", "response headers larger than " .. MAX_HEADER_BYTES .. " bytes")
    end
    if line == "" then break end
    count = count + 1
    if count > MAX_HEADER_COUNT then fail("response", "more than " .. MAX_HEADER_COUNT .. " response headers") end
    local first = byte(line, 1)
    if first == 32 or first == 9 then
      -- obs-fold (RFC 9112 §5.2), which libcurl accepts too: the line continues the previous
      -- field, joined with one space. Before any field it is malformed.
      if not last then fail("response", "malformed response header from " .. c.where) end
      local more = line:match("^[ \t]*(.-)[ \t]*$")
      if more:find("[%z\r]") then fail("response", "malformed response header from " .. c.where) end
      if more ~= "" then
        headers[last] = headers[last] == "" and more or (headers[last] .. " " .. more)
      end
    else
      -- the name up to the first ":" (a plain search), the value after the blanks that follow it
      local colon = find(line, ":", 1, true)
      local name = colon and response_name(sub(line, 1, colon - 1))
      if not name then fail("response", "malformed response header from " .. c.where) end
      local from, b = colon + 1, byte(line, colon + 1)
      while b == 32 or b == 9 do
        from = from + 1
        b = byte(line, from)
      end
      local value = sub(line, from) -- "" when only blanks follow the colon
      -- trailing blanks: only when there are any (a pattern with a lazy .- walks the whole value)
      local last_byte = byte(value, -1)
      if last_byte == 32 or last_byte == 9 then value = match(value, "^(.-)[ \t]*$") end
      if find(value, "\0", 1, true) or find(value, "\r", 1, true) then
        fail("response", "malformed response header from " .. c.where)
      end
      if headers[name] then
        headers[name] = headers[name] .. ", " .. value
      else
        headers[name] = value
      end
      last = name
    end
  end
  return status, headers, minor
end

local function read_chunked(c, max, out)
  local total = 0
  while true do
    -- CRLF or a bare LF, as libcurl accepts
    local line = c:line(4096, "chunk size")
    if line:sub(-1) == "\r" then line = line:sub(1, -2) end
    local hex, ext = line:match("^(%x+)(.*)$")
    if not hex or not (ext == "" or ext:sub(1, 1) == ";" or ext:find("^[ \t]+;")) then
      fail("response", "malformed chunk size from " .. c.where)
    end
    hex = hex:gsub("^0+", "")
    if #hex > 8 then fail("response", "response body larger than " .. max .. " bytes") end
    local size = hex == "" and 0 or tonumber(hex, 16)
    if size == 0 then break end
    total = total + size
    if total > max then fail("response", "response body larger than " .. max .. " bytes") end
    c:exact(size, out, "body")
    local eol = {}
    c:exact(1, eol, "body")
    if eol[1] == "\r" then
      eol = {}
      c:exact(1, eol, "body")
    end
    if eol[1] ~= "\n" then fail("response", "malformed chunk from " .. c.where) end
  end
  -- trailers, then the empty line
  local count, bytes = 0, 0
  while true do
    local line = c:line(MAX_HEADER_BYTES, "trailers")
    if line:sub(-1) == "\r" then line = line:sub(1, -2) end
    if line == "" then return end
    count, bytes = count + 1, bytes + #line
    if line:find("\r", 1, true) or not line:find("^[^:]+:") or count > MAX_HEADER_COUNT
        or bytes > MAX_HEADER_BYTES then
      fail("response", "malformed trailers from " .. c.where)
    end
  end
end

-- a Content-Length that is not plain digits: a list of equal values, each with optional blanks
-- (a function apart: a loop in read_body would keep LuaJIT from compiling read_body)
local function content_length_list(c, cl)
  local length
  for item in cl:gmatch("[^,]+") do
    local v = item:match("^%s*(%d+)%s*$")
    if not v or #v > 15 or (length and tonumber(v) ~= length) then
      fail("response", "malformed content-length from " .. c.where)
    end
    length = tonumber(v)
  end
  return length
end

-- reads the body per RFC 9112 §6.3; returns the body and whether the framing allows reuse
local function read_body(c, method, status, headers, max)
  if method == "HEAD" or status == 204 or status == 304 or (status >= 100 and status < 200) then
    return "", true
  end
  local te = headers["transfer-encoding"]
  if te then
    local out = {}
    local codings = {}
    for item in te:gmatch("[^,]+") do codings[#codings + 1] = item:match("^%s*(.-)%s*$"):lower() end
    if #codings ~= 1 or codings[1] ~= "chunked" then
      fail("response", "unsupported transfer-encoding from " .. c.where)
    end
    read_chunked(c, max, out)
    -- a message with both Transfer-Encoding and Content-Length may be a smuggling attempt
    return concat(out), headers["content-length"] == nil
  end
  local cl = headers["content-length"]
  if cl then
    local length
    if #cl <= 15 and all_digits(cl) then
      length = tonumber(cl) -- the usual single value: digits only
    else
      length = content_length_list(c, cl)
    end
    if not length then fail("response", "malformed content-length from " .. c.where) end
    if length > max then fail("response", "response body larger than " .. max .. " bytes") end
    local pos = c.pos
    if #c.buf - pos + 1 >= length then -- all of it is in the buffer already
      c.pos = pos + length
      return sub(c.buf, pos, pos + length - 1), true
    end
    local out = {}
    c:exact(length, out, "body")
    return concat(out), true
  end
  local out = {}
  c:rest(out, max)
  local body = concat(out)
  if #body > max then fail("response", "response body larger than " .. max .. " bytes") end
  return body, false
end

-- sock:connect, with the name resolution bounded too: nginx's resolver answers within its own
-- resolver_timeout (30 s by default), which settimeouts does not cover. For a host name the
-- connect runs on a light thread raced against one that sleeps until the connect deadline.
-- (the race is a function of its own: a function that makes closures cannot be compiled by
-- LuaJIT, and the direct connect below runs on every request)
-- the bodies of the two light threads: module functions given their arguments by spawn, so a
-- request makes no closures
local function connect_body(sock, host, port, copts)
  return sock:connect(host, port, copts)
end

local function deadline_body(ngx, limit)
  ngx.sleep(math.max(0.001, limit))
  return Fail
end

local function raced_connect(ngx, sock, u, copts, limit)
  local spawned, connector = pcall(ngx.thread.spawn, connect_body, sock, u.connect_host, u.port, copts)
  if not spawned or not connector then return sock:connect(u.connect_host, u.port, copts) end
  local state = type(connector) == "thread" and coroutine.status(connector)
  if state == "zombie" or state == "dead" then -- done at once (a pooled connection): no race
    local _, ok, err = ngx.thread.wait(connector)
    return ok, err
  end
  local timed, timer = pcall(ngx.thread.spawn, deadline_body, ngx, limit)
  if not timed or not timer then
    local _, ok, err = ngx.thread.wait(connector)
    return ok, err
  end
  local done, ok, err = ngx.thread.wait(connector, timer)
  if ok == Fail then
    ngx.thread.kill(connector)
    return nil, "timeout"
  end
  ngx.thread.kill(timer)
  if not done then return nil, ok end
  return ok, err
end

local function connect(c, sock, u, copts)
  local ngx = c.ngx
  local limit = c.connect_ms > 0 and c.connect_ms / 1000 or nil
  if c.deadline then
    local left = c.deadline - now(ngx)
    if not limit or left < limit then limit = left end
  end
  if u.connect_ip or not limit or type(ngx.thread) ~= "table" then
    return sock:connect(u.connect_host, u.port, copts)
  end
  return raced_connect(ngx, sock, u, copts, limit)
end

-- one attempt: connect (or take a pooled connection), send, read. Returns res or raises a Fail.
local function attempt(self, p, c)
  local ngx, u = c.ngx, p.url
  local sock = ngx.socket.tcp()
  c.sock = sock
  c:arm()
  local ok, err = connect(c, sock, u, p.connect_opts)
  if not ok then
    if err == "timeout" then fail("timeout", "timed out connecting to " .. p.where) end
    if type(err) == "string" and err:find("no resolver defined", 1, true) then
      err = err .. " (add a `resolver` directive to nginx.conf)"
    end
    fail("network", "could not connect to " .. p.where .. ": " .. tostring(err))
  end
  local reused = sock:getreusedtimes() or 0
  c.reused = reused > 0
  c.retryable = c.reused and not p.fresh
  if u.scheme == "https" and not c.reused then
    c:arm()
    -- reused_session must stay nil, never false: in lua-resty-core 0.1.25 (Debian 12) a handshake
    -- that completes at once but fails verification makes sslhandshake() raise ("assertion
    -- failed") with nil, and report success with false.
    local called, session, herr = pcall(sock.sslhandshake, sock, nil, u.host, true)
    if not called then
      fail("tls", "TLS handshake with " .. p.where .. " failed: certificate verification failed")
    end
    if not session then
      if herr == "timeout" then fail("timeout", "timed out in the TLS handshake with " .. p.where) end
      fail("tls", "TLS handshake with " .. p.where .. " failed: " .. tostring(herr))
    end
  end
  c:arm()
  local sent, serr = sock:send(p.body and { p.head, p.body } or p.head)
  if not sent then
    if c.retryable and serr ~= "timeout" then fail("stale", "pooled connection was closed") end
    fail(sock_kind(serr), "sending the request to " .. p.where .. " failed: " .. tostring(serr))
  end

  local status, headers, minor
  status, headers, minor = read_head(c)
  if status < 200 and status ~= 101 then
    -- interim (1xx) responses: at most MAX_INTERIM skipped (a loop only here, off the usual path)
    for _ = 1, MAX_INTERIM do
      status, headers, minor = read_head(c)
      if status >= 200 or status == 101 then break end
    end
  end
  if status < 200 then fail("response", "too many interim responses from " .. p.where) end
  if status == 101 then fail("response", "unexpected protocol switch from " .. p.where) end
  c.status = status -- kept with a "response" failure from here on (a body over the cap), as libcurl does

  local body, framed = read_body(c, p.method, status, headers, self.opts.max_response_bytes)
  local keep = framed and not p.fresh and not c.closed and c.pos > #c.buf
    and not has_token(headers.connection, "close")
    and (minor >= 1 or has_token(headers.connection, "keep-alive"))
  if keep then
    local kept = sock:setkeepalive()
    if not kept then sock:close() end
  else
    sock:close()
  end
  c.sock = nil
  return { status = status, headers = headers, body = body, reused = reused }
end

-- one attempt on a connection of its own: res | nil, kind, message[, status]; kind "stale" when a
-- pooled connection turned out closed before any byte of the answer and the request may go again
local function try_once(self, p, ngx, deadline, connect_ms)
  local c = setmetatable({
    ngx = ngx, deadline = deadline, timeout = p.timeout, where = p.where, connect_ms = connect_ms,
    buf = "", pos = 1, got_bytes = false, closed = false,
  }, Conn)
  local ok, res = pcall(attempt, self, p, c)
  if ok then return res end
  if c.sock then c.sock:close() end
  if getmetatable(res) ~= Fail then
    -- a bug, not the network: keep the message (it never holds the query; p has none)
    return nil, "network", "ngx transport failed: " .. tostring(res)
  end
  if res.kind == "stale" then
    if p.fresh then return nil, "network", res.message end
    return nil, "stale"
  end
  return nil, res.kind, res.message, res.kind == "response" and c.status or nil
end

local function perform(self, p)
  if p.url_error then return nil, "network", p.url_error end
  local ngx = ngx_api()
  local deadline
  if p.timeout > 0 then deadline = now(ngx) + p.timeout end
  local connect_s = p.connect_timeout > 0 and p.connect_timeout or p.timeout
  if p.timeout > 0 and p.connect_timeout > 0 then connect_s = min(p.timeout, p.connect_timeout) end
  local connect_ms = connect_s > 0 and math.max(1, floor(connect_s * 1000)) or 0
  -- the first try, then (a pooled connection found closed) up to MAX_STALE_RETRIES more; the
  -- loop is off the usual path, so LuaJIT can compile this function
  local res, kind, msg, status = try_once(self, p, ngx, deadline, connect_ms)
  if kind ~= "stale" then return res, kind, msg, status end
  for _ = 1, MAX_STALE_RETRIES do
    res, kind, msg, status = try_once(self, p, ngx, deadline, connect_ms)
    if kind ~= "stale" then return res, kind, msg, status end
  end
  return nil, "network", "connection to " .. p.where .. " closed before the response"
end

---------------------------------------------------------------------------
-- the transport object

function M.new(opts)
  opts = opts or {}
  local fname = "instagram.ngx.new"
  if type(opts) ~= "table" then raise(fname, nil, "opts must be a table") end
  for _, key in ipairs({ "user_agent", "ca_file" }) do
    local v = opts[key]
    if v ~= nil and type(v) ~= "string" then raise(fname, nil, key .. " must be a string") end
  end
  -- as the C core: the User-Agent goes into the request head verbatim
  if opts.user_agent and opts.user_agent:find("[%z\r\n]") then
    raise(fname, nil, "user_agent contains CR, LF or NUL")
  end
  local o = {
    allow_http = opts.allow_http or false,
    ca_file = opts.ca_file,
    user_agent = opts.user_agent,
    timeout = opts.timeout or 10,
    connect_timeout = opts.connect_timeout or 5,
    max_response_bytes = opts.max_response_bytes or 8 * 1024 * 1024,
  }
  return setmetatable({ opts = o, origins = {}, origin_count = 0 }, T)
end

-- The prepared form of the transport's last request, when the same request table comes again with
-- the same fields and at most one header, unchanged (a client gives its usual GET again): no checks
-- and no request head made again. A prepared request is never changed once made.
local function prepared_again(self, req)
  local last = self.last
  if not last or last.req ~= req or req.url ~= last.url or req.method ~= last.method
      or req.body ~= last.body or req.timeout ~= last.timeout or req.connect_timeout ~= last.connect_timeout
      or req.headers ~= last.headers then
    return nil
  end
  local h = last.headers
  if h then
    local k, v = next(h)
    if k ~= last.header_name or v ~= last.header_value or (k ~= nil and next(h, k) ~= nil) then return nil end
  end
  return last.p
end

function T:request(req)
  local p = prepared_again(self, req)
  if not p then
    p = prepare(self, "request", nil, req)
    local h, k, v = req.headers, nil, nil
    if type(h) == "table" then k, v = next(h) end
    if k == nil or next(h, k) == nil then
      self.last = { req = req, p = p, url = req.url, method = req.method, body = req.body, timeout = req.timeout,
        connect_timeout = req.connect_timeout, headers = h, header_name = k, header_value = v }
    end
  end
  return perform(self, p)
end

function T:request_many(reqs, concurrency)
  local fname = "request_many"
  if type(reqs) ~= "table" then raise(fname, nil, "reqs must be an array of requests") end
  concurrency = concurrency or 8
  if type(concurrency) ~= "number" or concurrency ~= floor(concurrency) or concurrency < 1 then
    raise(fname, nil, "concurrency must be a positive integer")
  end
  local n = #reqs
  local prepared = {}
  for i = 1, n do prepared[i] = prepare(self, fname, i, reqs[i]) end -- all checks before any I/O

  local results, next_index = {}, 1
  local function worker()
    while next_index <= n do
      local i = next_index
      next_index = i + 1
      local res, kind, msg, status = perform(self, prepared[i])
      results[i] = res or { error = kind, message = msg, status = status }
    end
  end
  if n <= 1 or concurrency == 1 then
    worker()
    return results
  end
  local ngx = ngx_api()
  local threads = {}
  for k = 1, min(concurrency, n) do
    local spawned, th = pcall(ngx.thread.spawn, worker)
    if not spawned or not th then break end -- no light threads here: the rest runs below, in this thread
    threads[k] = th
  end
  for _, th in ipairs(threads) do
    local ok, err = ngx.thread.wait(th)
    if not ok then
      for i = 1, n do
        if not results[i] and i < next_index then
          results[i] = { error = "network", message = "ngx transport worker failed: " .. tostring(err) }
        end
      end
    end
  end
  worker() -- anything left if a worker died
  return results
end

function T.close()
  -- connections live in nginx's per-worker pool, nothing is held here; idempotent by construction
end

T.__close = T.close

M.Transport = T         -- the metatable of transports, for specs
M._parse_url = parse_url -- for specs
M._split_url = split_url -- for specs

return M
