-- Makes nginx end the current downstream connection with a TCP RST instead
-- of a FIN: finds the connection's descriptor by its address pair and sets
-- SO_LINGER {on, 0}, so the close that follows ngx.exit(444) resets it.
-- Linux/LuaJIT only; returns false where that does not work (then the
-- caller's close is an ordinary FIN).
local ffi = require "ffi"
local bit = require "bit"

local M = {}

pcall(ffi.cdef, [[
struct fake_sockaddr_in { uint16_t family; uint16_t port; uint32_t addr; uint8_t zero[8]; };
struct fake_linger { int l_onoff; int l_linger; };
int getsockname(int fd, void *addr, uint32_t *len);
int getpeername(int fd, void *addr, uint32_t *len);
int setsockopt(int fd, int level, int name, const void *value, uint32_t len);
]])

local SOL_SOCKET, SO_LINGER, AF_INET = 1, 13, 2
local MAX_FD = 4096

local function port_of(sa)
    local p = sa.port
    return bit.bor(bit.rshift(p, 8), bit.band(bit.lshift(p, 8), 0xff00))
end

local function find_fd(local_port, remote_port)
    local sa = ffi.new("struct fake_sockaddr_in")
    local len = ffi.new("uint32_t[1]")
    for fd = 3, MAX_FD do
        len[0] = ffi.sizeof(sa)
        if ffi.C.getpeername(fd, sa, len) == 0 and sa.family == AF_INET and port_of(sa) == remote_port then
            len[0] = ffi.sizeof(sa)
            if ffi.C.getsockname(fd, sa, len) == 0 and port_of(sa) == local_port then return fd end
        end
    end
    return nil
end

function M.arm()
    local ok, fd = pcall(find_fd, tonumber(ngx.var.server_port), tonumber(ngx.var.remote_port))
    if not ok or not fd then return false end
    local linger = ffi.new("struct fake_linger", 1, 0)
    return ffi.C.setsockopt(fd, SOL_SOCKET, SO_LINGER, linger, ffi.sizeof(linger)) == 0
end

return M
