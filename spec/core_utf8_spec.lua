local core = require "instagram.core"

describe("core.valid_utf8", function()
  it("accepts ASCII, the empty string and well-formed sequences of every length", function()
    for _, s in ipairs({ "", "plain", "caf\195\169", "\226\152\128", "\240\159\152\128", "\0",
      "\239\191\191", "\244\143\191\191", "\194\128", "\224\160\128", "\237\159\191" }) do
      assert.is_true(core.valid_utf8(s), ("%q"):format(s))
    end
  end)

  it("rejects stray, overlong, surrogate, out-of-range and truncated sequences", function()
    for _, s in ipairs({
      "\128", "\191", "a\255b", "\254", "\192\128", "\193\191", "\224\128\128", "\224\159\191",
      "\237\160\128", "\237\191\191", "\240\128\128\128", "\244\144\128\128", "\245\128\128\128",
      "\195", "\226\152", "\240\159\152", "caf\195", "\195\40", "\226\40\161",
    }) do
      assert.is_false(core.valid_utf8(s), ("%q"):format(s))
    end
  end)

  it("raises on a non-string", function()
    assert.has_error(function() core.valid_utf8({}) end)
  end)
end)
