-- ig:batch: several calls at once. Each call runs in a coroutine; every request it makes is
-- collected, and the collected requests run concurrently in the transport (libcurl's multi interface).
local BATCHABLE = {
  me = true, user = true, media = true, children = true, get = true, next_page = true,
  exchange_token = true, refresh_token = true, refresh_if_needed = true, exchange_code = true,
}

local unpack = table.unpack or unpack -- luacheck: ignore 143

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

    local function step(i, ...)
      local co = coroutines[i]
      local ok, first, second = coroutine.resume(co, ...)
      if not ok then
        error(first, 0) -- misuse inside a call raises, as the method itself would
      end
      if coroutine.status(co) == "suspended" and first == h.BATCH_YIELD then
        waiting[#waiting + 1] = { index = i, req = second }
      elseif first ~= nil then
        results[i] = { ok = true, value = first }
      else
        results[i] = { ok = false, err = second }
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
