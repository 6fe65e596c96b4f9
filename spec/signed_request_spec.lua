-- instagram.parse_signed_request and deletion_response (SECURITY.md §2, INSTAGRAM.md §7).
local instagram = require "instagram"

local VECTORS = {
  -- bk-rs/facebook-rs, secret "key"
  { sr = "Mf_s6nTb38UYqioBmPqu0Ewm9souPZB9I2fIGwV729U."
      .. "eyJ1c2VyX2lkIjoiMCIsImFsZ29yaXRobSI6IkhNQUMtU0hBMjU2IiwiaXNzdWVkX2F0IjoxNjI0MjQ0MTU2fQ",
    secret = "key", user_id = "0", issued_at = 1624244156 },
  -- Meta's data-deletion sample payload, secret "appsecret"
  { sr = "N32LNcvDGXq0GI1jxm-tj1ysJh2uqkNIBcUhUmTp19k."
      .. "eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImV4cGlyZXMiOjEyOTE4NDA0MDAsImlzc3VlZF9hdCI6MTI5MTgzNjgwMCwid"
      .. "XNlcl9pZCI6IjIxODQ3MSJ9",
    secret = "appsecret", user_id = "218471", issued_at = 1291836800, expires = 1291840400 },
  -- php-graph-sdk, padded, numeric user_id, secret "foo_app_secret"
  { sr = "U0_O1MqqNKUt32633zAkdd2Ce-jGVgRgJeRauyx_zC8=."
      .. "eyJvYXV0aF90b2tlbiI6ImZvb190b2tlbiIsImFsZ29yaXRobSI6IkhNQUMtU0hBMjU2IiwiaXNzdWVkX2F0IjozMjEsImNvZGUi"
      .. "OiJmb29fY29kZSIsInN0YXRlIjoiZm9vX3N0YXRlIiwidXNlcl9pZCI6MTIzLCJmb28iOiJiYXIifQ==",
    secret = "foo_app_secret", user_id = "123", issued_at = 321 },
}

local core = instagram.core

-- signs a payload the way Meta does: base64url(HMAC-SHA256(secret, encoded payload)) . encoded payload
local function sign(payload_json, secret)
  local payload = core.base64url_encode(payload_json)
  local mac = core.hmac_sha256_hex(secret, payload):gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
  return core.base64url_encode(mac) .. "." .. payload
end

describe("instagram.parse_signed_request", function()
  for i, v in ipairs(VECTORS) do
    it("verifies known-good vector " .. i, function()
      local data, err = instagram.parse_signed_request(v.sr, v.secret)
      assert.is_nil(err)
      assert.equal("HMAC-SHA256", data.algorithm)
      assert.equal(v.user_id, data.user_id)
      assert.equal(v.issued_at, data.issued_at)
      assert.equal(v.expires, data.expires)
    end)
  end

  it("keeps a user_id above 2^53 exact, as a number or a string", function()
    for _, body in ipairs({ '{"algorithm":"HMAC-SHA256","user_id":17841405793187219}',
                            '{"algorithm":"HMAC-SHA256","user_id":"17841405793187219"}' }) do
      local data = assert(instagram.parse_signed_request(sign(body, "s3cret"), "s3cret"))
      assert.equal("17841405793187219", data.user_id)
    end
  end)

  local good = VECTORS[2]
  local function flip(s, i)
    local c = s:sub(i, i)
    return s:sub(1, i - 1) .. (c == "A" and "B" or "A") .. s:sub(i + 1)
  end

  local negatives = {
    { "first signature character flipped", flip(good.sr, 1), good.secret },
    { "last signature character flipped", flip(good.sr, 43), good.secret },
    { "a payload character flipped", flip(good.sr, 60), good.secret },
    { "the wrong secret", good.sr, "appsecreT" },
    { "no dot", "invalid_signed_request", "x" },
    { "two dots", good.sr .. ".eyJ9", good.secret },
    { "empty", "", good.secret },
    { "only a dot", ".", good.secret },
    { "no payload", good.sr:match("^[^.]+") .. ".", good.secret },
    { "no signature", "." .. good.sr:match("%.(.+)$"), good.secret },
    { "bad base64 signature", "foo!.foo", "x" },
    { "standard base64 alphabet", good.sr:gsub("-", "+"), good.secret },
    { "whitespace", good.sr:sub(1, 20) .. " " .. good.sr:sub(21), good.secret },
    { "a newline", good.sr .. "\n", good.secret },
    { "a short signature", "fake_signature.e30=", "x" },
    { "a 31-byte signature", core.base64url_encode(string.rep("a", 31)) .. ".e30", "x" },
    { "a 33-byte signature", core.base64url_encode(string.rep("a", 33)) .. ".e30", "x" },
    { "1 MB of input", string.rep("A", 43) .. "." .. string.rep("A", 1024 * 1024), "x" },
    { "payload false (php-graph-sdk)", sign("false", "x"), "x" },
    { "a JSON array", sign("[1,2]", "x"), "x" },
    { "not JSON", sign("{nope", "x"), "x" },
    { "no algorithm (php-graph-sdk)", "5xd-RDCU-sElaRQZAneUOtjBkV9edbnIL1NjqJMoXpU=.eyJmb28iOiJiYXIifQ==",
      "foo_app_secret" },
    { "algorithm FOO-ALGORITHM (php-graph-sdk)",
      "T6yWrksHFBsAi-cgJp2KLPqsiNSSexU3czlBiRaaeTs=.eyJhbGdvcml0aG0iOiJGT08tQUxHT1JJVEhNIn0=", "foo_app_secret" },
    { "algorithm HMAC-SHA1", sign('{"algorithm":"HMAC-SHA1","user_id":"1"}', "x"), "x" },
    { "algorithm in lower case", sign('{"algorithm":"hmac-sha256","user_id":"1"}', "x"), "x" },
    { "algorithm with a trailing space", sign('{"algorithm":"HMAC-SHA256 ","user_id":"1"}', "x"), "x" },
    { "algorithm none", sign('{"algorithm":"none","user_id":"1"}', "x"), "x" },
    { "a user_id that is not an ID", sign('{"algorithm":"HMAC-SHA256","user_id":{"a":1}}', "x"), "x" },
  }
  for _, case in ipairs(negatives) do
    it("rejects " .. case[1] .. " with kind signature", function()
      local data, err = instagram.parse_signed_request(case[2], case[3])
      assert.is_nil(data)
      assert.equal("signature", err.kind)
      assert.is_string(err.message)
      assert.is_nil(tostring(err):find(case[3], 1, true), "secret in: " .. tostring(err))
    end)
  end

  it("says which check failed", function()
    local _, e1 = instagram.parse_signed_request(flip(good.sr, 1), good.secret)
    local _, e2 = instagram.parse_signed_request(sign('{"algorithm":"HMAC-SHA1"}', "x"), "x")
    local _, e3 = instagram.parse_signed_request("nodot", "x")
    assert.not_equal(e1.message, e2.message)
    assert.not_equal(e1.message, e3.message)
    assert.matches("algorithm", e2.message)
  end)

  it("raises on misuse, naming the function", function()
    assert.has_error(function() instagram.parse_signed_request(nil, "x") end,
      "instagram.parse_signed_request: signed_request must be a string")
    assert.has_error(function() instagram.parse_signed_request("a.b", "") end,
      "instagram.parse_signed_request: app_secret must be a non-empty string")
  end)

  it("is also a client method that uses the client's secret", function()
    local ig = instagram.new({ app_id = "1", app_secret = "appsecret", redirect_uri = "https://localhost/auth/" })
    local data = assert(ig:parse_signed_request(good.sr))
    assert.equal("218471", data.user_id)
    local nosecret = instagram.new({ app_id = "1", redirect_uri = "https://localhost/auth/" })
    assert.has_error(function() nosecret:parse_signed_request(good.sr) end,
      "ig:parse_signed_request: app_secret is required (set it in instagram.new)")
  end)
end)

describe("instagram.deletion_response", function()
  local cjson = require "cjson"

  it("makes the JSON Meta expects", function()
    local body = instagram.deletion_response("https://example.com/deletion?id=abc123", "abc123")
    assert.same({ url = "https://example.com/deletion?id=abc123", confirmation_code = "abc123" }, cjson.decode(body))
  end)

  it("rejects a non-https URL and a code that is not alphanumeric", function()
    assert.has_error(function() instagram.deletion_response("http://example.com/x", "abc") end)
    assert.has_error(function() instagram.deletion_response("https://example.com/x", "a-b") end,
      "instagram.deletion_response: confirmation_code must be a non-empty alphanumeric string")
    assert.has_error(function() instagram.deletion_response("https://example.com/x", "") end)
    assert.has_error(function() instagram.deletion_response("https://example.com/x\r\nX: y", "abc") end)
    assert.has_error(function() instagram.deletion_response(nil, "abc") end)
  end)
end)
