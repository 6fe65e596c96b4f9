-- Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/.
-- Run from the repository root with Lua 5.4: lua5.4 tools/gen_fuzz_corpus.lua
-- The seeds are the published vectors (SECURITY.md 2.3, INSTAGRAM.md 7.4),
-- the tutorial callback URLs, the token JSON bodies of the fake server
-- fixtures, and hand-made edge cases (deep nesting, escapes, padding).

local function write(target, name, bytes)
  local dir = "fuzz/corpus/" .. target
  os.execute("mkdir -p " .. dir)
  local f = assert(io.open(dir .. "/" .. name, "wb"))
  f:write(bytes)
  f:close()
end

---------------------------------------------------------------------------
-- signed: first byte = mode (% 3): 0 hidden secret, 1 "secret\nsr", 2 made here
local PHP_VALID = "U0_O1MqqNKUt32633zAkdd2Ce-jGVgRgJeRauyx_zC8=.eyJvYXV0aF90b2tlbiI6ImZvb190b2tlbiIsImFsZ29yaXRobSI6"
  .. "IkhNQUMtU0hBMjU2IiwiaXNzdWVkX2F0IjozMjEsImNvZGUiOiJmb29fY29kZSIsInN0YXRlIjoiZm9vX3N0YXRlIiwidXNlcl9pZCI6"
  .. "MTIzLCJmb28iOiJiYXIifQ=="
local PHP_BAD_ALGO = "T6yWrksHFBsAi-cgJp2KLPqsiNSSexU3czlBiRaaeTs=.eyJhbGdvcml0aG0iOiJGT08tQUxHT1JJVEhNIn0="
local PHP_NO_ALGO = "5xd-RDCU-sElaRQZAneUOtjBkV9edbnIL1NjqJMoXpU=.eyJmb28iOiJiYXIifQ=="
local META = "N32LNcvDGXq0GI1jxm-tj1ysJh2uqkNIBcUhUmTp19k.eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImV4cGlyZXMiOjEyOTE4"
  .. "NDA0MDAsImlzc3VlZF9hdCI6MTI5MTgzNjgwMCwidXNlcl9pZCI6IjIxODQ3MSJ9"
local BKRS = "Mf_s6nTb38UYqioBmPqu0Ewm9souPZB9I2fIGwV729U.eyJ1c2VyX2lkIjoiMCIsImFsZ29yaXRobSI6IkhNQUMtU0hBMjU2Iiwia"
  .. "XNzdWVkX2F0IjoxNjI0MjQ0MTU2fQ"

local given = {
  php_valid = "foo_app_secret\n" .. PHP_VALID,
  php_bad_algorithm = "foo_app_secret\n" .. PHP_BAD_ALGO,
  php_no_algorithm = "foo_app_secret\n" .. PHP_NO_ALGO,
  php_no_dot = "foo_app_secret\ninvalid_signed_request",
  php_bad_base64 = "foo_app_secret\nfoo!.foo",
  php_bad_mac = "foo_app_secret\nfake_signature.e30=",
  php_false_payload = "foo_app_secret\nfake_signature.ZmFsc2U=",
  meta_valid = "appsecret\n" .. META,
  meta_wrong_secret = "appsecreT\n" .. META,
  meta_flipped_first = "appsecret\nM" .. META:sub(2),
  meta_flipped_last = "appsecret\n" .. META:sub(1, 42) .. "l" .. META:sub(44),
  meta_two_dots = "appsecret\n" .. META .. ".e30",
  meta_std_alphabet = "appsecret\n" .. META:gsub("-", "+"):gsub("_", "/"),
  meta_whitespace = "appsecret\n" .. META:sub(1, 44) .. "\n" .. META:sub(45),
  bkrs_valid = "key\n" .. BKRS,
  empty = "appsecret\n",
  only_dot = "appsecret\n.",
  sig_only = "appsecret\nsig.",
  payload_only = "appsecret\n.payload",
  empty_secret = "\n" .. META,
}
for name, body in pairs(given) do write("signed", name, "\1" .. body) end
write("signed", "hidden_meta", "\0" .. META)
write("signed", "hidden_php", "\0" .. PHP_VALID)
-- mode 2: byte 0x4a: 74 % 3 == 2, secret length 1 + (74 >> 3) % 24 == 10, unpadded; 0x4d padded
local payload = '{"algorithm":"HMAC-SHA256","expires":1291840400,"issued_at":1291836800,"user_id":"218471"}'
write("signed", "made_meta_payload", "\x4a" .. "appsecret!" .. payload)
write("signed", "made_meta_payload_padded", "\x4e" .. "appsecret!" .. payload)
write("signed", "made_false", "\x02" .. "k" .. "false")

---------------------------------------------------------------------------
-- query: callback URLs and query strings (SECURITY.md 4.4, INSTAGRAM.md 2)
local queries = {
  success = "https://my.m.redirect.net/?code=AQBx-hBsH3XyZ#_",
  success_state = "https://my.m.redirect.net/?code=AQBx-hBsH3XyZ&state=XYZ#_",
  denied = "https://my.m.redirect.net/auth/?error=access_denied&error_reason=user_denied"
    .. "&error_description=The+user+denied+your+request",
  fake_success = "http://127.0.0.1:8443/cb?code=AQDp3TtBQQ-test-code&state=STATE#_",
  fake_denied = "http://127.0.0.1:8443/cb?error=access_denied&error_reason=user_denied"
    .. "&error_description=The+user+denied+your+request&state=STATE",
  encoded_hash = "code=AQDp3TtBQQ%23_",
  bare = "code=abc&state=def",
  repeated = "code=a&code=b&code=c&state=s&state=t",
  no_value = "code&state=&=v&&&",
  controls = "code=%00&state=%0d%0a&x=%0D%0A",
  double_encoded = "code=%2525&state=%25",
  plus_space = "q=a+b%20c%2Bd",
  semicolon = "a=1;b=2&c=3",
  non_ascii = "name=%C3%A9t%C3%A9&raw=\xc3\xa9",
  malformed = "a=%&b=%4&c=%zz&d=%%41",
  question_twice = "https://h/p?x=1?y=2&z=3#frag?w=4",
  pair_roundtrip = "code\0AQ/x y#_",
}
for name, body in pairs(queries) do write("query", name, body) end

---------------------------------------------------------------------------
-- quote_big_ints: token and Graph bodies (INSTAGRAM.md 10), nesting, escapes
local json = {
  token_basic = '{"access_token":"IGQVJtest","user_id":17841405793187219}',
  token_login = '{"access_token":"IGAAtest","user_id":27640875392278831,"permissions":["instagram_business_basic",'
    .. '"instagram_business_content_publish"]}',
  token_data = '{"data":[{"access_token":"IGAAtest","user_id":"27640875392278831","permissions":'
    .. '"instagram_business_basic,instagram_business_content_publish"}]}',
  long_lived = '{"access_token":"IGQVJlonglived","token_type":"bearer","expires_in":5183944}',
  me = '{"user_id":"17841477965412210","username":"biz","id":"28978671838402975"}',
  error_190 = '{"error":{"message":"Error validating access token","type":"OAuthException","code":190,'
    .. '"error_subcode":463,"fbtrace_id":"AbCdEf"}}',
  oauth_400 = '{"error_type":"OAuthException","code":400,"error_message":"Matching code was not found"}',
  numbers = '[1234567890123456,-1234567890123456,123456789012345,0123456789012345678,'
    .. '12345678901234567.5,12345678901234567e3,-0,1e400,18446744073709551616]',
  escapes = '{"a\\"12345678901234567":"\\\\","b":"\\u0031234567890123456\\"","c":12345678901234567}',
  unterminated = '{"a":"12345678901234567\\',
  garbage = 'id=12345678901234567&x=abc12345678901234567_def',
  whitespace = ' \t\n{ "id" :\r\n 17841405793187219 , "n" : [ 27640875392278831 ] } ',
}
for name, body in pairs(json) do write("quote_big_ints", name, body) end
write("quote_big_ints", "deep_arrays", ("["):rep(300) .. "17841405793187219" .. ("]"):rep(300))
write("quote_big_ints", "deep_objects", ('{"a":'):rep(150) .. "27640875392278831" .. ("}"):rep(150))

---------------------------------------------------------------------------
-- base64url
local b64 = {
  payload_padded = "eyJmb28iOiJiYXIifQ==",
  payload_unpadded = "eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiJ9",
  false_padded = "ZmFsc2U=",
  empty_object = "e30=",
  signature = "N32LNcvDGXq0GI1jxm-tj1ysJh2uqkNIBcUhUmTp19k",
  signature_padded = "U0_O1MqqNKUt32633zAkdd2Ce-jGVgRgJeRauyx_zC8=",
  std_alphabet = "ab+/cd==",
  bad_char = "foo!",
  one_char = "A",
  two = "AA",
  three = "AAA",
  nonzero_bits = "AB",
  pad_wrong = "AA=",
  pad_three = "A===",
  pad_only = "====",
}
for name, body in pairs(b64) do write("base64url", name, body) end

---------------------------------------------------------------------------
-- webhook: first byte = mode (% 3): 0 hidden secret, 1 "header\nbody" under "appsecret", 2 made here
local DM = '{"object":"instagram","entry":[{"id":"17841400538867190","time":1762010783728,"messaging":[{"sender":'
  .. '{"id":"1129842642640637"},"timestamp":1762010770464,"message":{"mid":"aWdfZAG1","text":"Ol\\u00e1 '
  .. '\\ud83e\\udd70 https:\\/\\/x.example\\/a"}}]}]}'
local HEX64 = ("0123456789abcdef"):rep(4)
for name, header in pairs({
  good_shape = "sha256=" .. HEX64,
  upper = "sha256=" .. HEX64:upper(),
  no_prefix = HEX64,
  sha1 = "sha1=" .. HEX64:sub(1, 40),
  short = "sha256=" .. HEX64:sub(2),
  long = "sha256=" .. HEX64 .. "0",
  prefix_only = "sha256=",
  empty = "",
  spaced = " sha256=" .. HEX64,
}) do
  write("webhook", "given_" .. name, "\1" .. header .. "\n" .. DM)
end
write("webhook", "hidden_good_shape", "\0sha256=" .. HEX64 .. "\n" .. DM)
write("webhook", "made_dm", "\x02" .. "k" .. DM)
write("webhook", "made_long_secret", "\x7e" .. ("s"):rep(32) .. DM)
write("webhook", "made_empty_body", "\x02" .. "k")
