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

  describe("scrubs echoes of a secret from every string field", function()
    local token = "IGQVJWZA2xYzTokenSecretValue1234567890"
    local secret = "eb8c7a1b2c3d4e5f60718293a4b5c6d7"

    -- no 12-character window of any secret, in any case, in any string of the error
    local function audit(label, err)
      assert.is_table(err, label)
      local texts = { tostring(err) }
      for k, v in pairs(err) do
        if type(v) == "string" then texts[#texts + 1] = k .. "=" .. v end
      end
      -- and as a reader decoding %XX would see them
      for i = 1, #texts do
        texts[#texts + 1] = texts[i]:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
      end
      for _, s in ipairs({ token, secret }) do
        for i = 1, #s - 11 do
          local window = s:sub(i, i + 11):lower()
          for _, t in ipairs(texts) do
            assert.is_nil(t:lower():find(window, 1, true), label .. ": " .. window .. " leaked into " .. t)
          end
        end
      end
    end

    local function graph(fields)
      local parts = {}
      for k, v in pairs(fields) do parts[#parts + 1] = string.format("%q:%q", k, v) end
      return '{"error":{' .. table.concat(parts, ",") .. ',"code":190}}'
    end

    local echoes = {
      { "exact", token },
      { "truncated", token:sub(1, -3) },
      { "prefix dropped", token:sub(5) },
      { "upper-cased", token:upper() },
      { "lower-cased", token:lower() },
      { "in the middle of a word", "x" .. token:sub(3, 20) .. "y" },
      { "the secret, truncated", secret:sub(1, 14) },
      { "the secret, upper-cased", secret:upper() },
      { "every character %XX-encoded", (token:gsub(".", function(c) return string.format("%%%02X", c:byte()) end)) },
      { "the secret %xx-encoded", (secret:gsub(".", function(c) return string.format("%%%02x", c:byte()) end)) },
    }
    for _, e in ipairs(echoes) do
      it(e[1] .. ", in message, type, fbtrace_id and any other field", function()
        for _, field in ipairs({ "message", "type", "fbtrace_id", "error_user_msg" }) do
          local _, err = errors.classify(res(400, graph({ [field] = "bad " .. e[2] .. " here",
            message = field == "message" and ("bad " .. e[2] .. " here") or "plain" })), { secret, token })
          audit(e[1] .. " in " .. field, err)
        end
        -- the OAuth endpoint's flat shape
        local _, err = errors.classify(res(400, '{"error_type":"' .. e[2] .. '","code":400,"error_message":"'
          .. e[2] .. '"}'), { secret, token })
        audit(e[1] .. " flat", err)
      end)
    end

    it("URL-encoded and JSON-escaped echoes of a secret with special characters", function()
      local odd = "AQ/xY+z_Tq9-Lm=Np/Rs+Tu_Vw9Xy"
      for _, echo in ipairs({ odd, "AQ%2FxY%2Bz_Tq9-Lm%3DNp%2fRs%2bTu_Vw9Xy", "AQ\\/xY+z_Tq9-Lm=Np\\/Rs+Tu_Vw9Xy" }) do
        local body = require("cjson").encode({ error = { message = "was " .. echo, code = 100 } })
        local _, err = errors.classify(res(400, body), { odd })
        assert.is_table(err, echo)
        for i = 1, #odd - 11 do
          local w = odd:sub(i, i + 11):lower()
          assert.is_nil(err.message:lower():find(w, 1, true), echo .. " -> " .. err.message)
        end
        assert.not_matches("AQ%2FxY%2Bz_Tq9", err.message, 1, true)
        assert.not_matches("Rs%2bTu_Vw9Xy", err.message, 1, true)
        assert.not_matches("Np\\/Rs+Tu_Vw", err.message, 1, true)
      end
    end)

    it("scrubs fields of errors made with errors.new too, and keeps short texts alone", function()
      local err = errors.new("denied", "m " .. token:upper(), { reason = token:sub(3), description = "ok",
        error = token:sub(1, 14) }, { token })
      audit("new", err)
      assert.equal("ok", err.description)
      -- a word shorter than 12 characters that happens to be in the secret is not redacted
      err = errors.new("api", "IGQVJWZA2xY", nil, { token })
      assert.equal("IGQVJWZA2xY", err.message)
    end)
  end)

  it("cuts long messages and strips control characters", function()
    local _, err = errors.classify(res(400, '{"error":{"message":"' .. string.rep("a", 5000) .. '\\r\\nX","code":1}}'))
    assert.is_true(#err.message < 400)
    assert.not_matches("[\r\n]", err.message)
  end)
end)
