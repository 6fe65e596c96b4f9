-- Default state of the fake: apps, users, media, modes. f:reset() restores it.
local M = {}

M.SCOPES = {
    basic_display = {
        valid = { user_profile = true, user_media = true },
        required = "user_profile",
        default = { "user_profile", "user_media" },
    },
    instagram_login = {
        valid = {
            instagram_business_basic = true,
            instagram_business_content_publish = true,
            instagram_business_manage_messages = true,
            instagram_business_manage_comments = true,
            instagram_business_manage_insights = true,
        },
        required = "instagram_business_basic",
        default = { "instagram_business_basic" },
    },
}

-- Fields a node of each type knows, per API profile (edges included, as
-- Graph treats `media` and `children` as fields for field expansion).
M.USER_FIELDS = {
    basic_display = { "id", "username", "account_type", "media_count", "media" },
    instagram_login = {
        "id", "user_id", "username", "name", "account_type", "profile_picture_url",
        "followers_count", "follows_count", "media_count", "biography", "website", "media",
    },
}
M.MEDIA_FIELDS = {
    basic_display = {
        "id", "caption", "media_type", "media_url", "permalink", "thumbnail_url",
        "timestamp", "username", "is_shared_to_feed", "children",
    },
    instagram_login = {
        "id", "caption", "media_type", "media_url", "permalink", "thumbnail_url",
        "timestamp", "username", "is_shared_to_feed", "children", "media_product_type",
        "shortcode", "like_count", "comments_count", "is_comment_enabled", "owner", "alt_text",
    },
}

M.SHORT_TTL = 3600          -- short-lived token and authorization code lifetime
M.LONG_TTL = 60 * 86400     -- long-lived token lifetime
M.REFRESH_MIN_AGE = 86400   -- a long-lived token can be refreshed once this old

-- 7 media per user, newest first: IMAGE, CAROUSEL_ALBUM (3 children), VIDEO,
-- then 4 IMAGEs. Ids are 17-digit strings: 13-digit user prefix + 4 digits.
local function media_for(user_key, prefix, api, owner_id)
    local list = {}
    local base_day = 31
    for i = 1, 7 do
        local kind = (i == 2 and "CAROUSEL_ALBUM") or (i == 3 and "VIDEO") or "IMAGE"
        local id = prefix .. string.format("%04d", 1000 + i * 10)
        local ext = kind == "VIDEO" and "mp4" or "jpg"
        local m = {
            id = id,
            caption = string.format("Fake post %d of %s #fake", i, user_key),
            media_type = kind,
            media_url = string.format("https://cdn.example/%s/%d.%s", user_key, i, ext),
            permalink = string.format("https://www.instagram.com/p/FAKE%s%d/", user_key:upper(), i),
            timestamp = string.format("2017-08-%02dT18:10:00+0000", base_day - (i - 1) * 2),
            username = user_key,
        }
        if kind == "VIDEO" then
            m.thumbnail_url = string.format("https://cdn.example/%s/%d-thumb.jpg", user_key, i)
        end
        if api == "instagram_login" then
            m.media_product_type = kind == "VIDEO" and "REELS" or "FEED"
            m.shortcode = "FAKE" .. user_key:upper() .. i
            m.like_count = i * 3
            m.comments_count = i
            m.is_comment_enabled = true
            m.owner = { id = owner_id }
        end
        if kind == "CAROUSEL_ALBUM" then
            m.children = {}
            for c = 1, 3 do
                local ckind = c == 3 and "VIDEO" or "IMAGE"
                local child = {
                    id = prefix .. string.format("%04d", 1000 + i * 10 + c),
                    media_type = ckind,
                    media_url = string.format("https://cdn.example/%s/%d-%d.%s", user_key, i, c,
                        ckind == "VIDEO" and "mp4" or "jpg"),
                    permalink = m.permalink,
                    timestamp = m.timestamp,
                    username = user_key,
                }
                if ckind == "VIDEO" then
                    child.thumbnail_url = string.format("https://cdn.example/%s/%d-%d-thumb.jpg", user_key, i, c)
                end
                m.children[c] = child
            end
            m.media_url = m.children[1].media_url
        end
        list[i] = m
    end
    return list
end

function M.config()
    return {
        apps = {
            ["684477648739411"] = {
                secret = "eb8c7a1b2c3d4e5f60718293a4b5c6d7",
                redirect_uri = "https://localhost/auth/",
                api = "basic_display",
                shape = "basic",
            },
            ["990602627938098"] = {
                secret = "a1b2c3d4e5f60718293a4b5c6d7e8f90",
                redirect_uri = "https://localhost/auth/",
                api = "instagram_login",
                shape = "flat_array",
            },
        },
        users = {
            jayposiris = {
                api = "basic_display",
                id = "17841405793187219",
                username = "jayposiris",
                account_type = "PERSONAL",
                media_count = 7,
            },
            biz = {
                api = "instagram_login",
                id = "27640875392278831",
                user_id = "17841477965412210",
                username = "biz",
                name = "Biz Example",
                account_type = "BUSINESS",
                profile_picture_url = "https://cdn.example/biz/profile.jpg",
                followers_count = 1234,
                follows_count = 56,
                media_count = 7,
                biography = "A fake business account",
                website = "https://biz.example/",
            },
        },
        media = {
            jayposiris = media_for("jayposiris", "1789569566800", "basic_display", "17841405793187219"),
            biz = media_for("biz", "1802345678901", "instagram_login", "17841477965412210"),
        },
        authorize_user = { basic_display = "jayposiris", instagram_login = "biz" },
        authorize_mode = "allow",
        foreign_next = false,
        cursor_loop = false,
        refresh_new_token = false,
    }
end

return M
