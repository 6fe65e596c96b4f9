-- Comments and moderation (PLATFORM.md §3.1). Hiding, deleting and switching comments on or off
-- are idempotent and retried; a reply or a private reply is sent once, and a lost answer says
-- err.outcome_unknown.
local errors = require "instagram.errors"
local json = require "instagram.json"

local DEFAULT_COMMENT_FIELDS = { "id", "text", "timestamp", "username", "like_count", "hidden", "parent_id" }
local PRIVATE_REPLY_WINDOW = 7 * 86400
local WINDOW_SUBCODE = 2534022 -- "This message is sent outside of allowed window."
local MAX_TEXT_BYTES = 8000

-- "2017-08-31T19:16:02+0000" (Graph's form; also with "Z" or "+00:00") -> Unix seconds, or nil
local function timestamp_seconds(ts)
  if type(ts) ~= "string" then return nil end
  local y, mo, d, hh, mm, ss, zone = ts:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil end
  local offset = 0
  if zone ~= "Z" and zone ~= "" then
    local sign, zh, zm = zone:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(zh) * 3600 + tonumber(zm) * 60) * (sign == "-" and -1 or 1)
  end
  -- days from the civil date (proleptic Gregorian), independent of the local time zone
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (mo + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  local days = era * 146097 + doe - 719468
  return days * 86400 + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss) - offset
end

return function(Client, h)
  local function check_text(fname, text)
    h.check_string(fname, "text", text)
    if #text > MAX_TEXT_BYTES then h.raise(fname, "text is longer than " .. MAX_TEXT_BYTES .. " bytes") end
    return text
  end

  local function options(fname, opts)
    if opts ~= nil and type(opts) ~= "table" then h.raise(fname, "opts must be a table") end
    return opts or {}
  end

  -- A page of top-level comments. An empty first page of a media whose comments_count says
  -- otherwise is flagged maybe_restricted (development mode, restricted users), not passed off
  -- as "no comments".
  function Client:comments(token, media_id, opts)
    local fname = "ig:comments"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    media_id = h.id_string(fname, "media_id", media_id)
    opts = options(fname, opts)
    local params = h.page_params(fname, opts, DEFAULT_COMMENT_FIELDS)
    local page, err = h.graph_page(self, fname, token, media_id .. "/comments", params)
    if not page then return nil, err end
    if #page.data == 0 and not params.after and not params.before then
      local media = self:_graph_get(token, media_id, { fields = "comments_count" })
      local n = type(media) == "table" and tonumber(media.comments_count)
      if n and n > 0 then page.maybe_restricted = true end
    end
    return page
  end

  function Client:replies(token, comment_id, opts)
    local fname = "ig:replies"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    comment_id = h.id_string(fname, "comment_id", comment_id)
    local params = h.page_params(fname, options(fname, opts), DEFAULT_COMMENT_FIELDS)
    return h.graph_page(self, fname, token, comment_id .. "/replies", params)
  end

  function Client:each_comment(token, media_id, opts)
    h.check_self("ig:each_comment", self)
    return h.each_item(self, self:comments(token, media_id, opts))
  end

  function Client:each_reply(token, comment_id, opts)
    h.check_self("ig:each_reply", self)
    return h.each_item(self, self:replies(token, comment_id, opts))
  end

  local function id_result(self, token, body)
    if type(body.id) ~= "string" and type(body.message_id) ~= "string" then
      return nil, errors.new("response", "reply response has no id", { outcome_unknown = true },
        self:_secrets(token))
    end
    return { id = body.id or body.message_id, recipient_id = body.recipient_id }
  end

  function Client:reply(token, comment_id, text)
    local fname = "ig:reply"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    comment_id = h.id_string(fname, "comment_id", comment_id)
    local body, err = self:_graph_write(token, "POST", comment_id .. "/replies",
      { message = check_text(fname, text) }, false)
    if not body then return nil, err end
    return id_result(self, token, body)
  end

  -- comment: its ID, or the comment table (with `timestamp`), so that a reply past the 7-day
  -- window is refused here rather than by Instagram
  function Client:private_reply(token, comment, text, opts)
    local fname = "ig:private_reply"
    h.check_self(fname, self)
    local account = token
    token = h.token_string(fname, token)
    local comment_id, timestamp = comment, nil
    if type(comment) == "table" then comment_id, timestamp = comment.id, comment.timestamp end
    comment_id = h.id_string(fname, "comment_id", comment_id)
    text = check_text(fname, text)
    opts = options(fname, opts)
    local seconds = timestamp_seconds(timestamp)
    if seconds and self:_now() - seconds > PRIVATE_REPLY_WINDOW then
      return nil, errors.new("api", "a private reply must be sent within 7 days of the comment",
        { window_expired = true })
    end
    local user = opts.user_id == nil and "me" or h.id_string(fname, "opts.user_id", opts.user_id)
    local allowed, limited = self:_take_rate("private_reply", account)
    if not allowed then return nil, limited end
    local body, err = self:_graph_write(token, "POST", user .. "/messages", {
      recipient = json.encode({ comment_id = comment_id }),
      message = json.encode({ text = text }),
    }, false)
    if not body then
      if err.subcode == WINDOW_SUBCODE then err.window_expired = true end
      return nil, err
    end
    return id_result(self, token, body)
  end

  local function success(self, token, body)
    if body.success == false then
      return nil, errors.new("response", "Instagram answered success = false", nil, self:_secrets(token))
    end
    return true
  end

  function Client:hide_comment(token, id, hidden)
    local fname = "ig:hide_comment"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    id = h.id_string(fname, "id", id)
    if type(hidden) ~= "boolean" then h.raise(fname, "hidden must be a boolean") end
    local body, err = self:_graph_write(token, "POST", id, { hide = tostring(hidden) }, true)
    if not body then return nil, err end
    return success(self, token, body)
  end

  -- Retried; when a retry finds the comment gone, the earlier try deleted it: success.
  function Client:delete_comment(token, id)
    local fname = "ig:delete_comment"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    id = h.id_string(fname, "id", id)
    local body, err = self:_graph_write(token, "DELETE", id, {}, true)
    if not body then
      if (err.attempts or 1) > 1 and err.code == 100 and tostring(err.message):find("does not exist", 1, true) then
        return true
      end
      return nil, err
    end
    return success(self, token, body)
  end

  function Client:set_comments_enabled(token, media_id, enabled)
    local fname = "ig:set_comments_enabled"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    media_id = h.id_string(fname, "media_id", media_id)
    if type(enabled) ~= "boolean" then h.raise(fname, "enabled must be a boolean") end
    local body, err = self:_graph_write(token, "POST", media_id, { comment_enabled = tostring(enabled) }, true)
    if not body then return nil, err end
    return success(self, token, body)
  end

  for _, name in ipairs({ "comments", "replies", "reply", "private_reply", "hide_comment", "delete_comment",
    "set_comments_enabled" }) do
    h.BATCHABLE[name] = true
  end
end
