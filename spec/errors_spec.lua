local errors = require "instagram.errors"

local function res(status, body, headers)
  return { status = status, body = body, headers = headers or {} }
end

describe("instagram.errors.classify", function()
  it("returns the decoded object of a 2xx JSON response", function()
    local v, err = errors.classify(res(200, '{"id":"1","username":"a"}'))
    assert.is_nil(err)
    assert.same({ id = "1", username = "a" }, v)
  end)

  it("maps the Graph error body, with flags for an invalid token", function()
    local _, err = errors.classify(res(400, '{"error":{"message":"Error validating access token: Session has expired",'
      .. '"type":"OAuthException","code":190,"error_subcode":463,"fbtrace_id":"AbCdEf"}}'))
    assert.equal("api", err.kind)
    assert.equal(400, err.status)
    assert.equal(190, err.code)
    assert.equal(463, err.subcode)
    assert.equal("OAuthException", err.type)
    assert.equal("AbCdEf", err.fbtrace_id)
    assert.is_true(err.token_invalid)
    assert.is_nil(err.transient)
    assert.equal("instagram: api error 190/463 (OAuthException): Error validating access token: Session has expired",
      tostring(err))
  end)

  it("maps the OAuth endpoint's flat error body", function()
    local _, err = errors.classify(res(400, '{"error_type":"OAuthException","code":400,'
      .. '"error_message":"Matching code was not found or was already used"}'))
    assert.equal("api", err.kind)
    assert.equal(400, err.code)
    assert.equal("OAuthException", err.type)
    assert.equal("Matching code was not found or was already used", err.message)
  end)

  it("treats a 200 that carries an error object as an error", function()
    local _, err = errors.classify(res(200, '{"error":{"message":"x","type":"OAuthException","code":2}}'))
    assert.equal("api", err.kind)
    assert.is_true(err.transient)
  end)

  for _, code in ipairs({ 4, 17, 32, 613 }) do
    it("marks API code " .. code .. " as rate limited", function()
      local _, err = errors.classify(res(400, '{"error":{"message":"limit","code":' .. code .. '}}'))
      assert.is_true(err.rate_limited)
    end)
  end

  it("honours is_transient and codes 1, 2 and 341", function()
    for _, body in ipairs({
      '{"error":{"message":"m","code":100,"is_transient":true}}',
      '{"error":{"message":"m","code":1}}',
      '{"error":{"message":"m","code":341}}',
    }) do
      local _, err = errors.classify(res(400, body))
      assert.is_true(err.transient, body)
    end
    local _, err = errors.classify(res(400, '{"error":{"message":"m","code":100}}'))
    assert.is_nil(err.transient)
  end)

  it("classifies statuses without an error body as http errors", function()
    local _, e500 = errors.classify(res(502, "<html>bad gateway</html>"))
    assert.equal("http", e500.kind)
    assert.equal(502, e500.status)
    assert.is_true(e500.transient)
    local _, e429 = errors.classify(res(429, "", { ["retry-after"] = "7" }))
    assert.is_true(e429.rate_limited)
    assert.equal(7, e429.retry_after)
    local _, e302 = errors.classify(res(302, "", { location = "https://elsewhere.example/" }))
    assert.equal("http", e302.kind)
    assert.equal(302, e302.status)
    assert.matches("redirect", e302.message)
  end)

  it("ignores a garbage or HTTP-date Retry-After and caps a huge one", function()
    local _, e1 = errors.classify(res(429, "", { ["retry-after"] = "soon" }))
    assert.is_nil(e1.retry_after)
    local _, e2 = errors.classify(res(429, "", { ["retry-after"] = "Wed, 21 Oct 2015 07:28:00 GMT" }))
    assert.is_nil(e2.retry_after)
    local _, e3 = errors.classify(res(429, "", { ["retry-after"] = "999999" }))
    assert.equal(3600, e3.retry_after)
  end)

  it("derives retry_after from estimated_time_to_regain_access", function()
    local _, err = errors.classify(res(400, '{"error":{"message":"m","code":80002}}', {
      ["x-business-use-case-usage"] =
        '{"178":[{"type":"instagram","call_count":100,"estimated_time_to_regain_access":3}]}',
    }))
    assert.equal(180, err.retry_after)
  end)

  it("rejects bodies that are not JSON objects", function()
    for _, body in ipairs({ "", "null", "[]", '"s"', "123", '{"access_token":"ab', "{}x", "<html></html>" }) do
      local v, err = errors.classify(res(200, body))
      assert.is_nil(v, body)
      assert.equal("response", err.kind, body)
    end
  end)

  it("never lets a secret into a message", function()
    local secret, token = "SECRET_SENTINEL_5f3a", "TOKEN_SENTINEL_9c1d"
    local _, err = errors.classify(res(400, '{"error":{"message":"bad SECRET_SENTINEL_5f3a and access_token='
      .. token .. '&x=1","code":100}}'), { secret, token })
    assert.not_matches(secret, tostring(err))
    assert.not_matches(token, tostring(err))
    assert.not_matches(token, err.message)
  end)

  it("cuts long messages and strips control characters", function()
    local _, err = errors.classify(res(400, '{"error":{"message":"' .. string.rep("a", 5000) .. '\\r\\nX","code":1}}'))
    assert.is_true(#err.message < 400)
    assert.not_matches("[\r\n]", err.message)
  end)
end)
