-- Content publishing (PLATFORM.md §2): containers, their status, one media_publish per post,
-- and reconciliation when the answer to a publish was lost. Nothing here ever sends a second
-- media_publish for a container on its own: a post goes out at most once.
local errors = require "instagram.errors"

local M = {}

local TYPES = { IMAGE = true, REELS = true, STORIES = true, CAROUSEL = true, CAROUSEL_ITEM = true }
local MAX_CAPTION_CHARS, MAX_HASHTAGS, MAX_MENTIONS = 2200, 30, 20
local MIN_CHILDREN, MAX_CHILDREN = 2, 10
local SPEC_KEYS = {
  type = true, image_url = true, video_url = true, caption = true, alt_text = true, user_tags = true,
  children = true, cover_url = true, thumb_offset = true, share_to_feed = true, collaborators = true,
  audio_name = true, trial_params = true, location_id = true, user_id = true,
  -- for post_*: not sent
  on_container = true, wait = true, items = true, check_limit = true,
}
local WAIT_DEFAULTS = { initial = 2, max_interval = 60, budget = 900 }
local NOT_READY_SUBCODE = 2207027

-- What to do about a publishing error (PLATFORM.md §2.5), by subcode, then by code.
local ACTIONS = {
  [2207003] = "retry", [2207001] = "retry", [2207052] = "retry",
  [2207020] = "new_container", [2207032] = "new_container", [2207053] = "new_container",
  [2207027] = "wait",
  [2207051] = "blocked", [2207050] = "blocked",
  [2207042] = "quota",
  [2207057] = "fix_request", [2207004] = "fix_request", [2207005] = "fix_request",
  [2207009] = "fix_request", [2207028] = "fix_request", [2207040] = "fix_request",
  [2207026] = "fix_request", [2207082] = "fix_request",
}
local CODE_ACTIONS = { [9007] = "wait", [80002] = "retry", [4] = "retry", [17] = "retry", [32] = "retry",
  [613] = "retry", [36000] = "fix_request", [36001] = "fix_request", [36003] = "fix_request",
  [352] = "fix_request", [9004] = "retry", [25] = "blocked" }

-- classify(err) -> "retry" | "new_container" | "wait" | "blocked" | "quota" | "fix_request" | nil
function M.classify(err)
  if type(err) ~= "table" then return nil end
  return ACTIONS[err.subcode] or CODE_ACTIONS[err.code] or (err.transient and "retry") or nil
end

local function utf8_chars(s)
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end

local function count(s, pattern)
  local n = 0
  for _ in s:gmatch(pattern) do n = n + 1 end
  return n
end

local json = require "instagram.json"

-- the number of entries of t when it is an array without holes, else nil
local function array_length(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t and n or nil
end

-- the subcode a container's `status` text names: a whole 7-digit number (2207082), not the start
-- of a longer one
local function status_subcode(status)
  local found
  for digits in status:gmatch("%f[%d]%d+%f[%D]") do
    if #digits == 7 then
      if digits:sub(1, 4) == "2207" then return tonumber(digits) end
      found = found or tonumber(digits)
    end
  end
  return found
end

return setmetatable(M, { __call = function(_, Client, h)
  local function raise(fname, msg) h.raise(fname, msg) end

  local function encode_json(fname, what, v)
    local text = json.encode(v)
    if not text then raise(fname, what .. " cannot be encoded as JSON") end
    return text
  end

  local function check_https(fname, what, url)
    if type(url) ~= "string" or not url:match("^https://[%w%-%.]+[:/]?") or url:find("[%s%c\128-\255]") then
      raise(fname, what .. " must be an https:// URL without spaces or non-ASCII characters")
    end
    return url
  end

  local function check_caption(fname, caption)
    if type(caption) ~= "string" then raise(fname, "spec.caption must be a string") end
    if not json.valid_utf8(caption) then raise(fname, "spec.caption must be UTF-8 text") end
    if utf8_chars(caption) > MAX_CAPTION_CHARS then
      raise(fname, "spec.caption is longer than " .. MAX_CAPTION_CHARS .. " characters")
    end
    if count(caption, "#[^%s#@]") > MAX_HASHTAGS then
      raise(fname, "spec.caption has more than " .. MAX_HASHTAGS .. " hashtags")
    end
    if count(caption, "@[%w_.]") > MAX_MENTIONS then
      raise(fname, "spec.caption has more than " .. MAX_MENTIONS .. " @-mentions")
    end
    return caption
  end

  local function check_tags(fname, tags, image)
    if type(tags) ~= "table" or #tags == 0 then raise(fname, "spec.user_tags must be a non-empty array") end
    local out = {}
    for i, t in ipairs(tags) do
      local what = "spec.user_tags[" .. i .. "]"
      if type(t) ~= "table" or type(t.username) ~= "string" or not t.username:match("^[%w_.]+$") then
        raise(fname, what .. " must be {username = \"name\", x = 0..1, y = 0..1}")
      end
      local tag = { username = t.username }
      for _, axis in ipairs({ "x", "y" }) do
        local v = t[axis]
        if v ~= nil or image then
          if type(v) ~= "number" or not (v >= 0 and v <= 1) then
            raise(fname, what .. "." .. axis .. " must be from 0 to 1")
          end
          tag[axis] = v
        end
      end
      out[i] = tag
    end
    return encode_json(fname, "spec.user_tags", out)
  end

  -- spec -> the wire parameters of POST /{user}/media; raises on anything Meta would refuse
  local function container_params(fname, spec)
    if type(spec) ~= "table" then raise(fname, "spec must be a table") end
    for k in pairs(spec) do
      if not SPEC_KEYS[k] then raise(fname, "unknown spec field '" .. tostring(k) .. "'") end
    end
    local kind = spec.type
    if not TYPES[kind] then
      raise(fname, "spec.type must be IMAGE, REELS, STORIES, CAROUSEL or CAROUSEL_ITEM")
    end
    local p = {}
    if spec.image_url ~= nil and spec.video_url ~= nil then
      raise(fname, "spec takes image_url or video_url, not both")
    end
    if spec.image_url ~= nil then p.image_url = check_https(fname, "spec.image_url", spec.image_url) end
    if spec.video_url ~= nil then p.video_url = check_https(fname, "spec.video_url", spec.video_url) end
    local is_image = p.image_url ~= nil
    if kind == "IMAGE" and not is_image then raise(fname, "spec.image_url is required for IMAGE") end
    if kind == "REELS" and not p.video_url then raise(fname, "spec.video_url is required for REELS") end
    if (kind == "STORIES" or kind == "CAROUSEL_ITEM") and not (p.image_url or p.video_url) then
      raise(fname, "spec.image_url or spec.video_url is required for " .. kind)
    end
    if kind == "CAROUSEL" then
      if p.image_url or p.video_url then raise(fname, "a CAROUSEL takes children, not a media URL") end
      local children = spec.children
      if type(children) ~= "table" or not array_length(children) then
        raise(fname, "spec.children must be an array of container IDs")
      end
      if #children < MIN_CHILDREN or #children > MAX_CHILDREN then
        raise(fname, "a carousel has " .. MIN_CHILDREN .. " to " .. MAX_CHILDREN .. " children, not " .. #children)
      end
      local ids = {}
      for i, id in ipairs(children) do ids[i] = h.id_string(fname, "spec.children[" .. i .. "]", id) end
      p.children = table.concat(ids, ",")
      p.media_type = "CAROUSEL"
    elseif spec.children ~= nil then
      raise(fname, "spec.children is only for a CAROUSEL")
    end
    if kind == "REELS" or kind == "STORIES" then p.media_type = kind end
    if kind == "CAROUSEL_ITEM" then
      p.is_carousel_item = "true"
      if p.video_url then p.media_type = "VIDEO" end
    end
    if spec.caption ~= nil then
      if kind == "CAROUSEL_ITEM" or kind == "STORIES" then
        raise(fname, "spec.caption is not allowed on " .. kind)
      end
      p.caption = check_caption(fname, spec.caption)
    end
    if spec.alt_text ~= nil then
      if not is_image or kind == "STORIES" then raise(fname, "spec.alt_text is only for images") end
      if type(spec.alt_text) ~= "string" or spec.alt_text == "" then
        raise(fname, "spec.alt_text must be a non-empty string")
      end
      p.alt_text = spec.alt_text
    end
    if spec.user_tags ~= nil then
      if kind == "CAROUSEL" then raise(fname, "spec.user_tags go on the carousel's items") end
      p.user_tags = check_tags(fname, spec.user_tags, is_image and kind ~= "STORIES")
    end
    if spec.collaborators ~= nil then
      if type(spec.collaborators) ~= "table" or #spec.collaborators == 0 then
        raise(fname, "spec.collaborators must be a non-empty array of usernames")
      end
      for i, name in ipairs(spec.collaborators) do
        if type(name) ~= "string" or not name:match("^[%w_.]+$") then
          raise(fname, "spec.collaborators[" .. i .. "] must be a username")
        end
      end
      p.collaborators = encode_json(fname, "spec.collaborators", spec.collaborators)
    end
    if spec.cover_url ~= nil then
      if kind ~= "REELS" then raise(fname, "spec.cover_url is only for REELS") end
      p.cover_url = check_https(fname, "spec.cover_url", spec.cover_url)
    end
    if spec.thumb_offset ~= nil then
      local v = spec.thumb_offset
      if not p.video_url or type(v) ~= "number" or not (v >= 0 and v <= 2 ^ 31) or v ~= math.floor(v) then
        raise(fname, "spec.thumb_offset must be a whole number of milliseconds, on a video")
      end
      p.thumb_offset = string.format("%d", v)
    end
    if spec.share_to_feed ~= nil then
      if kind ~= "REELS" or type(spec.share_to_feed) ~= "boolean" then
        raise(fname, "spec.share_to_feed must be a boolean, on REELS")
      end
      p.share_to_feed = tostring(spec.share_to_feed)
    end
    if spec.audio_name ~= nil then
      if kind ~= "REELS" then raise(fname, "spec.audio_name is only for REELS") end
      p.audio_name = h.check_string(fname, "spec.audio_name", spec.audio_name)
    end
    if spec.trial_params ~= nil then
      if kind ~= "REELS" or type(spec.trial_params) ~= "table" then
        raise(fname, "spec.trial_params must be a table, on REELS")
      end
      p.trial_params = encode_json(fname, "spec.trial_params", spec.trial_params)
    end
    if spec.location_id ~= nil then p.location_id = h.id_string(fname, "spec.location_id", spec.location_id) end
    return p
  end

  local function user_path(fname, spec_or_opts)
    local user = spec_or_opts and spec_or_opts.user_id
    if user == nil then return "me" end
    return h.id_string(fname, "user_id", user)
  end

  local function backoff(self, attempt)
    self:_sleep(math.min(30, 2 ^ attempt))
  end

  -- POST /{user}/media: safe to retry (at worst an orphan container that expires in 24 h), so the
  -- transient and the flaky "could not fetch the media" errors are retried.
  function Client:create_container(token, spec)
    local fname = "ig:create_container"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    local params = container_params(fname, spec)
    local path = user_path(fname, spec) .. "/media"
    local attempt = 0
    while true do
      local body, err = self:_graph_write(token, "POST", path, params, true)
      if body then
        if type(body.id) ~= "string" then
          return nil, errors.new("response", "container response has no id", nil, self:_secrets(token))
        end
        return { id = body.id, upload_uri = type(body.uri) == "string" and body.uri or nil }
      end
      err.action = M.classify(err)
      if err.action ~= "retry" or err.transient or err.rate_limited or attempt >= self.retries then
        return nil, err
      end
      attempt = attempt + 1
      backoff(self, attempt)
    end
  end

  local STATUS_CODES = { EXPIRED = true, ERROR = true, FINISHED = true, IN_PROGRESS = true, PUBLISHED = true }
  local STATUS_PREFIXES = { ["error"] = "ERROR", ["expired"] = "EXPIRED", ["finished"] = "FINISHED",
    ["in progress"] = "IN_PROGRESS", ["published"] = "PUBLISHED" }

  function Client:container_status(token, id)
    local fname = "ig:container_status"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    id = h.id_string(fname, "id", id)
    local body, err = self:_graph_get(token, id, { fields = "status_code,status" })
    if not body then return nil, err end
    local code = type(body.status_code) == "string" and body.status_code:upper() or nil
    local status = type(body.status) == "string" and body.status or nil
    -- a status_code may be empty with the state only in `status` ("Error: Media download has
    -- failed…", "In Progress: Media is still being processed."): read it from there
    if not STATUS_CODES[code] and status then
      local words = status:lower():gsub("^%s+", ""):gsub("[%s_]+", " ")
      for prefix, value in pairs(STATUS_PREFIXES) do
        if words:sub(1, #prefix) == prefix and not words:sub(#prefix + 1, #prefix + 1):match("%a") then
          code = value
        end
      end
    end
    if not STATUS_CODES[code] then
      return nil, errors.new("response", "container status has no known status_code", nil, self:_secrets(token))
    end
    local subcode = status and status_subcode(status) or nil
    return { id = id, status_code = code, status = status, subcode = subcode }
  end

  local function container_error(self, token, st)
    local msg = st.status_code == "EXPIRED" and "container expired before it was published"
      or ("container failed: " .. (st.status or "ERROR"))
    local e = errors.new("container", msg, { status_code = st.status_code, subcode = st.subcode },
      self:_secrets(token))
    e.action = st.status_code == "EXPIRED" and "new_container" or ACTIONS[st.subcode] or "new_container"
    return e
  end

  -- opts: {initial, max_interval, budget} (publish also takes user_id); a misspelt key raises
  local function wait_options(fname, opts, what, extra)
    what = what or "opts"
    if opts ~= nil and type(opts) ~= "table" then raise(fname, what .. " must be a table") end
    for k in pairs(opts or {}) do
      if WAIT_DEFAULTS[k] == nil and k ~= extra then raise(fname, "unknown option " .. what .. "." .. tostring(k)) end
    end
    local o = {}
    for k, default in pairs(WAIT_DEFAULTS) do
      local v = (opts or {})[k]
      if v == nil then v = default end
      if type(v) ~= "number" or v ~= v or v < 0 or v == math.huge then
        raise(fname, what .. "." .. k .. " must be a non-negative number of seconds")
      end
      o[k] = v
    end
    return o
  end

  -- Polls the statuses of several containers until every one is FINISHED (or PUBLISHED), with
  -- growing intervals; one request per container per round, concurrently when there are several.
  local function wait_all(self, token, ids, o)
    local interval, slept = o.initial, 0
    local statuses = {}
    while true do
      local pending = {}
      for _, id in ipairs(ids) do
        local st = statuses[id]
        if not st or st.status_code == "IN_PROGRESS" then pending[#pending + 1] = id end
      end
      if #pending == 1 then
        local st, err = self:container_status(token, pending[1])
        if not st then return nil, err end
        statuses[pending[1]] = st
      elseif #pending > 1 then
        local calls = {}
        for i, id in ipairs(pending) do calls[i] = { "container_status", token, id } end
        for i, r in ipairs(self:batch(calls)) do
          if not r.ok then return nil, r.err end
          statuses[pending[i]] = r.value
        end
      end
      local waiting = false
      for _, id in ipairs(ids) do
        local st = statuses[id]
        if st.status_code == "ERROR" or st.status_code == "EXPIRED" then
          return nil, container_error(self, token, st)
        end
        if st.status_code == "IN_PROGRESS" then waiting = true end
      end
      if not waiting then return statuses end
      if slept + interval > o.budget then
        return nil, errors.new("timeout", string.format(
          "container still IN_PROGRESS after waiting %g s (budget %g s)", slept, o.budget))
      end
      self:_sleep(interval)
      slept = slept + interval
      interval = math.min(o.max_interval, math.max(interval * 2, 0.001))
    end
  end

  function Client:wait_container(token, id, opts)
    local fname = "ig:wait_container"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    id = h.id_string(fname, "id", id)
    local statuses, err = wait_all(self, token, { id }, wait_options(fname, opts))
    if not statuses then return nil, err end
    return statuses[id]
  end

  -- One media_publish. Retried only on "not ready yet" (9007/2207027): nothing was published then.
  function Client:publish(token, container_id, opts)
    local fname = "ig:publish"
    h.check_self(fname, self)
    local account = token
    token = h.token_string(fname, token)
    container_id = h.id_string(fname, "container_id", container_id)
    local o = wait_options(fname, opts, "opts", "user_id")
    local path = user_path(fname, opts) .. "/media_publish"
    local allowed, limited = self:_take_rate("publish", account)
    if not allowed then return nil, limited end
    local interval, slept = o.initial, 0
    while true do
      local body, err = self:_graph_write(token, "POST", path, { creation_id = container_id }, false)
      if body then
        if type(body.id) ~= "string" then
          return nil, errors.new("response", "publish response has no media id", { outcome_unknown = true },
            self:_secrets(token))
        end
        return { id = body.id }
      end
      err.action = M.classify(err)
      if err.subcode ~= NOT_READY_SUBCODE and err.code ~= 9007 then return nil, err end
      if slept + interval > o.budget then return nil, err end
      self:_sleep(interval)
      slept = slept + interval
      interval = math.min(o.max_interval, interval * 2)
    end
  end

  local RECONCILED = { PUBLISHED = "published", FINISHED = "ready", IN_PROGRESS = "pending",
    ERROR = "failed", EXPIRED = "expired" }

  function Client:reconcile(token, container_id)
    local fname = "ig:reconcile"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    local st, err = self:container_status(token, h.id_string(fname, "container_id", container_id))
    if not st then return nil, err end
    return RECONCILED[st.status_code]
  end

  function Client:publishing_limit(token, opts)
    local fname = "ig:publishing_limit"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    if opts ~= nil and type(opts) ~= "table" then raise(fname, "opts must be a table") end
    local body, err = self:_graph_get(token, user_path(fname, opts) .. "/content_publishing_limit",
      { fields = "quota_usage,config" })
    if not body then return nil, err end
    local entry = type(body.data) == "table" and body.data[1]
    local config = type(entry) == "table" and entry.config
    if type(entry) ~= "table" or type(entry.quota_usage) ~= "number" or type(config) ~= "table"
        or type(config.quota_total) ~= "number" then
      return nil, errors.new("response", "content_publishing_limit response has no quota", nil, self:_secrets(token))
    end
    local function int(v) return v and math.floor(v) end
    return { used = int(entry.quota_usage), total = int(config.quota_total),
      window = int(type(config.quota_duration) == "number" and config.quota_duration or 86400) }
  end

  -- create (children first, concurrently), wait, report the container, publish once, reconcile
  local function post(self, fname, token, spec, kind)
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    if type(spec) ~= "table" then raise(fname, "spec must be a table") end
    if spec.on_container ~= nil and type(spec.on_container) ~= "function" then
      raise(fname, "spec.on_container must be a function")
    end
    if spec.type ~= nil and spec.type ~= kind then raise(fname, "spec.type must be " .. kind .. " or absent") end
    local wait = wait_options(fname, spec.wait, "spec.wait")
    local base = {}
    for k, v in pairs(spec) do
      if k ~= "on_container" and k ~= "wait" and k ~= "items" and k ~= "check_limit" then base[k] = v end
    end
    base.type = kind
    local items = {}
    if kind == "CAROUSEL" then
      if type(spec.items) ~= "table" or not array_length(spec.items) then
        raise(fname, "spec.items must be an array of item specs")
      end
      if #spec.items < MIN_CHILDREN or #spec.items > MAX_CHILDREN then
        raise(fname, "a carousel has " .. MIN_CHILDREN .. " to " .. MAX_CHILDREN .. " items, not " .. #spec.items)
      end
      for i, item in ipairs(spec.items) do
        if type(item) ~= "table" then raise(fname, "spec.items[" .. i .. "] must be a table") end
        if item.type ~= nil and item.type ~= "CAROUSEL_ITEM" then
          raise(fname, "spec.items[" .. i .. "].type must be CAROUSEL_ITEM or absent")
        end
        local child = { type = "CAROUSEL_ITEM", user_id = spec.user_id }
        for k, v in pairs(item) do child[k] = v end
        container_params(fname, child) -- every item is checked before anything is sent
        items[i] = child
      end
      local placeholders = {}
      for i = 1, #items do placeholders[i] = "0" end
      base.children = placeholders
    elseif spec.items ~= nil then
      raise(fname, "spec.items is only for post_carousel")
    end
    container_params(fname, base)

    if spec.check_limit then
      local limit, err = self:publishing_limit(token, spec)
      if not limit then return nil, err end
      if limit.used >= limit.total then
        return nil, errors.new("api", string.format("publishing quota used up: %d of %d posts in %d s",
          limit.used, limit.total, limit.window), { quota = true, action = "quota" })
      end
    end

    if kind == "CAROUSEL" then
      local calls = {}
      for i, child in ipairs(items) do calls[i] = { "create_container", token, child } end
      local ids = {}
      for i, r in ipairs(self:batch(calls)) do
        if not r.ok then return nil, r.err end
        ids[i] = r.value.id
      end
      local done, err = wait_all(self, token, ids, wait)
      if not done then return nil, err end
      base.children = ids
    end

    local container, err = self:create_container(token, base)
    if not container then return nil, err end
    local id = container.id
    local st
    st, err = self:wait_container(token, id, wait)
    if not st then
      err.container_id = id
      return nil, err
    end
    if st.status_code == "PUBLISHED" then return { published = true, container_id = id } end
    if spec.on_container then spec.on_container(id) end

    local media
    media, err = self:publish(token, id, { user_id = spec.user_id, initial = wait.initial,
      max_interval = wait.max_interval, budget = wait.budget })
    if media then return { id = media.id, container_id = id } end
    err.container_id = id
    -- any failure but "not ready" (nothing was published) and the client's own rate limit (nothing
    -- was sent) is read back from the container: Instagram has answered errors (2207051, 2207001)
    -- for posts that went live (PLATFORM.md §2.5)
    if not err.local_limit and err.code ~= 9007 and err.subcode ~= NOT_READY_SUBCODE then
      local state = self:reconcile(token, id)
      err.reconciled = state
      if state == "published" then return { published = true, container_id = id } end
    end
    return nil, err
  end

  function Client:post_image(token, spec) return post(self, "ig:post_image", token, spec, "IMAGE") end
  function Client:post_reel(token, spec) return post(self, "ig:post_reel", token, spec, "REELS") end
  function Client:post_story(token, spec) return post(self, "ig:post_story", token, spec, "STORIES") end
  function Client:post_carousel(token, spec) return post(self, "ig:post_carousel", token, spec, "CAROUSEL") end

  for _, name in ipairs({ "create_container", "container_status", "reconcile", "publishing_limit" }) do
    h.BATCHABLE[name] = true
  end
end })
