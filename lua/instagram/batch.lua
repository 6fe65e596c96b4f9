-- ig:batch: several calls at once. Each call runs in a coroutine; every request it makes is
-- collected, and the collected requests run concurrently in the transport (libcurl's multi interface).
local BATCHABLE = {
  me = true, user = true, media = true, children = true, get = true, next_page = true,
  exchange_token = true, refresh_token = true, refresh_if_needed = true, exchange_code = true,
}

local unpack = table.unpack or unpack -- luacheck: ignore 143
local function pack(...)
  return { n = select("#", ...), ... }
end

return function(Client, h)
  h.BATCHABLE = BATCHABLE -- the topic modules loaded after this one add their request methods
  function Client:batch(calls, opts)
    local fname = "ig:batch"
    h.check_self(fname, self)
    if type(calls) ~= "table" then h.raise(fname, "calls must be an array of calls") end
    if opts ~= nil and type(opts) ~= "table" then h.raise(fname, "opts must be a table") end
    local concurrency = (opts or {}).concurrency or 8
    if type(concurrency) ~= "number" or concurrency ~= math.floor(concurrency) or concurrency < 1
        or concurrency > 256 then
      h.raise(fname, "opts.concurrency must be an integer from 1 to 256")
    end
    for i = 1, #calls do
      local call = calls[i]
      if type(call) ~= "table" or type(call[1]) ~= "string" or not BATCHABLE[call[1]] then
        h.raise(fname, "calls[" .. i .. "] must be { \"method_name\", args... } naming a request method")
      end
    end

    local results, waiting = {}, {}
    local coroutines = {}

    -- a call that raised ends the batch: every other call still waiting on a request is resumed with
    -- BATCH_ABORT (its request raises), so it unwinds and releases what it holds (a refresh lock)
    local function abort(raised)
      for k = 1, #calls do
        local co = coroutines[k]
        for _ = 1, 100 do
          if not co or coroutine.status(co) ~= "suspended" then break end
          coroutine.resume(co, h.BATCH_ABORT)
        end
        coroutines[k] = false
      end
      error(raised, 0) -- misuse inside a call raises, as the method itself would
    end

    -- runs call i until it waits for a request (queued) or ends (its results recorded); any other
    -- yield (a user sleep or clock that yields to a scheduler) goes up to the caller's coroutine,
    -- and what comes back is handed to the call
    local function step(i, ...)
      local co = coroutines[i]
      local r = pack(coroutine.resume(co, ...))
      while true do
        if not r[1] then
          coroutines[i] = false
          return abort(r[2])
        end
        if coroutine.status(co) ~= "suspended" then break end
        if r[2] == h.BATCH_YIELD then
          waiting[#waiting + 1] = { index = i, req = r[3] }
          return
        end
        r = pack(coroutine.resume(co, coroutine.yield(unpack(r, 2, r.n))))
      end
      coroutines[i] = false
      if r[2] == nil and r[3] ~= nil then
        results[i] = { ok = false, err = r[3] }
      else
        results[i] = { ok = true, value = r[2], n = r.n - 1, values = { unpack(r, 2, r.n) } }
      end
    end

    for i = 1, #calls do
      local call = calls[i]
      local co = coroutine.create(function()
        return self[call[1]](self, unpack(call, 2, call.n or #call))
      end)
      h.batch_coroutines[co] = self
      coroutines[i] = co
      step(i)
    end

    local transport = self:_transport()
    while #waiting > 0 do
      local round = waiting
      waiting = {}
      local reqs = {}
      for k, w in ipairs(round) do reqs[k] = w.req end
      local responses = transport:request_many(reqs, concurrency)
      for k, w in ipairs(round) do
        local res = responses[k]
        if res and res.error then
          step(w.index, nil, res.error, res.message, res.status)
        else
          step(w.index, res)
        end
      end
    end
    return results
  end
end
