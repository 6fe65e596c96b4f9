-- instagram.core URL functions: url_encode, url_decode, build_query, parse_query
local core = require "instagram.core"

local function raises(fname, f) assert.error_matches(f, fname, nil, true) end

local function all_bytes()
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  return table.concat(t)
end

describe("core.url_encode", function()
  it("keeps exactly the RFC 3986 unreserved bytes", function()
    local unreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    assert.equal(unreserved, core.url_encode(unreserved))
    local encoded = core.url_encode(all_bytes())
    assert.equal(256 * 3 - #unreserved * 2, #encoded)
  end)

  it("percent-encodes everything else in upper-case hex", function()
    assert.equal("a%20b%2F%C3%BC", core.url_encode("a b/\195\188"))
    assert.equal("%2B%26%3D%3F%23%25", core.url_encode("+&=?#%"))
    assert.equal("%FF%FE", core.url_encode("\255\254"))
  end)

  it("keeps embedded NULs", function()
    assert.equal("a%00b", core.url_encode("a\0b"))
  end)

  it("handles the empty string and large input", function()
    assert.equal("", core.url_encode(""))
    local big = ("/"):rep(1024 * 1024)
    assert.equal(3 * #big, #core.url_encode(big))
  end)

  it("round-trips every byte through url_decode", function()
    local s = all_bytes() .. all_bytes()
    assert.equal(s, core.url_decode(core.url_encode(s)))
    assert.equal(s, core.url_decode(core.url_encode(s), true))
  end)

  it("accepts a number like any Lua string function", function()
    assert.equal("12", core.url_encode(12))
  end)

  it("raises with its name on a wrong type", function()
    raises("url_encode", function() core.url_encode(nil) end)
    raises("url_encode", function() core.url_encode({}) end)
    raises("url_encode", function() core.url_encode(true) end)
  end)
end)

describe("core.url_decode", function()
  it("decodes %XX in either case", function()
    assert.equal("AJj", core.url_decode("%41%4a%6A"))
    assert.equal("a b/\195\188", core.url_decode("a%20b%2f%C3%bc"))
  end)

  it("keeps malformed sequences literally", function()
    assert.equal("%", core.url_decode("%"))
    assert.equal("%4", core.url_decode("%4"))
    assert.equal("%zz", core.url_decode("%zz"))
    assert.equal("%4g", core.url_decode("%4g"))
    assert.equal("%g4", core.url_decode("%g4"))
    assert.equal("a%", core.url_decode("a%"))
    assert.equal("%A", core.url_decode("%%41"))
    assert.equal("100%", core.url_decode("100%25"))
  end)

  it("decodes %00 to a NUL and keeps raw NULs", function()
    assert.equal("a\0b", core.url_decode("a%00b"))
    assert.equal("a\0b", core.url_decode("a\0b"))
  end)

  it("decodes once only", function()
    assert.equal("%41", core.url_decode("%2541"))
  end)

  it("turns + into a space only when asked", function()
    assert.equal("a+b", core.url_decode("a+b"))
    assert.equal("a+b", core.url_decode("a+b", false))
    assert.equal("a b", core.url_decode("a+b", true))
    assert.equal("a+b", core.url_decode("a%2Bb", true))
  end)

  it("handles the empty string", function()
    assert.equal("", core.url_decode(""))
    assert.equal("", core.url_decode("", true))
  end)

  it("raises with its name on a wrong type", function()
    raises("url_decode", function() core.url_decode(nil) end)
    raises("url_decode", function() core.url_decode({}) end)
  end)
end)

describe("core.build_query", function()
  it("keeps the order of an array of pairs", function()
    assert.equal("z=1&a=x%20y&z=2", core.build_query({ { "z", "1" }, { "a", "x y" }, { "z", "2" } }))
  end)

  it("sorts the keys of a map bytewise", function()
    assert.equal("B=3&a=2&b=1", core.build_query({ b = "1", a = "2", B = "3" }))
    assert.equal("a=1&a%00=2&ab=3", core.build_query({ ["ab"] = "3", ["a\0"] = "2", a = "1" }))
  end)

  it("encodes keys and values", function()
    assert.equal("redirect_uri=https%3A%2F%2Fx.test%2Fcb%2F&s%20p=%26%3D",
      core.build_query({ { "redirect_uri", "https://x.test/cb/" }, { "s p", "&=" } }))
    assert.equal("k=a%00b", core.build_query({ k = "a\0b" }))
  end)

  it("converts numbers and booleans with tostring", function()
    assert.equal("a=1&b=true&c=false&d=1.5", core.build_query({ a = 1, b = true, c = false, d = 1.5 }))
    assert.equal("1=x", core.build_query({ { 1, "x" } }))
  end)

  it("gives an empty string for an empty table", function()
    assert.equal("", core.build_query({}))
  end)

  it("keeps empty values", function()
    assert.equal("a=", core.build_query({ { "a", "" } }))
  end)

  it("raises with its name on misuse", function()
    raises("build_query", function() core.build_query(nil) end)
    raises("build_query", function() core.build_query("a=b") end)
    raises("build_query", function() core.build_query({ a = {} }) end)
    raises("build_query", function() core.build_query({ a = function() end }) end)
    raises("build_query", function() core.build_query({ { "a", "b" }, "c" }) end)
    raises("build_query", function() core.build_query({ { "a" } }) end)
    raises("build_query", function() core.build_query({ { {}, "b" } }) end)
  end)

  it("round-trips through parse_query", function()
    local map = { ["a b"] = "c+d", ["é"] = "%", x = "" }
    assert.same(map, core.parse_query(core.build_query(map)))
  end)
end)

describe("core.parse_query", function()
  it("parses a whole URL or a bare query", function()
    assert.same({ code = "abc", state = "xyz" }, core.parse_query("https://app.test/cb?code=abc&state=xyz"))
    assert.same({ code = "abc", state = "xyz" }, core.parse_query("code=abc&state=xyz"))
  end)

  it("drops the fragment, including Instagram's #_", function()
    assert.same({ code = "abc" }, core.parse_query("https://app.test/cb?code=abc#_"))
    assert.same({ code = "abc" }, core.parse_query("code=abc#x=1&y=2"))
    -- a ? inside the fragment does not count: what is left is a bare "query" without pairs
    assert.same({ ["https://app.test/cb"] = "" }, core.parse_query("https://app.test/cb#?code=abc"))
    assert.same({}, core.parse_query("#?code=abc"))
  end)

  it("drops a trailing %23_ in either case of hex", function()
    assert.same({ code = "abc" }, core.parse_query("https://app.test/cb?code=abc%23_"))
    assert.same({ code = "abc" }, core.parse_query("code=abc%23_"))
    assert.same({ code = "abc" }, core.parse_query("code=abc%23_#_"))
  end)

  it("keeps a %23 that is not the trailing %23_", function()
    assert.same({ code = "a#_b" }, core.parse_query("code=a%23_b"))
    assert.same({ code = "abc#" }, core.parse_query("code=abc%23"))
    assert.same({ code = "abc#x" }, core.parse_query("code=abc%23x"))
  end)

  it("splits only after the first ?", function()
    assert.same({ b = "1?c=2" }, core.parse_query("a?b=1?c=2"))
    assert.same({}, core.parse_query("https://app.test/cb?"))
  end)

  it("decodes + and percent sequences once", function()
    assert.same({ ["a b"] = "c d+e", x = "%41" }, core.parse_query("a+b=c+d%2Be&x=%2541"))
  end)

  it("keeps malformed percent sequences", function()
    assert.same({ a = "%", b = "%4", c = "%zz", d = "\0" }, core.parse_query("a=%&b=%4&c=%zz&d=%00"))
  end)

  it("gives a key without = the empty value and skips empty pairs", function()
    assert.same({ flag = "", a = "1" }, core.parse_query("&&flag&&a=1&"))
    assert.same({}, core.parse_query("&&&"))
    assert.same({}, core.parse_query(""))
    assert.same({ [""] = "v" }, core.parse_query("=v"))
  end)

  it("keeps = inside a value", function()
    assert.same({ a = "b=c" }, core.parse_query("a=b=c"))
  end)

  it("does not split on ;", function()
    assert.same({ a = "1;b=2" }, core.parse_query("a=1;b=2"))
  end)

  it("turns repeated keys into arrays in order", function()
    assert.same({ a = { "1", "2", "3" }, b = "x" }, core.parse_query("a=1&b=x&a=2&a=3"))
    assert.same({ a = { "", "" } }, core.parse_query("a&a"))
  end)

  it("keeps embedded NULs", function()
    assert.same({ ["k\0"] = "v\0w" }, core.parse_query("k\0=v\0w"))
  end)

  it("copes with large hostile input", function()
    local t = core.parse_query(("a=1&"):rep(100000))
    assert.equal(100000, #t.a)
    local s = ("%"):rep(200000) .. "=" .. ("%zz"):rep(100000)
    local r = core.parse_query(s)
    assert.equal(("%zz"):rep(100000), r[("%"):rep(200000)])
  end)

  it("raises with its name on a wrong type", function()
    raises("parse_query", function() core.parse_query(nil) end)
    raises("parse_query", function() core.parse_query({}) end)
  end)
end)
