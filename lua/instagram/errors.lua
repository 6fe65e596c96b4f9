-- Error objects and the one function that classifies a response (API.md "Error objects").
local json = require "instagram.json"

local M = {}
local type = type

local Error = {}
Error.__index = Error

local KINDS = {
  denied = true, callback = true, state = true, network = true, timeout = true,
  tls = true, http = true, api = true, response = true, signature = true, store = true, container = true,
}

-- 80002: too many calls to this Instagram account (Business Use Case limit, PLATFORM.md §4)
local RATE_LIMIT_CODES = { [4] = true, [17] = true, [32] = true, [613] = true, [80002] = true }
local BLOCK_SUBCODE = 2207051    -- "We restrict certain activity": a spam block, not a rate limit
local QUOTA_SUBCODE = 2207042    -- the publishing quota of the account is used up
local TRANSIENT_CODES = { [1] = true, [2] = true, [341] = true }
local TOKEN_CODES = { [190] = true, [102] = true }

local MAX_MESSAGE = 300
local MAX_RETRY_AFTER = 3600

function Error:__tostring()
  if self.kind == "api" then
    local code = tostring(self.code or "?")
    if self.subcode then code = code .. "/" .. tostring(self.subcode) end
    local kind = self.type and (" (" .. self.type .. ")") or ""
    return string.format("instagram: api error %s%s: %s", code, kind, self.message)
  elseif self.kind == "http" then
    return string.format("instagram: http error %s: %s", tostring(self.status or "?"), self.message)
  end
  return string.format("instagram: %s error: %s", self.kind, self.message)
end

local WINDOW = 12       -- a secret of LONG_SECRET+ characters: any WINDOW-character run of it is an echo
local LONG_SECRET = 20
local MAX_SCAN = 4096  -- longer texts are cut before the scan (the result is cut to MAX_MESSAGE anyway)
local REDACTED = "[redacted]"

local function url_encoded(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function json_escaped(s)
  local e = json.encode(s)
  return e and e:sub(2, -2) or s
end

-- the lower-cased WINDOW-character runs of every long secret, as sent and as echoed when encoded
local function windows_of(secrets)
  local set, any = {}, false
  for _, s in ipairs(secrets) do
    if type(s) == "string" and #s >= LONG_SECRET then
      for _, form in ipairs({ s, url_encoded(s), json_escaped(s), (json_escaped(s):gsub("\\/", "/")) }) do
        form = form:lower()
        for i = 1, #form - WINDOW + 1 do
          set[form:sub(i, i + WINDOW - 1)] = true
          any = true
        end
      end
    end
  end
  return any and set or nil
end

-- every run of text that contains a window of a secret becomes [redacted]
local function redact_windows(text, set)
  local lower = text:lower()
  local out, last, i = {}, 0, 1
  local n = #text
  while i <= n - WINDOW + 1 do
    if set[lower:sub(i, i + WINDOW - 1)] then
      local j = i + WINDOW - 1
      while j < n and set[lower:sub(j - WINDOW + 2, j + 1)] do j = j + 1 end
      out[#out + 1] = text:sub(last + 1, i - 1)
      out[#out + 1] = REDACTED
      last = j
      i = j + 1
    else
      i = i + 1
    end
  end
  out[#out + 1] = text:sub(last + 1)
  return table.concat(out)
end

-- Removes every secret from a text (exact copies, and for long secrets any 12-character run of it in
-- any case, URL-encoded or JSON-escaped), cuts it to a sane length, and keeps it printable.
-- windows: optional, windows_of(secrets) computed once for several texts.
local function scrub(message, secrets, windows)
  message = tostring(message or "")
  local cut = false
  if #message > MAX_SCAN then
    message, cut = message:sub(1, MAX_SCAN), true
  end
  if secrets then
    -- an echo may be percent-encoded character by character: look at the text as a reader
    -- decoding it would (which also makes the message plainer)
    if message:find("%%%x%x") then
      message = message:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
    end
    for _, s in ipairs(secrets) do
      if type(s) == "string" and #s >= 4 then
        local start = 1
        while true do
          local i, j = message:find(s, start, true)
          if not i then break end
          message = message:sub(1, i - 1) .. REDACTED .. message:sub(j + 1)
          start = i + #REDACTED
        end
      end
    end
    windows = windows or windows_of(secrets)
    if windows then message = redact_windows(message, windows) end
  end
  -- the cut may have left the start of an echo (under WINDOW characters) at the end
  if cut then message = message:sub(1, -WINDOW) end
  -- tokens and secrets that ride in URLs or forms, whatever their value
  message = message:gsub("([%?&]?[%w_]*access_token=)[^&%s\"']+", "%1[redacted]")
  message = message:gsub("(client_secret=)[^&%s\"']+", "%1[redacted]")
  message = message:gsub("(appsecret_proof=)[^&%s\"']+", "%1[redacted]")
  message = message:gsub("(code=)[^&%s\"']+", "%1[redacted]")
  message = message:gsub("[%z\1-\31\127]", " ")
  if cut or #message > MAX_MESSAGE then message = message:sub(1, MAX_MESSAGE) .. "..." end
  return message
end
M.scrub = scrub

-- new(kind, message[, fields[, secrets]])
function M.new(kind, message, fields, secrets)
  assert(KINDS[kind], "unknown error kind")
  local e = {}
  if fields then
    for k, v in pairs(fields) do e[k] = v end
  end
  e.kind = kind
  -- every text of the error: message, type, fbtrace_id, reason, description, ...
  local windows = secrets and windows_of(secrets)
  e.message = scrub(message, secrets, windows)
  for k, v in pairs(e) do
    if type(v) == "string" and k ~= "kind" and k ~= "message" then e[k] = scrub(v, secrets, windows) end
  end
  if kind == "network" or kind == "timeout" then e.transient = true end
  return setmetatable(e, Error)
end

function M.is_error(v)
  return getmetatable(v) == Error
end

local function number_field(v)
  if type(v) == "string" and v:match("^%-?%d+$") then v = tonumber(v) end
  if type(v) ~= "number" then return nil end
  if v == math.floor(v) then return math.floor(v) end -- an integer on Lua 5.4, not 190.0
  return v
end

local function string_field(v)
  if type(v) == "string" and v ~= "" then return v end
  if type(v) == "number" then return tostring(v) end
  return nil
end

local function header(res, name)
  local h = res.headers
  return h and (h[name] or h[name:lower()])
end

-- The X-Business-Use-Case-Usage header, decoded: {[account id] = {entry, ...}}. Meta documents an
-- array of entries per account; an object (one entry) is seen in the wild and accepted too.
function M.business_usage(decoded)
  if type(decoded) ~= "table" then return nil end
  local out = {}
  for id, entries in pairs(decoded) do
    if type(id) == "string" and type(entries) == "table" then
      if entries[1] == nil and next(entries) ~= nil then entries = { entries } end
      local list = {}
      for _, entry in ipairs(entries) do
        if type(entry) == "table" then list[#list + 1] = entry end
      end
      out[id] = list
    end
  end
  return out
end

-- Retry-After as delay-seconds (an HTTP-date or garbage is ignored), capped.
local function retry_after(res)
  local v = header(res, "retry-after")
  if type(v) == "string" and v:match("^%s*%d+%s*$") then
    local n = tonumber(v)
    if n > MAX_RETRY_AFTER then n = MAX_RETRY_AFTER end
    return n
  end
  -- BUC usage tells minutes until access is regained
  local buc = header(res, "x-business-use-case-usage")
  if type(buc) == "string" then
    local decoded = M.business_usage(json.decode(buc))
    local best
    if decoded then
      for _, entries in pairs(decoded) do
        for _, entry in ipairs(entries) do
          local minutes = number_field(entry.estimated_time_to_regain_access)
          if minutes and minutes > 0 and (not best or minutes * 60 > best) then best = minutes * 60 end
        end
      end
    end
    if best then return math.min(best, MAX_RETRY_AFTER) end
  end
  return nil
end

-- The Graph shape {"error":{...}} or the OAuth endpoint's flat {"error_type","code","error_message"}.
local function api_error_fields(body)
  if type(body) ~= "table" then return nil end
  local e = body.error
  if type(e) == "table" then
    return {
      message = string_field(e.message) or "unknown API error",
      code = number_field(e.code),
      subcode = number_field(e.error_subcode),
      type = string_field(e.type),
      fbtrace_id = string_field(e.fbtrace_id),
      is_transient = e.is_transient == true,
    }
  end
  if body.error_type ~= nil or body.error_message ~= nil then
    return {
      message = string_field(body.error_message) or "unknown API error",
      code = number_field(body.code),
      type = string_field(body.error_type),
    }
  end
  return nil
end

-- classify(res, secrets) -> decoded body, or nil, err. The one place that decides what a response means.
local byte, find = string.byte, string.find
local OPEN_BRACE = byte("{")

function M.classify(res, secrets)
  local status = res.status
  local text = res.body
  local body, decode_err = json.decode(text)
  -- the usual success: an object without an error field, nothing else to look at
  if status >= 200 and status < 300 and type(body) == "table" and body.error == nil
      and body.error_type == nil and body.error_message == nil
      and (byte(text, 1) == OPEN_BRACE or find(text, "^%s*{")) then
    return body
  end
  local fields = api_error_fields(body)
  if fields then
    local is_transient = fields.is_transient
    fields.is_transient = nil
    fields.status = status
    local e = M.new("api", fields.message, fields, secrets)
    e.token_invalid = TOKEN_CODES[e.code] or nil
    e.rate_limited = (RATE_LIMIT_CODES[e.code] or status == 429) or nil
    if e.subcode == BLOCK_SUBCODE then e.rate_limited, e.blocked = nil, true end
    if e.subcode == QUOTA_SUBCODE then e.quota = true end
    e.transient = (is_transient or TRANSIENT_CODES[e.code] or status >= 500) or nil
    e.retry_after = retry_after(res)
    return nil, e
  end
  if status >= 300 then
    local msg
    if status < 400 then
      msg = "unexpected redirect (not followed)"
    elseif decode_err then
      msg = "non-JSON error response"
    else
      msg = "error response without an error object"
    end
    local e = M.new("http", msg, { status = status }, secrets)
    e.transient = status >= 500 or nil
    e.rate_limited = status == 429 or nil
    e.retry_after = retry_after(res)
    return nil, e
  end
  if status < 200 then
    return nil, M.new("http", "unexpected informational response", { status = status }, secrets)
  end
  if decode_err then
    return nil, M.new("response", "response body is not valid JSON", { status = status }, secrets)
  end
  if type(body) ~= "table" or not res.body:match("^%s*{") then
    return nil, M.new("response", "response body is not a JSON object", { status = status }, secrets)
  end
  return body
end

return M
