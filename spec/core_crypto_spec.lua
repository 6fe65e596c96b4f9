-- instagram.core crypto: hmac_sha256_hex, base64url, constant_time_equal, random_state
local core = require "instagram.core"

local function raises(fname, f) assert.error_matches(f, fname, nil, true) end

describe("core.hmac_sha256_hex", function()
  it("matches known vectors", function()
    assert.equal("90fbfcf15e74a36b89dbdb2a721d9aecffdfdddc5c83e27f7592594f71932481",
      core.hmac_sha256_hex("key", "value"))
    -- RFC 4231 test cases 1, 2 and 6
    assert.equal("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
      core.hmac_sha256_hex(("\11"):rep(20), "Hi There"))
    assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
      core.hmac_sha256_hex("Jefe", "what do ya want for nothing?"))
    assert.equal("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
      core.hmac_sha256_hex(("\170"):rep(131), "Test Using Larger Than Block-Size Key - Hash Key First"))
  end)

  it("computes the appsecret_proof", function()
    assert.equal("12f5dcbb7557d24b1d37fd180c45991c5999f325ece0af331c00a85d762f2b95",
      core.hmac_sha256_hex("foo_app_secret", "foo_access_token"))
  end)

  it("handles empty keys and messages and embedded NULs", function()
    assert.equal("b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad",
      core.hmac_sha256_hex("", ""))
    assert.not_equal(core.hmac_sha256_hex("k\0a", "m"), core.hmac_sha256_hex("k\0b", "m"))
    assert.not_equal(core.hmac_sha256_hex("k", "m\0a"), core.hmac_sha256_hex("k", "m\0b"))
  end)

  it("handles a large message", function()
    local mac = core.hmac_sha256_hex("k", ("x"):rep(4 * 1024 * 1024))
    assert.truthy(mac:match("^[0-9a-f]+$"))
    assert.equal(64, #mac)
  end)

  it("raises with its name on a wrong type", function()
    raises("hmac_sha256_hex", function() core.hmac_sha256_hex(nil, "m") end)
    raises("hmac_sha256_hex", function() core.hmac_sha256_hex("k", nil) end)
    raises("hmac_sha256_hex", function() core.hmac_sha256_hex({}, "m") end)
  end)
end)

describe("core.base64url_encode", function()
  it("matches RFC 4648 vectors without padding", function()
    local cases = { [""] = "", f = "Zg", fo = "Zm8", foo = "Zm9v", foob = "Zm9vYg", fooba = "Zm9vYmE",
      foobar = "Zm9vYmFy" }
    for plain, encoded in pairs(cases) do
      assert.equal(encoded, core.base64url_encode(plain))
    end
  end)

  it("uses the URL-safe alphabet", function()
    assert.equal("-__-", core.base64url_encode("\251\255\254"))
    assert.equal("AA", core.base64url_encode("\0"))
  end)

  it("raises with its name on a wrong type", function()
    raises("base64url_encode", function() core.base64url_encode(nil) end)
  end)
end)

describe("core.base64url_decode", function()
  it("decodes with or without padding", function()
    assert.equal("f", core.base64url_decode("Zg"))
    assert.equal("f", core.base64url_decode("Zg=="))
    assert.equal("fo", core.base64url_decode("Zm8"))
    assert.equal("fo", core.base64url_decode("Zm8="))
    assert.equal("foobar", core.base64url_decode("Zm9vYmFy"))
    assert.equal("", core.base64url_decode(""))
    assert.equal("\251\255\254", core.base64url_decode("-__-"))
  end)

  it("round-trips every byte and every length", function()
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local all = table.concat(bytes)
    for n = 0, 40 do
      local s = all:sub(1, n)
      assert.equal(s, core.base64url_decode(core.base64url_encode(s)))
    end
    assert.equal(all, core.base64url_decode(core.base64url_encode(all)))
  end)

  it("rejects anything outside the alphabet", function()
    for _, bad in ipairs({ "Zm9v+mFy", "Zm9v/mFy", "Zm9v YmFy", "Zm9v\nYmFy", " Zm9v", "Zm9v\0",
      "Zm9v!", "Zm=9", "=Zm9", "Z===", "====", "=" }) do
      local v, err = core.base64url_decode(bad)
      assert.is_nil(v, bad)
      assert.is_string(err)
    end
  end)

  it("rejects wrong padding and impossible lengths", function()
    for _, bad in ipairs({ "Zg=", "Zm8==", "Zm9v=", "Zm9v==", "Z", "Zm9vY", "Zg===" }) do
      assert.is_nil(core.base64url_decode(bad), bad)
    end
  end)

  it("rejects non-canonical encodings (unused bits set)", function()
    assert.is_nil(core.base64url_decode("Zh"))
    assert.is_nil(core.base64url_decode("Zm9"))
    assert.equal("fo", core.base64url_decode("Zm8"))
  end)

  it("raises with its name on a wrong type", function()
    raises("base64url_decode", function() core.base64url_decode(nil) end)
    raises("base64url_decode", function() core.base64url_decode({}) end)
  end)
end)

describe("core.constant_time_equal", function()
  it("compares full strings", function()
    assert.is_true(core.constant_time_equal("abc", "abc"))
    assert.is_false(core.constant_time_equal("abc", "abd"))
    assert.is_false(core.constant_time_equal("abc", "xbc"))
    assert.is_true(core.constant_time_equal("", ""))
  end)

  it("says false for different lengths", function()
    assert.is_false(core.constant_time_equal("abc", "abcd"))
    assert.is_false(core.constant_time_equal("", "a"))
  end)

  it("compares past embedded NULs", function()
    assert.is_false(core.constant_time_equal("a\0b", "a\0c"))
    assert.is_true(core.constant_time_equal("a\0b", "a\0b"))
  end)

  it("raises with its name on a wrong type", function()
    raises("constant_time_equal", function() core.constant_time_equal(nil, "a") end)
    raises("constant_time_equal", function() core.constant_time_equal("a", {}) end)
  end)
end)

describe("core.random_state", function()
  it("gives 32 bytes by default, base64url without padding", function()
    local s = core.random_state()
    assert.equal(43, #s)
    assert.truthy(s:match("^[A-Za-z0-9_-]+$"))
    assert.equal(32, #core.base64url_decode(s))
  end)

  it("honours nbytes in 16..256", function()
    assert.equal(22, #core.random_state(16))
    assert.equal(342, #core.random_state(256))
  end)

  it("does not repeat", function()
    local seen = {}
    for _ = 1, 1000 do
      local s = core.random_state(16)
      assert.is_nil(seen[s])
      seen[s] = true
    end
  end)

  it("raises with its name outside 16..256 or on a wrong type", function()
    raises("random_state", function() core.random_state(15) end)
    raises("random_state", function() core.random_state(257) end)
    raises("random_state", function() core.random_state(0) end)
    raises("random_state", function() core.random_state(-1) end)
    raises("random_state", function() core.random_state("many") end)
    raises("random_state", function() core.random_state({}) end)
  end)
end)
