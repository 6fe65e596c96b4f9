-- The wire facts of each API profile, in one table (INSTAGRAM.md §0, §1, §3, §5).
local profiles = {
  basic_display = {
    name = "basic_display",
    endpoints = {
      authorize = "https://api.instagram.com/oauth/authorize",
      token = "https://api.instagram.com/oauth/access_token",
      graph = "https://graph.instagram.com",
    },
    scope = { "user_profile", "user_media" },
    user_fields = { "id", "username" },
  },
  instagram_login = {
    name = "instagram_login",
    endpoints = {
      authorize = "https://www.instagram.com/oauth/authorize",
      token = "https://api.instagram.com/oauth/access_token",
      graph = "https://graph.instagram.com",
    },
    scope = { "instagram_business_basic" },
    user_fields = { "id", "username" },
  },
}

profiles.default = "instagram_login"

return profiles
