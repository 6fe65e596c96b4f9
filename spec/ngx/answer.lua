-- luacheck: globals ngx
-- The in-nginx harnesses' entry point (harness.lua, business_harness.lua, keeper_harness.lua,
-- singleflight_harness.lua): answer(handlers, name) calls the handler the location names with the
-- request's query args and answers its result, or what it raised, as JSON; 404 for no handler.
local cjson = require "cjson.safe"

return function(handlers, name)
  local handler = handlers[name]
  if not handler then return ngx.exit(404) end
  local ok, result = pcall(handler, ngx.req.get_uri_args())
  if not ok then result = { raised = tostring(result) } end
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(result))
end
