-- instagram.core.quote_big_ints: the exact-ID pre-pass over JSON text
local core = require "instagram.core"
local cjson = require "cjson.safe"

local q = core.quote_big_ints

describe("core.quote_big_ints", function()
  it("quotes integers of 16 or more digits outside strings", function()
    assert.equal('{"user_id":"17841405793187219"}', q('{"user_id":17841405793187219}'))
    assert.equal('["12345678901234567","-12345678901234567"]', q("[12345678901234567,-12345678901234567]"))
    assert.equal('"1234567890123456"', q("1234567890123456"))
    assert.equal('[ "12345678901234567" ]', q("[ 12345678901234567 ]"))
    assert.equal('{"a":{"b":["99999999999999999999999999"]}}', q('{"a":{"b":[99999999999999999999999999]}}'))
  end)

  it("leaves shorter integers alone", function()
    assert.equal("123", q("123"))
    assert.equal("123456789012345", q("123456789012345"))
    assert.equal("-123456789012345", q("-123456789012345"))
    assert.equal('{"a":0,"b":-1}', q('{"a":0,"b":-1}'))
  end)

  it("leaves numbers with a fraction or exponent alone", function()
    assert.equal("1.7841405793187219e16", q("1.7841405793187219e16"))
    assert.equal("[12345678901234567.0]", q("[12345678901234567.0]"))
    assert.equal("12345678901234567e5", q("12345678901234567e5"))
    assert.equal("12345678901234567E+5", q("12345678901234567E+5"))
    assert.equal("0.12345678901234567", q("0.12345678901234567"))
  end)

  it("leaves integers that are not JSON (leading zero, stray sign) alone", function()
    assert.equal("00000000000000001", q("00000000000000001"))
    assert.equal("-01234567890123456", q("-01234567890123456"))
    assert.equal("+12345678901234567", q("+12345678901234567"))
    assert.equal("--12345678901234567", q("--12345678901234567"))
    assert.equal("x12345678901234567", q("x12345678901234567"))
  end)

  it("never touches strings, escapes included", function()
    assert.equal('{"a":"17841405793187219"}', q('{"a":"17841405793187219"}'))
    assert.equal('["\\"12345678901234567"]', q('["\\"12345678901234567"]'))
    assert.equal('["\\\\","12345678901234567"]', q('["\\\\","12345678901234567"]'))
    assert.equal('["\\\\",["12345678901234567"]]', q('["\\\\",[12345678901234567]]'))
    assert.equal('["\\u0022 12345678901234567"]', q('["\\u0022 12345678901234567"]'))
    assert.equal('{"12345678901234567":"12345678901234567"}', q('{"12345678901234567":"12345678901234567"}'))
  end)

  it("copies malformed input without failing", function()
    assert.equal('{"a":"12345678901234567', q('{"a":"12345678901234567'))
    assert.equal('"abc\\', q('"abc\\'))
    assert.equal('"', q('"'))
    assert.equal("", q(""))
    assert.equal("\0\255\254{[}", q("\0\255\254{[}"))
    assert.equal('"12345678901234567"\0', q("12345678901234567\0"))
    assert.equal("]]]}}}", q("]]]}}}"))
  end)

  it("copes with deep nesting", function()
    local deep = ("["):rep(10000) .. "12345678901234567" .. ("]"):rep(10000)
    assert.equal(("["):rep(10000) .. '"12345678901234567"' .. ("]"):rep(10000), q(deep))
    local open = ("{\"a\":["):rep(10000)
    assert.equal(open, q(open))
  end)

  it("copes with large input", function()
    local parts = {}
    for i = 1, 20000 do parts[i] = "1000000000" .. string.format("%06d", i) end
    local out = q("[" .. table.concat(parts, ",") .. "]")
    local decoded = assert(cjson.decode(out))
    assert.equal(20000, #decoded)
    assert.equal("1000000000000001", decoded[1])
    assert.equal("1000000000020000", decoded[20000])
  end)

  it("makes IDs above 2^53 exact after cjson decoding", function()
    local decoded = cjson.decode(q('{"id":17841405793187219,"n":5,"s":"x"}'))
    assert.same({ id = "17841405793187219", n = 5, s = "x" }, decoded)
  end)

  it("raises with its name on a wrong type", function()
    local ok, err = pcall(function() core.quote_big_ints(nil) end)
    assert.is_false(ok)
    assert.truthy(err:find("quote_big_ints", 1, true))
    ok, err = pcall(function() core.quote_big_ints({}) end)
    assert.is_false(ok)
    assert.truthy(err:find("quote_big_ints", 1, true))
  end)
end)

describe("core.quote_big_ints: value position only (review C12)", function()
  it("never quotes a bare big integer used as an object key", function()
    -- invalid JSON must stay invalid: {"12345678901234567":1} would decode
    assert.equal("{12345678901234567:1}", q("{12345678901234567:1}"))
    assert.equal("{ 12345678901234567 :1}", q("{ 12345678901234567 :1}"))
    assert.equal('{"a":1,12345678901234567:2}', q('{"a":1,12345678901234567:2}'))
    assert.equal('{"a":1,\n 12345678901234567\t:2}', q('{"a":1,\n 12345678901234567\t:2}'))
    assert.is_nil(cjson.decode(q("{12345678901234567:1}")))
    assert.is_nil(cjson.decode(q('{"a":1,12345678901234567:2}')))
  end)

  it("quotes only after ':', '[', ',' or at the start", function()
    assert.equal('{"a":"12345678901234567"}', q('{"a":12345678901234567}'))
    assert.equal('{"a": \n"12345678901234567" }', q('{"a": \n12345678901234567 }'))
    assert.equal('[1,"12345678901234567", "12345678901234568"]', q("[1,12345678901234567, 12345678901234568]"))
    assert.equal('  "12345678901234567"  ', q("  12345678901234567  "))
    -- not after another value (invalid JSON stays as it is)
    assert.equal("[1 12345678901234567]", q("[1 12345678901234567]"))
    assert.equal('["a" 12345678901234567]', q('["a" 12345678901234567]'))
    assert.equal("{12345678901234567}", q("{12345678901234567}"))
  end)
end)

describe("core.json_prepare", function()
  local prep = core.json_prepare

  it("returns the very same text when nothing needs quoting", function()
    -- UTF-8 as decimal byte escapes: Lua 5.1 and 5.2 (make test-all) have no \u{...}
    local page = '{"data":[{"id":"17895695668004550","caption":"caf\195\169 \240\159\152\128"}],"n":5}'
    assert.equal(page, prep(page))
    assert.equal("", prep(""))
  end)

  it("quotes big integers in value position like quote_big_ints", function()
    for _, text in ipairs({ '{"user_id":17841405793187219}', "[12345678901234567,-12345678901234567]",
      "{12345678901234567:1}", '["\\\\",[12345678901234567]]', '{"a":"x\\"12345678901234567"}' }) do
      assert.equal(q(text), prep(text))
    end
  end)

  it("rejects invalid UTF-8 anywhere, inside strings and out", function()
    assert.same({ nil, "invalid UTF-8" }, { prep('{"a":"\255"}') })
    assert.same({ nil, "invalid UTF-8" }, { prep('{"a":"' .. ("x"):rep(40) .. '\192\175"}') }) -- overlong '/'
    assert.same({ nil, "invalid UTF-8" }, { prep('{"a":"\237\160\128"}') }) -- a surrogate
    assert.same({ nil, "invalid UTF-8" }, { prep('{"a":"\\\255"}') }) -- escaped, still checked
    assert.same({ nil, "invalid UTF-8" }, { prep("[1,\244\144\128\128]") }) -- above U+10FFFF
    assert.same({ nil, "invalid UTF-8" }, { prep('"' .. ("a"):rep(100) .. "\226\130") }) -- cut short
  end)

  it("rejects NUL bytes, where lua-cjson would stop reading", function()
    assert.same({ nil, "invalid JSON" }, { prep('{"a":1}\0junk') })
    assert.same({ nil, "invalid JSON" }, { prep('{"a":"x\0y"}') })
    assert.same({ nil, "invalid JSON" }, { prep('{"a":"' .. ("x"):rep(33) .. '\0"}') })
  end)

  it("agrees with valid_utf8 on text of every alignment", function()
    local chunk = 'x\195\169\226\130\172\240\159\152\128"\\"' -- é € 😀, as bytes for Lua 5.1/5.2
    for pad = 0, 20 do
      local text = '["' .. ("p"):rep(pad) .. chunk:gsub('"', "'") .. '"]'
      assert.equal(core.valid_utf8(text), prep(text) == text)
      local bad = '["' .. ("p"):rep(pad) .. "\128" .. ("q"):rep(20) .. '"]'
      assert.is_nil(prep(bad))
    end
  end)

  it("raises with its name on a wrong type", function()
    assert.error_matches(function() core.json_prepare(nil) end, "json_prepare", nil, true)
  end)
end)

describe("instagram.json.decode (json_prepare and the decoder in one C call)", function()
  local json = require "instagram.json"

  it("decodes big integers exactly, in short text and in text over its stack buffer", function()
    local t = assert(json.decode('{"access_token":"IGQV","user_id":17841405793187219}'))
    assert.equal("17841405793187219", t.user_id)
    assert.equal("IGQV", t.access_token)
    local items = {}
    for i = 1, 200 do items[i] = '{"id":1784140579318' .. string.format("%04d", i) .. ',"n":' .. i .. "}" end
    local long = '{"data":[' .. table.concat(items, ",") .. "]}"
    assert.is_true(#long > 4096)
    local page = assert(json.decode(long))
    assert.equal(200, #page.data)
    assert.equal("17841405793180001", page.data[1].id)
    assert.equal("17841405793180200", page.data[200].id)
    assert.equal(200, page.data[200].n)
  end)

  it("returns the decoded value alone, and json.null for a null document", function()
    assert.equal(1, select("#", json.decode('{"a":1}')))
    assert.equal(json.null, json.decode("null"))
    assert.same({ 1, "x" }, json.decode('[1,"x"]'))
  end)

  it("returns nil and a reason, never the text, for anything else", function()
    assert.same({ nil, "not a string" }, { json.decode(nil) })
    assert.same({ nil, "not a string" }, { json.decode(12) })
    assert.same({ nil, "not a string" }, { json.decode({}) })
    assert.same({ nil, "invalid UTF-8" }, { json.decode('{"a":"\255"}') })
    assert.same({ nil, "invalid JSON" }, { json.decode('{"a":1}\0junk') })
    assert.same({ nil, "invalid JSON" }, { json.decode('{"secret":IGQVtoken}') })
    assert.same({ nil, "invalid JSON" }, { json.decode("") })
    local deep = ("["):rep(300) .. ("]"):rep(300)
    assert.same({ nil, "invalid JSON" }, { json.decode(deep) })
  end)

  it("calls its decoder in protected mode: an error it raises is \"invalid JSON\", its message dropped", function()
    local seen
    local decode = core.exact_decoder(function(text)
      seen = text
      error("Expected value but found invalid token at character 1: IGQVsecret", 0)
    end)
    assert.same({ nil, "invalid JSON" }, { decode('{"a":12345678901234567}') })
    assert.equal('{"a":"12345678901234567"}', seen) -- the prepared text, big integer quoted
    -- an error object that is not a string, too; and the next call works as before
    assert.same({ nil, "invalid JSON" }, { core.exact_decoder(function() error({ "IGQVsecret" }) end)("{}") })
    assert.same({ 1 }, { core.exact_decoder(function() return 1 end)("{}") })
    -- the decoder json.decode is bound to raises on bad text (lua-cjson's own decode, not its safe one)
    assert.has_error(function() require("cjson").new().decode("{bad") end)
  end)
end)

describe("instagram.json.normalize_ids (one C walk)", function()
  local json = require "instagram.json"
  local has_integers = math.type ~= nil -- luacheck: ignore 143

  it("turns integral id and *_id numbers into exact strings, at every level", function()
    local v = json.normalize_ids({ id = 17841405.0, user_id = -3.0, ig_id = 2 ^ 53 - 1,
      data = { { id = 5.0, media = { { id = 6.0 } } } }, paging = { cursor_id = 7.0 } })
    assert.equal("17841405", v.id)
    assert.equal("-3", v.user_id)
    assert.equal("9007199254740991", v.ig_id)
    assert.equal("5", v.data[1].id)
    assert.equal("6", v.data[1].media[1].id)
    assert.equal("7", v.paging.cursor_id)
  end)

  it("leaves what is not an integral ID number alone", function()
    local v = json.normalize_ids({ id = 1.5, ids = 3.0, idx = "x", _id = 4.0, xid = 5.0, user_id = 2 ^ 60,
      name = "n", flag = true, [1] = 9.0 })
    assert.equal(1.5, v.id)
    assert.equal("4", v._id)
    assert.equal(2 ^ 60, v.user_id)
    assert.equal("n", v.name)
    assert.is_true(v.flag)
    assert.equal(3, v.ids)
    assert.equal(5, v.xid)
    assert.equal(9, v[1])
    if has_integers then
      assert.equal("integer", math.type(v.ids)) -- luacheck: ignore 143
      assert.equal("integer", math.type(v[1])) -- luacheck: ignore 143
      assert.equal("float", math.type(json.normalize_ids({ n = 2 ^ 63 }).n)) -- luacheck: ignore 143
      assert.equal("float", math.type(json.normalize_ids({ n = 0.5 }).n)) -- luacheck: ignore 143
    end
  end)

  it("returns anything that is not a table as it is, and the table itself", function()
    assert.is_nil(json.normalize_ids(nil))
    assert.is_nil(json.normalize_ids(json.decode("{")))
    assert.equal("s", json.normalize_ids("s"))
    local t = {}
    assert.equal(t, json.normalize_ids(t))
  end)

  it("stops 65 levels down, and takes a deep document without overflowing the C stack", function()
    local root = {}
    local node = root
    for _ = 1, 70 do node.child = { id = 1.0 }; node = node.child end
    json.normalize_ids(root)
    node = root
    for depth = 1, 70 do
      node = node.child
      if depth <= 64 then assert.equal("1", node.id) else assert.equal(1, node.id) end
    end
    local deep = json.decode(("["):rep(190) .. '{"id":1}' .. ("]"):rep(190))
    assert.equal(deep, json.normalize_ids(deep))
  end)
end)
