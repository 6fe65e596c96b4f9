/* File helpers for the `instagram` command (bin/instagram): what plain Lua cannot do portably.
 * A token file is written with mode 0600 whatever the umask, through a temp file in the same
 * directory and a rename, so a reader sees the old file or the new one, never a torn one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "ig.h"

static int push_errno(lua_State *L, int err)
{
    lua_pushnil(L);
    lua_pushstring(L, strerror(err));
    lua_pushstring(L, err == ENOENT ? "missing" : "error");
    return 3;
}

/* file_mode(path) -> permission bits (number), "file"|"dir"|"other", owner uid
 *                  | nil, message, "missing"|"error" */
static int l_file_mode(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (stat(path, &st) != 0) return push_errno(L, errno);
    lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
    lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" : "other");
    lua_pushinteger(L, (lua_Integer)st.st_uid);
    return 3;
}

/* mkdir_private(path) -> true (made with mode 0700) | false (a directory was there)
 *                      | nil, message, "missing"|"error" */
static int l_mkdir_private(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (mkdir(path, 0700) == 0) {
        /* the umask may have taken bits away; 0700 exactly, whatever it was */
        if (chmod(path, 0700) != 0) return push_errno(L, errno);
        lua_pushboolean(L, 1);
        return 1;
    }
    if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    return push_errno(L, errno);
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* write_private(path, data) -> true | nil, message, "missing"|"error".
 * mkstemp makes the temp file O_EXCL next to path; fchmod sets 0600 regardless of the
 * umask; the data is synced before the rename and the directory after it. */
static int l_write_private(lua_State *L)
{
    size_t plen, len;
    const char *path = luaL_checklstring(L, 1, &plen);
    const char *data = luaL_checklstring(L, 2, &len);
    char *tmp, *slash;
    int fd, err;
    tmp = malloc(plen + sizeof(".tmp-XXXXXX"));
    if (tmp == NULL) return luaL_error(L, "write_private: out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp-XXXXXX", sizeof(".tmp-XXXXXX"));
    fd = mkstemp(tmp);
    if (fd < 0) {
        err = errno;
        free(tmp);
        return push_errno(L, err);
    }
    if (fchmod(fd, 0600) != 0 || write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        err = errno;
        close(fd);
        unlink(tmp);
        free(tmp);
        return push_errno(L, err);
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        err = errno;
        unlink(tmp);
        free(tmp);
        return push_errno(L, err);
    }
    /* make the rename itself durable: sync the directory (best effort) */
    slash = strrchr(tmp, '/');
    if (slash != NULL) {
        int dfd;
        if (slash == tmp) slash[1] = '\0';
        else slash[0] = '\0';
        dfd = open(tmp, O_RDONLY);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
    free(tmp);
    lua_pushboolean(L, 1);
    return 1;
}

/* isatty(fd) -> boolean: 0 stdin, 1 stdout, 2 stderr */
static int l_isatty(lua_State *L)
{
    lua_Integer fd = luaL_checkinteger(L, 1);
    lua_pushboolean(L, fd >= 0 && fd <= 1024 && isatty((int)fd) == 1);
    return 1;
}

void ig_open_cli_fs(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"file_mode", l_file_mode},
        {"mkdir_private", l_mkdir_private},
        {"write_private", l_write_private},
        {"isatty", l_isatty},
        {NULL, NULL}
    };
    ig_setfuncs(L, funcs);
}
