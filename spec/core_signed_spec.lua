-- instagram.core.verify_signed_request: signature checks only (JSON checks live in Lua)
local core = require "instagram.core"

local VALID_KEY = "Mf_s6nTb38UYqioBmPqu0Ewm9souPZB9I2fIGwV729U."
  .. "eyJ1c2VyX2lkIjoiMCIsImFsZ29yaXRobSI6IkhNQUMtU0hBMjU2IiwiaXNzdWVkX2F0IjoxNjI0MjQ0MTU2fQ"
local VALID_APPSECRET = "N32LNcvDGXq0GI1jxm-tj1ysJh2uqkNIBcUhUmTp19k."
  .. "eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImV4cGlyZXMiOjEyOTE4NDA0MDAsImlzc3VlZF9hdCI6MTI5MTgzNjgwMCwidXNl"
  .. "cl9pZCI6IjIxODQ3MSJ9"
local VALID_PADDED = "U0_O1MqqNKUt32633zAkdd2Ce-jGVgRgJeRauyx_zC8=."
  .. "eyJvYXV0aF90b2tlbiI6ImZvb190b2tlbiIsImFsZ29yaXRobSI6IkhNQUMtU0hBMjU2IiwiaXNzdWVkX2F0IjozMjEsImNvZGUi"
  .. "OiJmb29fY29kZSIsInN0YXRlIjoiZm9vX3N0YXRlIiwidXNlcl9pZCI6MTIzLCJmb28iOiJiYXIifQ=="

local function hex_to_bytes(hex)
  return (hex:gsub("..", function(h) return string.char(tonumber(h, 16)) end))
end

-- signs payload text the way Meta does: sig over the base64url payload as sent
local function sign(secret, payload_b64)
  return core.base64url_encode(hex_to_bytes(core.hmac_sha256_hex(secret, payload_b64))) .. "." .. payload_b64
end

local function rejected(sr, secret)
  local payload, reason = core.verify_signed_request(sr, secret)
  assert.is_nil(payload)
  assert.is_string(reason)
  assert.is_nil(reason:find(secret, 1, true), "reason leaks the secret: " .. reason)
  return reason
end

describe("core.verify_signed_request", function()
  it("accepts the known vectors and returns the payload JSON text", function()
    assert.equal('{"user_id":"0","algorithm":"HMAC-SHA256","issued_at":1624244156}',
      core.verify_signed_request(VALID_KEY, "key"))
    assert.equal('{"algorithm":"HMAC-SHA256","expires":1291840400,"issued_at":1291836800,"user_id":"218471"}',
      core.verify_signed_request(VALID_APPSECRET, "appsecret"))
  end)

  it("tolerates padding (php-graph-sdk vector)", function()
    local payload = core.verify_signed_request(VALID_PADDED, "foo_app_secret")
    assert.truthy(payload:find('"oauth_token":"foo_token"', 1, true))
    assert.truthy(payload:find('"user_id":123', 1, true))
  end)

  it("accepts what it signs itself, padded or not", function()
    local secret = "s3cr3t"
    local payload = core.base64url_encode('{"algorithm":"HMAC-SHA256","user_id":"1"}')
    assert.equal('{"algorithm":"HMAC-SHA256","user_id":"1"}', core.verify_signed_request(sign(secret, payload), secret))
    local padded = core.base64url_encode("{}") .. "="
    assert.equal("{}", core.verify_signed_request(sign(secret, padded), secret))
  end)

  it("rejects a flipped signature character", function()
    rejected("N" .. VALID_KEY:sub(2), "key")
    local dot = VALID_KEY:find(".", 1, true)
    local last = VALID_KEY:sub(dot - 1, dot - 1)
    for _, c in ipairs({ "A", "V", "W", "k" }) do
      if c ~= last then
        rejected(VALID_KEY:sub(1, dot - 2) .. c .. VALID_KEY:sub(dot), "key")
      end
    end
  end)

  it("rejects a flipped payload character", function()
    rejected(VALID_KEY:sub(1, -2) .. "R", "key")
    rejected(VALID_KEY:sub(1, -2) .. "g", "key")
    rejected((VALID_KEY:gsub("eyJ1", "eyJ2")), "key")
  end)

  it("rejects the wrong secret", function()
    assert.truthy(rejected(VALID_KEY, "not-the-key"):find("match", 1, true))
    rejected(VALID_KEY, "ke")
    rejected(VALID_KEY, "key ")
    rejected(VALID_APPSECRET, "key")
  end)

  it("rejects an empty secret", function()
    assert.is_nil(core.verify_signed_request(sign("", "e30"), ""))
  end)

  it("rejects structural problems", function()
    rejected("no-dot-at-all", "key")
    rejected(VALID_KEY .. ".extra", "key")
    rejected("a.b.c", "key")
    rejected(".eyJ9", "key")
    rejected(VALID_KEY:match("^[^.]+%."), "key")
    rejected(".", "key")
    rejected("", "key")
    rejected("..", "key")
  end)

  it("rejects the standard alphabet, whitespace and other bytes", function()
    rejected((VALID_KEY:gsub("_", "/")), "key")
    rejected((VALID_APPSECRET:gsub("%-", "+")), "appsecret")
    rejected(" " .. VALID_KEY, "key")
    rejected(VALID_KEY .. " ", "key")
    rejected(VALID_KEY .. "\n", "key")
    rejected((VALID_KEY:gsub("%.", " .")), "key")
    rejected(VALID_KEY .. "\0", "key")
    rejected("foo!.foo", "key")
    rejected("fake_signature.e30=", "key")
    rejected("fake_signature.e30", "key")
  end)

  it("rejects a signature of 31 or 33 bytes", function()
    local payload = "e30"
    local mac = hex_to_bytes(core.hmac_sha256_hex("key", payload))
    assert.truthy(rejected(core.base64url_encode(mac:sub(1, 31)) .. "." .. payload, "key"):find("32", 1, true))
    rejected(core.base64url_encode(mac .. "\0") .. "." .. payload, "key")
    rejected(core.base64url_encode(mac .. mac) .. "." .. payload, "key")
    assert.equal("{}", core.verify_signed_request(core.base64url_encode(mac) .. "." .. payload, "key"))
  end)

  it("rejects a correctly signed payload that is not base64url", function()
    local reason = rejected(sign("key", "e30!"), "key")
    assert.truthy(reason:find("payload", 1, true))
  end)

  it("rejects input longer than 64 KiB before decoding", function()
    local big = core.base64url_encode(("x"):rep(64 * 1024))
    local reason = rejected(sign("key", big), "key")
    assert.truthy(reason:find("64", 1, true))
    local fits = core.base64url_encode(("x"):rep(1000))
    assert.equal(("x"):rep(1000), core.verify_signed_request(sign("key", fits), "key"))
  end)

  it("never puts the secret in a reason", function()
    local secret = "Zm9v"
    for _, sr in ipairs({ "Zm9v", "Zm9v.Zm9v", "Zm9v.", ".Zm9v", "Zm9v!.Zm9v", VALID_KEY, sign("other", "Zm9v") }) do
      rejected(sr, secret)
    end
  end)

  it("raises with its name on a wrong type", function()
    local ok, err = pcall(function() core.verify_signed_request(nil, "key") end)
    assert.is_false(ok)
    assert.truthy(err:find("verify_signed_request", 1, true))
    ok, err = pcall(function() core.verify_signed_request(VALID_KEY, nil) end)
    assert.is_false(ok)
    assert.truthy(err:find("verify_signed_request", 1, true))
  end)
end)
