-- instagram.webhook: the verification GET, delivery signatures, normalized events, dedupe keys
-- (PLATFORM.md §1), and the /me/subscribed_apps methods against the fake Instagram.
local instagram = require "instagram"
local webhook = require "instagram.webhook"
local cjson = require "cjson"
local Fake = require "spec.support.fake"

local SECRET = "meta-app-secret-0123456789abcdef"
local OTHER = "instagram-app-secret-fedcba9876543210"

-- An Instagram DM as Meta sends it (PLATFORM.md §1.5): \u00e1, a surrogate pair and \/ escapes.
local RAW = [[{"object":"instagram","entry":[{"id":"17841400538867190","time":1762010783728,"messaging":[{"sender":]]
  .. [[{"id":"17841400538867190"},"recipient":{"id":"1129842642640637"},"timestamp":1762010770464,"message":]]
  .. [[{"mid":"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwNTM4ODY3MTkwOjM0MDI4MjM2Njg0MTcxMDMwMTI0NDI3NjE0Mj]]
  .. [[E5NjI3MjE4ODU5NTozMjQ2NTU0MTQ0MTY0MjM2MjA1OTMxMDQyMDM0NjU1Njg2NAZDZD","text":"Ol\u00e1, testando amor ]]
  .. [[\ud83e\udd70 https:\/\/x.example\/a","is_echo":true}}]}]}]]
-- HMAC-SHA256(SECRET, RAW), computed with Python's hmac module, not with this library
local RAW_SIG = "sha256=cf29b7b0fd61c8e8839009c904e8f53564c02e2c2f47d14b877084d674740c5f"

local function sign(secret, body)
  return "sha256=" .. instagram.core.hmac_sha256_hex(secret, body)
end

local function collect(body)
  local it, err = webhook.events(body)
  assert(it, err and tostring(err))
  local out = {}
  for ev in it do out[#out + 1] = ev end
  return out
end

local function refused(reason, ok, err)
  assert.is_nil(ok)
  assert.equal("signature", err.kind)
  assert.equal(reason, err.reason)
  local text = tostring(err)
  assert.not_matches(SECRET, text, 1, true)
  assert.not_matches(OTHER, text, 1, true)
  return err
end

describe("instagram.webhook.verify", function()
  it("verifies the raw bytes Meta sent, escapes and all", function()
    assert.equal(465, #RAW)
    local ok, index = webhook.verify(RAW, RAW_SIG, { SECRET })
    assert.is_true(ok)
    assert.equal(1, index)
  end)

  it("fails on the same body re-serialized (cjson.encode(cjson.decode(raw)))", function()
    local reencoded = cjson.encode(cjson.decode(RAW))
    assert.not_equal(#RAW, #reencoded)
    refused("mismatch", webhook.verify(reencoded, RAW_SIG, { SECRET }))
  end)

  it("refuses each bad header with its own reason and message, all of kind signature", function()
    local flipped = RAW_SIG:sub(1, -2) .. (RAW_SIG:sub(-1) == "f" and "e" or "f")
    local distinct = {
      { "mismatch", flipped },
      { "malformed", "sha256=" .. RAW_SIG:sub(8):upper() },
      { "malformed", RAW_SIG:sub(8) },                       -- no sha256= prefix
      { "sha1", "sha1=" .. string.rep("ab", 20) },
      { "missing", nil },
    }
    local seen = {}
    for _, case in ipairs(distinct) do
      local err = refused(case[1], webhook.verify(RAW, case[2], { SECRET }))
      assert.is_nil(seen[err.message], err.message)
      seen[err.message] = true
    end
    local err = refused("no_secret", webhook.verify(RAW, RAW_SIG, {}))
    assert.is_nil(seen[err.message])
    for _, bad in ipairs({ RAW_SIG .. "0", RAW_SIG:sub(1, -2), "SHA256=" .. RAW_SIG:sub(8), " " .. RAW_SIG,
      "sha256=" .. RAW_SIG:sub(8, -2) .. "g", "sha256:" .. RAW_SIG:sub(8), RAW_SIG .. "\0" }) do
      refused("malformed", webhook.verify(RAW, bad, { SECRET }))
    end
    refused("missing", webhook.verify(RAW, "", { SECRET }))
  end)

  it("reads the header from a request-headers table, and tells sha1-only from unsigned", function()
    assert.is_true(webhook.verify(RAW, { ["X-Hub-Signature-256"] = RAW_SIG }, { SECRET }))
    assert.is_true(webhook.verify(RAW, { ["x-hub-signature-256"] = RAW_SIG }, { SECRET }))
    refused("sha1", webhook.verify(RAW, { ["x-hub-signature"] = "sha1=" .. string.rep("0", 40) }, { SECRET }))
    refused("missing", webhook.verify(RAW, { ["content-type"] = "application/json" }, { SECRET }))
    -- a repeated header (an array from ngx.req.get_headers) is never Meta's
    refused("malformed", webhook.verify(RAW, { ["x-hub-signature-256"] = { RAW_SIG, RAW_SIG } }, { SECRET }))
  end)

  it("tries several secrets and says which one matched", function()
    local body = '{"object":"instagram","entry":[]}'
    local ok, index = webhook.verify(body, sign(OTHER, body), { SECRET, OTHER })
    assert.is_true(ok)
    assert.equal(2, index)
    ok, index = webhook.verify(body, sign(SECRET, body), { SECRET, OTHER })
    assert.is_true(ok)
    assert.equal(1, index)
    assert.is_true(webhook.verify(body, sign(OTHER, body), OTHER))
    refused("mismatch", webhook.verify(body, sign("a third secret", body), { SECRET, OTHER }))
  end)

  it("verifies an empty body and a body with NUL bytes exactly", function()
    assert.is_true(webhook.verify("", sign(SECRET, ""), { SECRET }))
    local body = "a\0b"
    assert.is_true(webhook.verify(body, sign(SECRET, body), { SECRET }))
    refused("mismatch", webhook.verify("a", sign(SECRET, body), { SECRET }))
  end)

  it("raises on misuse, naming the function", function()
    local function raises(f)
      local ok, err = pcall(f)
      assert.is_false(ok)
      assert.matches("^instagram%.webhook%.verify: ", err)
      assert.not_matches(SECRET, err, 1, true)
    end
    raises(function() webhook.verify(nil, RAW_SIG, { SECRET }) end)
    raises(function() webhook.verify({}, RAW_SIG, { SECRET }) end)
    raises(function() webhook.verify(RAW, RAW_SIG, nil) end)
    raises(function() webhook.verify(RAW, RAW_SIG, 42) end)
    raises(function() webhook.verify(RAW, RAW_SIG, { SECRET, "" }) end)
    raises(function() webhook.verify(RAW, RAW_SIG, { SECRET, 7 }) end)
    raises(function() webhook.verify(RAW, 42, { SECRET }) end)
    -- a hole ({ os.getenv("NEW"), os.getenv("OLD") } with NEW unset) or a map would hide secrets
    raises(function() webhook.verify(RAW, RAW_SIG, { nil, SECRET }) end)
    raises(function() webhook.verify(RAW, RAW_SIG, { "other", nil, SECRET }) end)
    raises(function() webhook.verify(RAW, RAW_SIG, { meta = SECRET }) end)
  end)
end)

describe("instagram.webhook.challenge", function()
  local TOKEN = "meatyhamhock"
  local function args(t)
    local base = { ["hub.mode"] = "subscribe", ["hub.verify_token"] = TOKEN, ["hub.challenge"] = "1158201444" }
    for k, v in pairs(t or {}) do
      if v == cjson.null then base[k] = nil else base[k] = v end
    end
    return base
  end
  local function refused_with(status, challenge, err)
    assert.is_nil(challenge)
    assert.equal("callback", err.kind)
    assert.equal(status, err.status)
    assert.not_matches(TOKEN, tostring(err), 1, true)
  end

  it("returns the challenge for the right token", function()
    assert.equal("1158201444", webhook.challenge(args(), TOKEN))
    assert.equal("abc-DEF_123", webhook.challenge(args({ ["hub.challenge"] = "abc-DEF_123" }), TOKEN))
    assert.equal("42", webhook.challenge("hub.mode=subscribe&hub.challenge=42&hub.verify_token=" .. TOKEN, TOKEN))
    local long = string.rep("9", 256)
    assert.equal(long, webhook.challenge(args({ ["hub.challenge"] = long }), TOKEN))
  end)

  it("403 for a wrong token, a missing or wrong mode", function()
    refused_with(403, webhook.challenge(args({ ["hub.verify_token"] = "meatyhamhocK" }), TOKEN))
    refused_with(403, webhook.challenge(args({ ["hub.verify_token"] = TOKEN .. "x" }), TOKEN))
    refused_with(403, webhook.challenge(args({ ["hub.verify_token"] = cjson.null }), TOKEN))
    refused_with(403, webhook.challenge(args({ ["hub.mode"] = cjson.null }), TOKEN))
    refused_with(403, webhook.challenge(args({ ["hub.mode"] = "unsubscribe" }), TOKEN))
    refused_with(403, webhook.challenge(args({ hub_mode = "subscribe", ["hub.mode"] = cjson.null }), TOKEN))
  end)

  it("400 for a challenge that could be markup, is too long or is missing", function()
    refused_with(400, webhook.challenge(args({ ["hub.challenge"] = "<script>" }), TOKEN))
    refused_with(400, webhook.challenge(args({ ["hub.challenge"] = "a b" }), TOKEN))
    refused_with(400, webhook.challenge(args({ ["hub.challenge"] = "" }), TOKEN))
    refused_with(400, webhook.challenge(args({ ["hub.challenge"] = string.rep("9", 257) }), TOKEN))
    refused_with(400, webhook.challenge(args({ ["hub.challenge"] = cjson.null }), TOKEN))
  end)

  it("bare and repeated keys (as ngx.req.get_uri_args gives them) are errors, not raises", function()
    refused_with(403, webhook.challenge(args({ ["hub.mode"] = true }), TOKEN))
    refused_with(403, webhook.challenge(args({ ["hub.verify_token"] = true }), TOKEN))
    refused_with(400, webhook.challenge(args({ ["hub.challenge"] = true }), TOKEN))
    refused_with(403, webhook.challenge(args({ ["hub.mode"] = { "subscribe", "subscribe" } }), TOKEN))
    refused_with(403, webhook.challenge(args({ ["hub.verify_token"] = { TOKEN, TOKEN } }), TOKEN))
    refused_with(400, webhook.challenge(args({ ["hub.challenge"] = { "1", "2" } }), TOKEN))
    refused_with(403, webhook.challenge(args({ ["hub.verify_token"] = 12 }), TOKEN))
  end)

  it("raises on misuse, naming the function", function()
    for _, call in ipairs({
      function() webhook.challenge(args(), nil) end,
      function() webhook.challenge(args(), "") end,
      function() webhook.challenge(args(), 12) end,
      function() webhook.challenge(nil, TOKEN) end,
    }) do
      local ok, err = pcall(call)
      assert.is_false(ok)
      assert.matches("^instagram%.webhook%.challenge: ", err)
    end
  end)
end)

describe("instagram.webhook.events", function()
  -- PLATFORM.md §1.5: one entry with 3 changes and 1 messaging item; IDs of 17 digits as bare numbers
  local BATCH = [[{"object":"instagram","entry":[{"id":17841400000000001,"time":1520622968,"changes":[
    {"field":"comments","value":{"id":17865799348089039,"from":{"id":"232323","username":"sana.k"},
      "text":"order karna hai","parent_id":"17850000000000001",
      "media":{"id":"17918195224117851","media_product_type":"FEED"}}},
    {"field":"live_comments","value":{"comment_id":"17865799348089041","from":{"id":232324,"username":"b"},
      "text":"live!","media":{"id":"17918195224117852"}}},
    {"field":"mentions","value":{"comment_id":"17865799348089042","media_id":"17918195224117853"}}],
   "messaging":[{"sender":{"id":"1129842642640637"},"recipient":{"id":"17841400000000001"},
      "timestamp":1762010770464,"message":{"mid":"aWdfZAG1faXRl","text":"Ol\u00e1 \ud83e\udd70"}}]}]}]]

  it("expands a batched entry: 3 changes and 1 messaging item give 4 events", function()
    local evs = collect(BATCH)
    assert.equal(4, #evs)
    local c = evs[1]
    assert.equal("comment", c.kind)
    assert.equal("17841400000000001", c.account_id)
    assert.equal("17865799348089039", c.id)
    assert.equal("17850000000000001", c.parent_id)
    assert.equal("232323", c.from_id)
    assert.equal("sana.k", c.from_username)
    assert.equal("order karna hai", c.text)
    assert.equal("17918195224117851", c.media_id)
    assert.equal("comments", c.field)
    assert.equal("comments", c.raw.field)
    assert.equal("live_comment", evs[2].kind)
    assert.equal("17865799348089041", evs[2].id)
    assert.equal("232324", evs[2].from_id)
    assert.equal("mention", evs[3].kind)
    assert.equal("17865799348089042", evs[3].id)
    assert.equal("17918195224117853", evs[3].media_id)
    local m = evs[4]
    assert.equal("message", m.kind)
    assert.equal("aWdfZAG1faXRl", m.mid)
    assert.equal("Olá 🥰", m.text)
    assert.equal("1129842642640637", m.from_id)
    assert.equal("17841400000000001", m.account_id)
    assert.equal(1762010770464, m.time_ms)
  end)

  it("reads the unwrapped comment (field and value straight in the entry)", function()
    local evs = collect([[{"object":"instagram","entry":[{"id":"17841405309211844","time":1520383571,
      "field":"comments","value":{"from":{"id":"17841405309211844","username":"someone"},
      "media":{"id":"17918195224117851","media_product_type":"FEED"},"id":"17865799348089039",
      "parent_id":"17850000000000001","text":"This is an example."}}]}]])
    assert.equal(1, #evs)
    assert.equal("comment", evs[1].kind)
    assert.equal("17865799348089039", evs[1].id)
    assert.equal("This is an example.", evs[1].text)
    assert.equal(1520383571000, evs[1].time_ms)
  end)

  it("takes seconds and milliseconds to ms", function()
    local evs = collect([==[[
      {"entry":[{"id":"1","time":1520622968,"changes":[{"field":"comments","value":{"id":"2"}}]}]},
      {"entry":[{"id":"1","time":1762010783728,"changes":[{"field":"comments","value":{"id":"3"}}]}]},
      {"entry":[{"id":"1","time":"1520622968","changes":[{"field":"comments","value":{"id":"4"}}]}]}]]==])
    assert.equal(3, #evs)
    assert.equal(1520622968000, evs[1].time_ms)
    assert.equal(1762010783728, evs[2].time_ms)
    assert.equal(1520622968000, evs[3].time_ms)
    assert.equal(math.type and "integer" or "number", math.type and math.type(evs[1].time_ms) or "number")
  end)

  it("normalizes reactions, postbacks, seen, and the changes form of messaging", function()
    local evs = collect([[{"object":"instagram","entry":[{"id":"9","time":1762010783728,"messaging":[
      {"sender":{"id":"1"},"recipient":{"id":"9"},"timestamp":1762010770001,
       "reaction":{"mid":"m1","action":"react","reaction":"love","emoji":"\u2764"}},
      {"sender":{"id":"1"},"recipient":{"id":"9"},"timestamp":1762010770002,
       "postback":{"mid":"m2","title":"Yes","payload":"YES"}},
      {"sender":{"id":"1"},"recipient":{"id":"9"},"timestamp":1762010770003,"read":{"mid":"m3"}}],
     "changes":[{"field":"messages","value":{"sender":{"id":"12334"},"recipient":{"id":"23245"},
       "timestamp":"1527459824","message":{"mid":"random_mid","text":"random_text"}}}]}]}]])
    assert.equal(4, #evs)
    local kinds = {}
    for _, e in ipairs(evs) do kinds[e.kind] = e end
    assert.equal("m1", kinds.reaction.mid)
    assert.equal("❤", kinds.reaction.emoji)
    assert.equal("m2", kinds.postback.mid)
    assert.equal("Yes", kinds.postback.text)
    assert.equal("m3", kinds.seen.mid)
    assert.equal("random_mid", kinds.message.mid)
    assert.equal(1527459824000, kinds.message.time_ms)
  end)

  it("passes unknown fields and shapes through as kind unknown, with raw", function()
    local evs = collect([[{"object":"instagram","entry":[
      {"id":"1","time":1,"changes":[{"field":"brand_new_field","value":{"x":1}},{"field":"comments","value":7}]},
      {"id":"1","time":1,"standby":[{"sender":{"id":"2"}}]},
      {"id":"1","time":1,"messaging":[{"sender":{"id":"2"},"optin":{"ref":"r"}}]},
      42]}]])
    assert.equal(5, #evs)
    for _, e in ipairs(evs) do assert.equal("unknown", e.kind) end
    assert.equal("brand_new_field", evs[1].raw.field)
    assert.is_table(evs[3].raw.standby)
    assert.equal("r", evs[4].raw.optin.ref)
    assert.equal(42, evs[5].raw)
    assert.equal(0, #collect('{"object":"instagram","entry":[{"id":"1","time":1,"changes":[],"messaging":[]}]}'))
    local other = collect('{"object":"page","something":true}')
    assert.equal(1, #other)
    assert.equal("unknown", other[1].kind)
    assert.is_true(other[1].raw.something)
  end)

  it("never drops an entry, changes or messaging that is an object instead of an array", function()
    local evs = collect([[{"object":"instagram","entry":{"id":"1","time":1,
      "changes":[{"field":"comments","value":{"id":"5"}}]}}]])
    assert.equal(1, #evs)
    assert.equal("unknown", evs[1].kind)
    assert.equal("5", evs[1].raw.entry.changes[1].value.id)
    evs = collect([[{"object":"instagram","entry":[{"id":"1","time":1520622968,
      "changes":{"field":"comments","value":{"id":"6"}},
      "messaging":[{"sender":{"id":"2"},"message":{"mid":"m7","text":"hi"}}]}]}]])
    assert.equal(2, #evs)
    local kinds = {}
    for _, e in ipairs(evs) do kinds[e.kind] = e end
    assert.equal("m7", kinds.message.mid)
    assert.equal("6", kinds.unknown.raw.value.id)
    assert.equal("1", kinds.unknown.account_id)
    assert.equal(1520622968000, kinds.unknown.time_ms)
    evs = collect([[{"object":"instagram","entry":[{"id":"1","time":1,
      "messaging":{"sender":{"id":"2"},"message":{"mid":"m8"}}}]}]])
    assert.equal(1, #evs)
    assert.equal("unknown", evs[1].kind)
    assert.equal("m8", evs[1].raw.messaging.message.mid)
    -- null and empty lists are still nothing
    assert.equal(0, #collect('{"object":"instagram","entry":[{"id":"1","changes":null,"messaging":[]}]}'))
    assert.equal(0, #collect('{"object":"instagram","entry":[]}'))
  end)

  it("returns nil, err for a body that is not JSON, and raises on a non-string", function()
    for _, body in ipairs({ "", "not json", '{"entry":[', "42", '"x"', '{"a":"\255"}' }) do
      local it, err = webhook.events(body)
      assert.is_nil(it)
      assert.equal("response", err.kind)
    end
    local ok, err = pcall(webhook.events, nil)
    assert.is_false(ok)
    assert.matches("^instagram%.webhook%.events: ", err)
  end)
end)

describe("instagram.webhook.dedupe_key", function()
  local BODY = [[{"object":"instagram","entry":[{"id":"17841400000000001","time":1520622968,"changes":[
    {"field":"comments","value":{"id":"17865799348089039","text":"a"}},
    {"field":"comments","value":{"id":"17865799348089040","text":"b"}},
    {"field":"story_insights","value":{"media_id":"1","reach":17,"exits":1}}],
    "messaging":[{"sender":{"id":"1"},"timestamp":1762010770464,"message":{"mid":"m-1","text":"x"}},
                 {"sender":{"id":"1"},"timestamp":1762010770465,"message":{"mid":"m-2","text":"x"}}]}]}]]

  local function keys(body)
    local out = {}
    for _, e in ipairs(collect(body)) do out[#out + 1] = webhook.dedupe_key(e) end
    return out
  end

  it("gives the same keys for the same POST twice, and distinct keys for distinct events", function()
    local first, second = keys(BODY), keys(BODY)
    assert.same(first, second)
    assert.equal(5, #first)
    local seen = {}
    for _, k in ipairs(first) do
      assert.is_nil(seen[k])
      seen[k] = true
      assert.matches("^ig:webhook:[%w_]+:%x+$", k)
      assert.is_true(#k <= 100)
    end
  end)

  it("keys a comment by its ID and a message by its mid, not by the rest of the delivery", function()
    local a = collect('{"entry":[{"id":"5","time":1,"changes":[{"field":"comments","value":{"id":"77","text":"a"}}]}]}')
    local b = collect('{"entry":[{"id":"5","time":2,"changes":[{"field":"comments","value":{"id":"77","text":"a"}},'
      .. '{"field":"comments","value":{"id":"78"}}]}]}')
    assert.equal(webhook.dedupe_key(a[1]), webhook.dedupe_key(b[1]))
    assert.not_equal(webhook.dedupe_key(a[1]), webhook.dedupe_key(b[2]))
    local other_account = collect(
      '{"entry":[{"id":"6","time":1,"changes":[{"field":"comments","value":{"id":"77"}}]}]}')
    assert.not_equal(webhook.dedupe_key(a[1]), webhook.dedupe_key(other_account[1]))
  end)

  it("keys an unknown event by its data: the same after re-encoding, and the same in Lua 5.4 and LuaJIT", function()
    local a = collect('{"entry":[{"id":"1","time":1,"changes":[{"field":"new_thing","value":'
      .. '{"a":0.1,"b":-5,"c":1E2,"d":[true,false,null,{}],"e":"\\u00e1 \\/","f":17841400000000001}}]}]}')
    local b = collect('{ "entry" : [ { "changes" : [ { "value" : { "f" : "17841400000000001", "e" : "á /",'
      .. ' "d" : [ true, false, null, { } ], "c" : 100, "b" : -5, "a" : 0.10 }, "field" : "new_thing" } ],'
      .. ' "time" : 1, "id" : 1 } ] }')
    assert.equal("unknown", a[1].kind)
    assert.equal(webhook.dedupe_key(a[1]), webhook.dedupe_key(b[1]))
    -- the key a host computes is the key every other host computes, whatever its interpreter
    assert.equal("ig:webhook:unknown:7f5d04614a3ee84b956a4831427ee8ef20b2fee32723034b9d93d881620df790",
      webhook.dedupe_key(a[1]))
  end)

  it("keeps a message and its unsending (is_deleted, same mid) apart", function()
    -- PLATFORM.md §1.5: message.is_deleted arrives with the mid of the message that was unsent
    local sent = collect([[{"object":"instagram","entry":[{"id":"9","time":1762010783728,"messaging":[
      {"sender":{"id":"1"},"recipient":{"id":"9"},"timestamp":1762010770464,
       "message":{"mid":"m-9","text":"oops"}}]}]}]])
    local unsent = collect([[{"object":"instagram","entry":[{"id":"9","time":1762010799000,"messaging":[
      {"sender":{"id":"1"},"recipient":{"id":"9"},"timestamp":1762010798000,
       "message":{"mid":"m-9","is_deleted":true}}]}]}]])
    assert.equal("message", unsent[1].kind)
    assert.equal("m-9", unsent[1].mid)
    assert.is_true(unsent[1].is_deleted)
    assert.is_nil(sent[1].is_deleted)
    assert.not_equal(webhook.dedupe_key(sent[1]), webhook.dedupe_key(unsent[1]))
    -- and the unsending sent again is still the same event
    local again = collect([[{"object":"instagram","entry":[{"time":1762010799000,"id":"9","messaging":[
      {"message":{"is_deleted":true,"mid":"m-9"},"timestamp":1762010798000,
       "recipient":{"id":"9"},"sender":{"id":"1"}}]}]}]])
    assert.equal(webhook.dedupe_key(unsent[1]), webhook.dedupe_key(again[1]))
  end)

  it("raises on misuse, naming the function", function()
    local ok, err = pcall(webhook.dedupe_key, "x")
    assert.is_false(ok)
    assert.matches("^instagram%.webhook%.dedupe_key: ", err)
  end)

  it("is reachable as instagram.webhook", function()
    assert.equal(webhook, instagram.webhook)
  end)
end)

describe("ig:subscribe_webhooks, webhook_subscriptions, unsubscribe_webhooks (fake Instagram)", function()
  local f, ig, token

  setup(function()
    f = Fake.start({ quiet = true })
  end)
  teardown(function()
    if ig then ig:close() end
    if f then f:stop() end
  end)
  before_each(function()
    f:reset()
    local app = f.apps.instagram_login
    ig = instagram.new({ app_id = app.client_id, app_secret = app.secret, redirect_uri = app.redirect_uri,
      api = "instagram_login", endpoints = f:endpoints(), ca_file = f.ca_file, sleep = function() end })
    token = f:issue_token("biz")
  end)

  it("subscribes, lists the fields, unsubscribes", function()
    assert.same({}, assert(ig:webhook_subscriptions(token)))
    assert.is_true(assert(ig:subscribe_webhooks(token, { "comments", "messages" })))
    local subs = assert(ig:webhook_subscriptions(token))
    assert.equal(1, #subs)
    assert.equal(f.apps.instagram_login.client_id, subs[1].id)
    assert.same({ "comments", "messages" }, subs[1].subscribed_fields)
    local post = f:log("/me/subscribed_apps")[2]
    assert.equal("POST", post.method)
    assert.equal("comments,messages", post.form.subscribed_fields)
    assert.equal("", post.query) -- the token and the fields ride in the form body
    assert.is_true(assert(ig:unsubscribe_webhooks(token)))
    assert.equal("DELETE", f:log("/me/subscribed_apps")[4].method)
    assert.same({}, assert(ig:webhook_subscriptions(token)))
    assert.is_true(assert(ig:subscribe_webhooks(token, "live_comments")))
    assert.same({ "live_comments" }, ig:webhook_subscriptions(token)[1].subscribed_fields)
  end)

  it("never retries the POST, and keeps the token out of errors", function()
    f:fault("/me/subscribed_apps", { status = 500, times = 1 })
    local ok, err = ig:subscribe_webhooks(token, { "comments" })
    assert.is_nil(ok)
    assert.equal("api", err.kind)
    assert.equal(1, #f:log("/me/subscribed_apps"))
    assert.not_matches(token, tostring(err), 1, true)
    ok, err = ig:subscribe_webhooks(token, { "no_such_field" })
    assert.is_nil(ok)
    assert.equal(100, err.code)
  end)

  it("raises on misuse, naming the method", function()
    for _, call in ipairs({
      { "ig:subscribe_webhooks", function() ig:subscribe_webhooks(token) end },
      { "ig:subscribe_webhooks", function() ig:subscribe_webhooks(token, {}) end },
      { "ig:subscribe_webhooks", function() ig:subscribe_webhooks(nil, { "comments" }) end },
      { "ig:webhook_subscriptions", function() ig.webhook_subscriptions({}, token) end },
      { "ig:unsubscribe_webhooks", function() ig:unsubscribe_webhooks("") end },
    }) do
      local ok, err = pcall(call[2])
      assert.is_false(ok)
      assert.matches("^" .. call[1]:gsub("%p", "%%%0") .. ": ", err)
    end
  end)
end)

describe("instagram.resty.webhook.handle misuse", function()
  it("raises naming the function before touching the request", function()
    local resty = require "instagram.resty.webhook"
    local good = { verify_token = "t", secrets = { SECRET }, on_event = function() end }
    local function with(k, v)
      local o = {}
      for key, value in pairs(good) do o[key] = value end
      o[k] = v
      return o
    end
    for _, opts in ipairs({
      "x", with("verify_token", ""), with("verify_token", nil), with("secrets", nil), with("secrets", { "" }),
      with("on_event", "f"), with("max_body", 0), with("max_body", 1.5), with("dedupe", 42),
      with("dedupe", { add = "no" }), with("dedupe_ttl", -1), with("secrets", { nil, SECRET }),
      with("secrets", { primary = SECRET }), with("max_timers", 0), with("max_timers", "200"),
    }) do
      local ok, err = pcall(resty.handle, opts)
      assert.is_false(ok)
      assert.matches("^instagram%.resty%.webhook%.handle: ", err)
      assert.not_matches(SECRET, err, 1, true)
    end
  end)
end)
