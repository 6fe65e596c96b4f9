-- Media, carousel children, pagination and any Graph GET (INSTAGRAM.md §5.4–§5.7).
local core = require "instagram.core"
local errors = require "instagram.errors"
local json = require "instagram.json"

local DEFAULT_MEDIA_FIELDS = {
  "id", "caption", "media_type", "media_url", "permalink", "thumbnail_url", "timestamp", "username",
}
local DEFAULT_CHILD_FIELDS = { "id", "media_type", "media_url", "thumbnail_url", "timestamp" }
local MAX_PAGES = 10000

return function(Client, h)
  -- What next_page needs to know about a page; pages stay plain, JSON-encodable tables.
  local contexts = setmetatable({}, { __mode = "k" })

  local DEFAULT_PORT = { http = "80", https = "443" }

  -- "https://host:port/base" -> origin "https://host:443", base path "/base"
  local function split_url(url)
    local scheme, authority, rest = url:match("^(%a[%w+.-]*)://([^/?#]+)(.*)$")
    if not scheme then return nil end
    scheme = scheme:lower()
    local host, port = authority:match("^(.-):(%d+)$")
    if not host then host, port = authority, DEFAULT_PORT[scheme] end
    if not port or authority:find("@", 1, true) then return nil end
    return scheme .. "://" .. host:lower() .. ":" .. port, (rest:match("^[^?#]*") or "")
  end

  local function page_of(self, fname, token, path, params, raw_query)
    local body, res = self:_graph_get(token, path, params, raw_query)
    if not body then return nil, res end
    if type(body.data) ~= "table" then
      return nil, errors.new("response", "Graph response has no data array", { status = res.status },
        self:_secrets(token))
    end
    contexts[body] = { token = token, path = path, params = params, fname = fname }
    return body
  end

  local function check_limit(fname, limit)
    if limit == nil then return nil end
    if type(limit) ~= "number" or limit ~= math.floor(limit) or limit < 1 or limit > 10000 then
      h.raise(fname, "opts.limit must be a positive integer")
    end
    return string.format("%d", limit)
  end

  local function check_cursor(fname, key, v)
    if v == nil then return nil end
    return h.check_string(fname, "opts." .. key, v)
  end

  -- the query of one page of an edge: fields, limit and the after/before cursors from opts
  local function page_params(fname, opts, default_fields)
    return {
      fields = h.fields_string(fname, opts.fields, default_fields),
      limit = check_limit(fname, opts.limit),
      after = check_cursor(fname, "after", opts.after),
      before = check_cursor(fname, "before", opts.before),
    }
  end

  function Client:media(token, opts)
    local fname = "ig:media"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    if opts ~= nil and type(opts) ~= "table" then h.raise(fname, "opts must be a table") end
    opts = opts or {}
    local user_id = opts.user_id == nil and "me" or h.id_string(fname, "opts.user_id", opts.user_id)
    return page_of(self, fname, token, user_id .. "/media", page_params(fname, opts, DEFAULT_MEDIA_FIELDS))
  end

  function Client:children(token, media_id, fields)
    local fname = "ig:children"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    local id = h.id_string(fname, "media_id", media_id)
    return page_of(self, fname, token, id .. "/children", {
      fields = h.fields_string(fname, fields, DEFAULT_CHILD_FIELDS),
    })
  end

  local function has_value(v)
    return v ~= nil and v ~= json.null and v ~= ""
  end

  -- A link's path, relative to the Graph base, as decoded segments joined by "/" (the request
  -- encodes each segment once more), or nil when a segment is, or decodes to, "." or "..", or
  -- holds a "/", a NUL or a control character: such a link is never followed (ig:get's rule).
  local function link_path(path)
    local out = {}
    for segment in path:gmatch("[^/]+") do
      local d = core.url_decode(segment)
      if d == "." or d == ".." or d:find("[/%z\1-\31\127]") then return nil end
      out[#out + 1] = d
    end
    return table.concat(out, "/")
  end

  -- A link's query as sent, without its access_token and appsecret_proof: each part is decoded
  -- once and encoded again, so escapes are not encoded twice, and a literal + stays a +.
  local function link_query(query)
    local kept = {}
    for pair in query:gmatch("[^&]+") do
      local key = pair:match("^[^=]*")
      local name = core.url_decode(key, true)
      if name ~= "access_token" and name ~= "appsecret_proof" and name ~= "" then
        local parts = {}
        for piece in (pair .. "+"):gmatch("([^+]*)%+") do
          parts[#parts + 1] = piece:gsub("[^=]+", function(x) return core.url_encode(core.url_decode(x)) end)
        end
        kept[#kept + 1] = table.concat(parts, "+")
      end
    end
    return table.concat(kept, "&")
  end

  -- next_page(page) -> the next page, nil at the end, or nil, err.
  function Client:next_page(page)
    local fname = "ig:next_page"
    h.check_self(fname, self)
    local ctx = type(page) == "table" and contexts[page]
    if not ctx then h.raise(fname, "page must be a page returned by this client") end
    local paging = type(page.paging) == "table" and page.paging or {}
    local next_url = paging.next
    if not has_value(next_url) then return nil end
    local cursors = type(paging.cursors) == "table" and paging.cursors or {}

    local path, params, raw_query
    local origin, next_path
    if type(next_url) == "string" then origin, next_path = split_url(next_url) end
    local graph_origin, graph_base = split_url(self.endpoints.graph)
    -- under the base path: "/ig" or "/ig/...", never "/igx/..."
    local under_base = origin and next_path:sub(1, #graph_base) == graph_base
      and (#next_path == #graph_base or next_path:sub(#graph_base + 1, #graph_base + 1) == "/")
    if origin and origin == graph_origin and under_base and link_path(next_path:sub(#graph_base + 1)) then
      -- same Graph host: follow the link's path and parameters, but with our own token
      path = link_path(next_path:sub(#graph_base + 1))
      params = {}
      local query = next_url:match("%?([^#]*)") or ""
      for k, v in pairs(core.parse_query(query)) do
        if k ~= "access_token" and k ~= "appsecret_proof" and type(v) == "string" then params[k] = v end
      end
      raw_query = link_query(query)
    elseif has_value(cursors.after) and type(cursors.after) == "string" then
      -- a link to anywhere else is never followed: the token must not leave the Graph host
      path = ctx.path
      params = {}
      for k, v in pairs(ctx.params) do params[k] = v end
      params.before = nil
      params.after = cursors.after
    else
      return nil, errors.new("response", "paging.next is not a link on the Graph host this client follows, "
        .. "and there is no cursor")
    end
    if raw_query then
      -- the request carries the link's query as sent; params are kept for a later cursor fallback
      local body, err = page_of(self, ctx.fname, ctx.token, path, {}, raw_query)
      if body then contexts[body].params = params end
      return body, err
    end
    return page_of(self, ctx.fname, ctx.token, path, params)
  end

  -- An iterator over the items of `page` and every page after it (each_media, each_comment, …):
  -- on failure the loop body sees item == false and err (always set), once. Items are the objects
  -- of `data`; anything else there (false, null, a number) is skipped, so a false item can never
  -- pass for the failure signal.
  local function each_item(self, page, err)
    local index, pages, done = 0, 1, false
    local seen = {}
    local function fail(e)
      done = true
      return false, e or errors.new("response", "listing failed")
    end
    return function()
      while not done do
        if not page then
          if err then return fail(err) end
          done = true
          return nil
        end
        index = index + 1
        local item = page.data[index]
        if type(item) == "table" then return item end
        if item == nil then -- the end of this page (other values in data are skipped)
          local paging = type(page.paging) == "table" and page.paging or {}
          if not has_value(paging.next) then
            done = true
            return nil
          end
          local cursors = type(paging.cursors) == "table" and paging.cursors or {}
          local key = tostring(has_value(cursors.after) and cursors.after or paging.next)
          if seen[key] then
            return fail(errors.new("response", "pagination loop: the same cursor came back"))
          end
          seen[key] = true
          pages = pages + 1
          if pages > MAX_PAGES then
            return fail(errors.new("response", "more than " .. MAX_PAGES .. " pages"))
          end
          page, err = self:next_page(page)
          index = 0
        end
      end
      return nil
    end
  end

  -- for item, err in ig:each_media(token, opts) do … end
  function Client:each_media(token, opts)
    local fname = "ig:each_media"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    return each_item(self, self:media(token, opts))
  end

  local function param_value(fname, k, v)
    local t = type(v)
    if t == "string" then return v end
    if t == "number" then return json.id(v) or tostring(v) end
    if t == "boolean" then return tostring(v) end
    if t == "table" and k == "fields" then return h.fields_string(fname, v) end
    h.raise(fname, "params." .. tostring(k) .. " must be a string, number or boolean")
  end

  function Client:get(token, path, params)
    local fname = "ig:get"
    h.check_self(fname, self)
    token = h.token_string(fname, token)
    h.check_string(fname, "path", path)
    if path:find("[?#%s]") or path:find("://", 1, true) then
      h.raise(fname, "path must be a Graph path like \"me/media\", without query or host")
    end
    for segment in path:gmatch("[^/]+") do
      if segment == "." or segment == ".." then h.raise(fname, "path must not contain dot segments") end
    end
    if params ~= nil and type(params) ~= "table" then h.raise(fname, "params must be a table") end
    local query = {}
    for k, v in pairs(params or {}) do
      if type(k) ~= "string" then h.raise(fname, "params keys must be strings") end
      if k == "access_token" or k == "appsecret_proof" then
        h.raise(fname, "params." .. k .. " is set by the client")
      end
      query[k] = param_value(fname, k, v)
    end
    local body, err = self:_graph_get(token, path, query)
    if not body then return nil, err end
    return body
  end

  -- for the other Graph topics (comments, insights): one page with next_page support, its
  -- query from opts, and the iterator over all its pages
  h.graph_page, h.page_params, h.each_item = page_of, page_params, each_item

  function Client:usage()
    h.check_self("ig:usage", self)
    return self:_usage_decoded()
  end
end
