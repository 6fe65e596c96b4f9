-- `instagram export DIR`: DIR/media.jsonl and every image and video (carousel children, video
-- thumbnails) as DIR/<id>.<ext>, several downloads at once (ig:batch over the session's multi
-- handle). Resumable: DIR/.export.json records each finished file's size, and a rerun skips a file
-- whose size matches. Each download goes to a temp file renamed when complete (ig:download), so a
-- killed run leaves no torn file; stale temp files are removed at the start. An expired CDN URL
-- (err.expired_url) is fetched again once with a fresh URL from a new read of the item.
local core = require "instagram.core"
local json = require "instagram.json"

local M = {}

local MEDIA_FIELDS = "id,media_type,media_url,thumbnail_url,permalink,caption,timestamp,username"
local CHILD_FIELDS = "id,media_type,media_url,thumbnail_url"
local MANIFEST = ".export.json"

local function size_of(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

local function is_media_id(id)
  return type(id) == "string" and id:match("^%d+$") ~= nil and #id <= 64
end

local function ext_of(item)
  return item.media_type == "VIDEO" and "mp4" or "jpg"
end

-- the files of one item: {name, id, field, url}
local function files_of(item, out)
  if type(item.media_url) == "string" and item.media_type ~= "CAROUSEL_ALBUM" then
    out[#out + 1] = { name = item.id .. "." .. ext_of(item), id = item.id, field = "media_url", url = item.media_url }
  end
  if type(item.thumbnail_url) == "string" then
    out[#out + 1] = { name = item.id .. ".thumb.jpg", id = item.id, field = "thumbnail_url", url = item.thumbnail_url }
  end
  for _, child in ipairs(item.children or {}) do files_of(child, out) end
end

local function human(n)
  if n >= 1024 * 1024 then return string.format("%.1f MiB", n / 1048576) end
  if n >= 1024 then return string.format("%.1f KiB", n / 1024) end
  return string.format("%d B", n)
end

-- run(ig, token, dir, opts) -> summary | nil, message, err. opts: hosts, concurrency, progress (bool),
-- clock (seconds, float), out(...) for the summary.
function M.run(ig, token, dir, opts)
  local ok, err = opts.mkdirs(dir)
  if not ok then return nil, err end
  -- temp files of a killed run
  for _, name in ipairs(core.fs_list(dir) or {}) do
    if name:find("%.part%-") then os.remove(dir .. "/" .. name) end
  end

  -- every item, carousel children included
  local items, files = {}, {}
  for item, ierr in ig:each_media(token, { fields = MEDIA_FIELDS }) do
    if item == false then return nil, "reading the media failed", ierr end
    -- files are named after IDs: only digits, so no ID from the network can steer a path
    if not is_media_id(item.id) then return nil, "Instagram sent a media item whose id is not a number" end
    if item.media_type == "CAROUSEL_ALBUM" then
      local page, cerr = ig:children(token, item.id, CHILD_FIELDS)
      if not page then return nil, "reading the children of " .. item.id .. " failed", cerr end
      for _, child in ipairs(page.data) do
        if not is_media_id(child.id) then
          return nil, "Instagram sent a carousel child whose id is not a number"
        end
      end
      item.children = page.data
    end
    items[#items + 1] = item
  end
  local lines = {}
  for i, item in ipairs(items) do
    lines[i] = opts.encode(item)
    files_of(item, files)
  end
  local jsonl = table.concat(lines, "\n") .. (#lines > 0 and "\n" or "")
  local wrote, werr = core.fs_write(dir .. "/media.jsonl", jsonl)
  if not wrote then return nil, "cannot write " .. dir .. "/media.jsonl: " .. tostring(werr) end

  local manifest
  do
    local f = io.open(dir .. "/" .. MANIFEST, "rb")
    local text = f and f:read("*a")
    if f then f:close() end
    manifest = type(text) == "string" and json.decode(text) or nil
    if type(manifest) ~= "table" then manifest = {} end
  end
  local todo, skipped, total_bytes = {}, 0, 0
  for _, file in ipairs(files) do
    local size = size_of(dir .. "/" .. file.name)
    if size and manifest[file.name] and size == manifest[file.name] then
      skipped = skipped + 1
    else
      todo[#todo + 1] = file
    end
  end

  local started = opts.clock()
  local done, failed, first_err = 0, 0, nil
  local function progress()
    if not opts.progress then return end
    local secs = math.max(opts.clock() - started, 0.001)
    io.stderr:write(string.format("\r\27[K%d items, %d/%d files, %s, %s/s", #items, done + skipped + failed,
      #files, human(total_bytes), human(total_bytes / secs)))
  end
  local function save_manifest()
    return core.fs_write(dir .. "/" .. MANIFEST, json.encode(manifest))
  end

  local group = opts.concurrency * 2
  for first = 1, #todo, group do
    local batch, calls = {}, {}
    for i = first, math.min(first + group - 1, #todo) do
      batch[#batch + 1] = todo[i]
      calls[#calls + 1] = { "download", todo[i].url, dir .. "/" .. todo[i].name, { hosts = opts.hosts } }
    end
    local results = ig:batch(calls, { concurrency = opts.concurrency })
    for i, r in ipairs(results) do
      local file = batch[i]
      local res, derr = r.ok and r.value, r.err
      if not res and derr and derr.expired_url then
        -- the CDN link expired: read the item again for a fresh one, and try once more
        local fresh = ig:get(token, file.id, { fields = file.field })
        if fresh and type(fresh[file.field]) == "string" then
          res, derr = ig:download(fresh[file.field], dir .. "/" .. file.name, { hosts = opts.hosts })
        end
      end
      if res then
        done = done + 1
        total_bytes = total_bytes + res.bytes
        manifest[file.name] = res.bytes
      else
        failed = failed + 1
        first_err = first_err or (file.name .. ": " .. tostring(derr):gsub("^instagram: ", ""))
      end
    end
    local saved, serr = save_manifest()
    if not saved then return nil, "cannot write " .. dir .. "/" .. MANIFEST .. ": " .. tostring(serr) end
    progress()
  end
  if opts.progress then io.stderr:write("\n") end
  return { items = #items, files = #files, downloaded = done, skipped = skipped, failed = failed,
    bytes = total_bytes, first_error = first_err }
end

return M
