std = "max"
max_line_length = 120
files["spec/"] = { std = "+busted" }
files["spec/support/fake/"] = { globals = { "ngx" } }
files["lua/instagram/ngx.lua"] = { read_globals = { "ngx" } }
files["spec/ngx/harness.lua"] = { globals = { "ngx" } }
files["examples/openresty/"] = { globals = { "ngx" } }
exclude_files = { "build/", ".rocks54/", ".rocks51/" }
