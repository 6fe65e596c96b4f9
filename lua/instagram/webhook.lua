-- Webhooks (PLATFORM.md §1): the verification GET, delivery signatures, and normalized events.
-- Pure: nothing here touches ngx; instagram.resty.webhook is the nginx receiver built on it.
local core = require "instagram.core"
local errors = require "instagram.errors"
local json = require "instagram.json"

local M = {}

local MAX_CHALLENGE = 256
local MAX_VERIFY_VALUE = 4096
local SECONDS_BELOW = 1e11 -- a time under this is in seconds (1e11 ms is March 1973)
local DEDUPE_HASH_KEY = "instagram.webhook.dedupe_key"

local function raise(fname, msg)
  error(fname .. ": " .. msg, 0)
end

---------------------------------------------------------------------------
-- the verification request: GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…

-- One hub.* parameter. The request came from anyone, so nothing here raises: a bare key
-- (true from ngx.req.get_uri_args), a repeated key (an array) or a missing one is an error.
local function hub_param(args, key, status, secrets)
  local v = args[key]
  local function refuse(msg)
    return nil, errors.new("callback", msg, { status = status, param = key }, secrets)
  end
  if v == nil then return refuse("verification request has no '" .. key .. "'") end
  if v == true then return refuse("verification request has '" .. key .. "' without a value") end
  if type(v) == "table" then return refuse("verification request has more than one '" .. key .. "'") end
  if type(v) ~= "string" then return refuse("verification request parameter '" .. key .. "' is not a string") end
  if #v > MAX_VERIFY_VALUE then return refuse("verification request parameter '" .. key .. "' is too long") end
  return v
end

-- challenge(args, verify_token) -> the challenge to echo as text/plain, or nil, err (kind
-- "callback", err.status the status to answer: 403 for the mode or token, 400 for the challenge)
function M.challenge(args, verify_token)
  local fname = "instagram.webhook.challenge"
  if type(verify_token) ~= "string" or verify_token == "" then
    raise(fname, "verify_token must be a non-empty string")
  end
  if type(args) == "string" then
    args = core.parse_query(args)
  elseif type(args) ~= "table" then
    raise(fname, "args must be a table of query args (ngx.req.get_uri_args()) or a query string")
  end
  local secrets = { verify_token }
  local mode, err = hub_param(args, "hub.mode", 403, secrets)
  if not mode then return nil, err end
  if mode ~= "subscribe" then
    return nil, errors.new("callback", "verification request hub.mode is not 'subscribe'",
      { status = 403, param = "hub.mode" }, secrets)
  end
  local token
  token, err = hub_param(args, "hub.verify_token", 403, secrets)
  if not token then return nil, err end
  if not core.constant_time_equal(token, verify_token) then
    return nil, errors.new("callback", "verification request hub.verify_token does not match",
      { status = 403, param = "hub.verify_token" }, secrets)
  end
  local challenge
  challenge, err = hub_param(args, "hub.challenge", 400, secrets)
  if not challenge then return nil, err end
  -- echoed back: only word characters, so nothing reflected can be markup
  if #challenge > MAX_CHALLENGE or not challenge:match("^[%w%-_]+$") then
    return nil, errors.new("callback", "verification request hub.challenge is not 1 to 256 letters, digits, - or _",
      { status = 400, param = "hub.challenge" }, secrets)
  end
  return challenge
end

---------------------------------------------------------------------------
-- delivery signatures: X-Hub-Signature-256 only

local SIGNATURE_MESSAGES = {
  no_secret = "no webhook secret is configured, so every delivery is refused",
  missing = "delivery has no X-Hub-Signature-256 header",
  sha1 = "delivery is signed with sha1 only (X-Hub-Signature); only X-Hub-Signature-256 is accepted",
  malformed = "X-Hub-Signature-256 is not 'sha256=' followed by 64 lower-case hex digits",
  mismatch = "X-Hub-Signature-256 does not match the body under any configured secret",
  hmac = "HMAC computation failed",
}

-- The value of a header from a request-headers table, by case-insensitive name.
local function header_of(headers, name)
  local v = rawget(headers, name)
  if v ~= nil then return v end
  for k, value in pairs(headers) do
    if type(k) == "string" and k:lower() == name then return value end
  end
  return nil
end

-- The signature text to check, from the header value or a request-headers table.
local function signature_text(fname, sig)
  if sig == nil then return "" end
  if type(sig) == "string" then return sig end
  if type(sig) ~= "table" then
    raise(fname, "signature_header must be the X-Hub-Signature-256 value, nil, or a table of request headers")
  end
  local v = header_of(sig, "x-hub-signature-256")
  if v == nil then
    -- tell "signed the old way" from "not signed at all"
    return header_of(sig, "x-hub-signature") ~= nil and "sha1=" or ""
  end
  if type(v) ~= "string" then return "repeated" end -- repeated header: not Meta's, refused as malformed
  return v
end

-- verify(raw_body, signature_header, secrets) -> true, index of the secret that matched, or
-- nil, err (kind "signature", err.reason one of no_secret, missing, sha1, malformed, mismatch)
function M.verify(raw_body, signature_header, secrets)
  local fname = "instagram.webhook.verify"
  if type(raw_body) ~= "string" then raise(fname, "raw_body must be the request body as received (a string)") end
  local list
  if type(secrets) == "string" then
    list = { secrets }
  elseif type(secrets) == "table" then
    list = {}
    for i, s in ipairs(secrets) do list[i] = s end
    for k in pairs(secrets) do
      -- a nil in the list ({ os.getenv("NEW"), os.getenv("OLD") }) or a named key would hide a secret
      if type(k) ~= "number" or k < 1 or k > #list or k ~= math.floor(k) then
        raise(fname, "secrets must be an array of app secrets without holes (secrets[" .. #list + 1 .. "] is nil)")
      end
    end
  else
    raise(fname, "secrets must be an array of app secrets or one secret string")
  end
  for i, s in ipairs(list) do
    if type(s) ~= "string" or s == "" then raise(fname, "secrets[" .. i .. "] must be a non-empty string") end
  end
  local text = signature_text(fname, signature_header)
  local index, reason = core.webhook_verify(raw_body, text, list)
  if not index then
    local message = SIGNATURE_MESSAGES[reason] or "signature refused"
    if reason == "malformed" then
      -- the header is not secret: say what is wrong with it
      if text:match("^sha256=") and #text == 71 and text:find("[A-F]") and not text:find("[^%x]", 8) then
        message = "X-Hub-Signature-256 has upper-case hex digits; Meta sends lower case"
      elseif #text == 64 and not text:find("[^%x]") then
        message = "X-Hub-Signature-256 has no 'sha256=' prefix"
      end
    end
    return nil, errors.new("signature", message, { reason = reason }, list)
  end
  return true, index
end

---------------------------------------------------------------------------
-- events: one normalized table per change or messaging item

local function str(v)
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

local function id(v)
  return json.id(v)
end

local function time_ms(t)
  if type(t) == "string" and t:match("^%d+$") then t = tonumber(t) end
  if type(t) ~= "number" or t ~= t or t < 0 or t >= 2 ^ 53 then return nil end
  if t < SECONDS_BELOW then t = t * 1000 end
  return math.floor(t)
end

local function tbl(v)
  return type(v) == "table" and v or {}
end

local function event(kind, account_id, time, raw, field)
  return { kind = kind, account_id = account_id, time_ms = time_ms(time), raw = raw, field = field }
end

-- messages, reactions, postbacks, seen: the entry.messaging[] items (and the same value in the
-- changes form, which the dashboard's test button sends)
local function messaging_event(account_id, entry_time, item, field, raw)
  local time = item.timestamp
  if time == nil or time == json.null then time = entry_time end
  local e = event("unknown", account_id, time, raw, field)
  e.from_id = id(tbl(item.sender).id)
  e.to_id = id(tbl(item.recipient).id)
  if type(item.message) == "table" then
    local m = item.message
    e.kind = "message"
    e.mid = str(m.mid)
    e.text = str(m.text)
    e.is_echo = m.is_echo == true or nil
    e.is_deleted = m.is_deleted == true or nil -- the sender unsent the message with this mid
  elseif type(item.reaction) == "table" then
    local r = item.reaction
    e.kind = "reaction"
    e.mid = str(r.mid)
    e.action = str(r.action)
    e.reaction = str(r.reaction)
    e.emoji = str(r.emoji)
  elseif type(item.postback) == "table" then
    local p = item.postback
    e.kind = "postback"
    e.mid = str(p.mid)
    e.text = str(p.title)
    e.payload = str(p.payload)
  elseif type(item.read) == "table" then
    e.kind = "seen"
    e.mid = str(item.read.mid)
  end
  return e
end

local CHANGE_KINDS = {
  comments = "comment", live_comments = "live_comment", mentions = "mention", story_insights = "story_insights",
}
local MESSAGING_FIELDS = {
  messages = true, message_reactions = true, messaging_postbacks = true, messaging_seen = true,
}

-- one {field, value} change, from entry.changes[] or written straight into the entry
local function change_event(account_id, entry_time, change)
  local field, value = str(change.field), change.value
  if type(value) ~= "table" then return event("unknown", account_id, entry_time, change, field) end
  if MESSAGING_FIELDS[field] then return messaging_event(account_id, entry_time, value, field, change) end
  local e = event(CHANGE_KINDS[field] or "unknown", account_id, entry_time, change, field)
  if e.kind == "comment" or e.kind == "live_comment" then
    local from, media = tbl(value.from), tbl(value.media)
    e.id = id(value.id) or id(value.comment_id)
    e.parent_id = id(value.parent_id)
    e.from_id = id(from.id)
    e.from_username = str(from.username)
    e.text = str(value.text)
    e.media_id = id(media.id) or id(value.media_id)
    e.media_product_type = str(media.media_product_type)
  elseif e.kind == "mention" then
    e.id = id(value.comment_id)
    e.media_id = id(value.media_id)
  elseif e.kind == "story_insights" then
    e.media_id = id(value.media_id)
  end
  return e
end

-- v when it is a decoded JSON array (keys 1..n only; an empty object decodes the same as []), else nil
local function array(v)
  if type(v) ~= "table" then return nil end
  local n = #v
  for k in pairs(v) do
    if type(k) ~= "number" or k < 1 or k > n or k ~= math.floor(k) then return nil end
  end
  return v
end

-- present in the JSON: neither absent nor null
local function present(v)
  return v ~= nil and v ~= json.null
end

local function entry_events(out, entry)
  if type(entry) ~= "table" then
    out[#out + 1] = event("unknown", nil, nil, entry)
    return
  end
  local account_id, time = id(entry.id), entry.time
  local changes, messaging = array(entry.changes), array(entry.messaging)
  local unwrapped = entry.field ~= nil and entry.value ~= nil
  if not changes and not messaging and not unwrapped then
    -- standby (handover protocol) and anything new: passed through, never dropped
    out[#out + 1] = event("unknown", account_id, time, entry)
    return
  end
  for _, change in ipairs(changes or {}) do
    out[#out + 1] = type(change) == "table" and change_event(account_id, time, change)
      or event("unknown", account_id, time, change)
  end
  for _, item in ipairs(messaging or {}) do
    out[#out + 1] = type(item) == "table" and messaging_event(account_id, time, item, nil, item)
      or event("unknown", account_id, time, item)
  end
  -- a changes or messaging that is there but not an array: kept whole, never dropped
  if present(entry.changes) and not changes then out[#out + 1] = event("unknown", account_id, time, entry.changes) end
  if present(entry.messaging) and not messaging then
    out[#out + 1] = event("unknown", account_id, time, entry.messaging)
  end
  -- Meta's Instagram-Login example puts field/value straight into the entry
  if unwrapped then out[#out + 1] = change_event(account_id, time, entry) end
end

-- events(raw_body) -> an iterator of normalized events (for ev in it do … end), or nil, err
-- (kind "response") when the body is not a JSON object (or an array of them). Anything unrecognized inside the body is
-- an event of kind "unknown" carrying it in `raw`, never an error.
function M.events(raw_body)
  local fname = "instagram.webhook.events"
  if type(raw_body) ~= "string" then raise(fname, "raw_body must be the request body (a string)") end
  local doc, derr = json.decode(raw_body)
  if derr then
    return nil, errors.new("response", derr == "invalid UTF-8" and "webhook body is not valid UTF-8"
      or "webhook body is not valid JSON")
  end
  local envelopes = { doc }
  if raw_body:match("^%s*%[") then
    envelopes = doc -- some of Meta's examples show an array of envelopes
  elseif type(doc) ~= "table" then
    return nil, errors.new("response", "webhook body is not a JSON object")
  end
  json.normalize_ids(doc)
  local list = {}
  for _, envelope in ipairs(envelopes) do
    if type(envelope) == "table" and array(envelope.entry) then
      for _, entry in ipairs(envelope.entry) do entry_events(list, entry) end
    else
      list[#list + 1] = event("unknown", nil, nil, envelope)
    end
  end
  local i = 0
  return function()
    i = i + 1
    return list[i]
  end
end

---------------------------------------------------------------------------
-- dedupe keys

-- Canonical bytes of a decoded JSON value: sorted keys, so the same data gives the same bytes in
-- every process (LuaJIT randomises table order per process).
local function canonical(v, out, depth)
  local t = type(v)
  if t == "table" and depth < 64 then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b)
      local ta, tb = type(a), type(b)
      if ta ~= tb then return ta < tb end
      if ta == "string" or ta == "number" then return a < b end
      return false
    end)
    out[#out + 1] = "{"
    for _, k in ipairs(keys) do
      canonical(k, out, depth + 1)
      canonical(v[k], out, depth + 1)
    end
    out[#out + 1] = "}"
  elseif t == "string" then
    out[#out + 1] = "s" .. #v .. ":" .. v
  elseif t == "number" then
    out[#out + 1] = (v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53) and string.format("n%d;", v)
      or string.format("n%.17g;", v)
  else
    out[#out + 1] = t == "boolean" and tostring(v) or "null"
  end
end

-- What makes an event the same event when Meta sends it again.
local function identity(e)
  local k = e.kind
  if (k == "comment" or k == "live_comment") and e.id then return { e.id } end
  if k == "mention" and (e.id or e.media_id) then return { e.id or "", e.media_id or "" } end
  -- an unsending carries the mid of the message it removes: a separate event
  if k == "message" and e.mid then return e.is_deleted and { e.mid, "deleted" } or { e.mid } end
  if k == "postback" and e.mid then return { e.mid, e.payload or "" } end
  if k == "reaction" and e.mid then
    return { e.mid, e.from_id or "", e.action or "", e.reaction or "", e.emoji or "", e.time_ms or "" }
  end
  if k == "seen" and e.mid then return { e.mid, e.from_id or "" } end
  -- the rest (unknown, story insights, anything without its ID): the whole item and its time
  return { e.time_ms or "", e.raw == nil and "" or e.raw }
end

-- dedupe_key(event) -> a stable string, the same for the same event in every delivery, process
-- and host; at most 100 bytes, safe as a shared-dict or Redis key
function M.dedupe_key(e)
  local fname = "instagram.webhook.dedupe_key"
  if type(e) ~= "table" or type(e.kind) ~= "string" then
    raise(fname, "event must be an event from instagram.webhook.events")
  end
  local out = {}
  canonical({ e.kind, e.field or "", e.account_id or "", identity(e) }, out, 0)
  return "ig:webhook:" .. e.kind:gsub("[^%w_]", "") .. ":" .. core.hmac_sha256_hex(DEDUPE_HASH_KEY, table.concat(out))
end

return M
