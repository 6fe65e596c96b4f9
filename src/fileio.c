/* The few system calls that plain Lua lacks, for the file store (lua/instagram/store/file.lua) and
 * the `instagram` command (its token file, export): a file's mode, kind and owner, a private
 * directory (0700), a directory's listing, crash-safe private writes (a 0600 temp file whatever the
 * umask, fsync, rename, fsync of the directory), flock locks that the kernel drops when their holder
 * dies, and isatty. Failures return nil, "what: strerror", "missing" (ENOENT) or "error"; misuse
 * raises. */
#define _DEFAULT_SOURCE /* flock(2) is BSD, outside _POSIX_C_SOURCE */
#include "ig.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define FLOCK_MT "instagram.flock"
#define DIR_MT "instagram.dir"

typedef struct {
    int fd;
} flock_handle;

static int fail(lua_State *L, const char *what)
{
    int e = errno;
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, strerror(e));
    lua_pushstring(L, e == ENOENT ? "missing" : "error");
    return 3;
}

static int refuse(lua_State *L, const char *why)
{
    lua_pushnil(L);
    lua_pushstring(L, why);
    lua_pushliteral(L, "error");
    return 3;
}

/* fs_mkdir(path) -> true: creates the directory 0700 (whatever the umask) unless it exists as a
 * directory. An existing one must belong to this user (or root) and be writable by no one else:
 * in a directory others can write, they could replace the tokens or plant links. */
static int l_fs_mkdir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (mkdir(path, 0700) == 0) {
        /* the umask may have taken bits away, even the owner's read (then no fd can be had for
         * fchmod): the new directory, checked not to be a link, is chmod'ed by name */
        if (lstat(path, &st) != 0) return fail(L, "lstat");
        if (!S_ISDIR(st.st_mode)) return refuse(L, "not a directory");
        if (chmod(path, 0700) != 0) return fail(L, "chmod");
    } else if (errno != EEXIST) {
        return fail(L, "mkdir");
    }
    if (stat(path, &st) != 0) return fail(L, "stat");
    if (!S_ISDIR(st.st_mode)) return refuse(L, "not a directory");
    if (st.st_uid != geteuid() && st.st_uid != 0) return refuse(L, "the directory belongs to another user");
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
        return refuse(L, "the directory is writable by other users (chmod 700 it)");
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* fs_mode(path) -> permission bits (st_mode & 07777), "file"|"dir"|"other", owner uid; stat(2),
 * so a link is followed */
static int l_fs_mode(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (stat(path, &st) != 0) return fail(L, "stat");
    lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
    lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" : "other");
    lua_pushinteger(L, (lua_Integer)st.st_uid);
    return 3;
}

/* The open directory lives in a userdata whose __gc closes it, so a memory error raised while the
 * names are pushed leaks nothing. */
typedef struct {
    DIR *dir;
} dir_handle;

static int l_dir_gc(lua_State *L)
{
    dir_handle *h = (dir_handle *)luaL_checkudata(L, 1, DIR_MT);
    if (h->dir != NULL) {
        closedir(h->dir);
        h->dir = NULL;
    }
    return 0;
}

/* fs_list(dir) -> array of entry names, without . and .. */
static int l_fs_list(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    dir_handle *h = (dir_handle *)lua_newuserdata(L, sizeof *h);
    struct dirent *ent;
    int n = 0;
    h->dir = NULL;
    luaL_getmetatable(L, DIR_MT);
    lua_setmetatable(L, -2);
    lua_newtable(L);
    h->dir = opendir(path);
    if (h->dir == NULL) return fail(L, "opendir");
    errno = 0;
    while ((ent = readdir(h->dir)) != NULL) {
        if (strcmp(ent->d_name, ".") != 0 && strcmp(ent->d_name, "..") != 0) {
            lua_pushstring(L, ent->d_name);
            lua_rawseti(L, -2, ++n);
        }
        errno = 0;
    }
    if (errno != 0) {
        int e = errno;
        closedir(h->dir);
        h->dir = NULL;
        errno = e;
        return fail(L, "readdir");
    }
    closedir(h->dir);
    h->dir = NULL;
    return 1;
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Writes data to a new file made from the template tmpl (ending in XXXXXX, changed in place): O_EXCL,
 * 0600 whatever the umask, every byte, fsync, close. 0, or -1 with errno set, *what naming the step
 * and no file left. */
static int write_temp(char *tmpl, const char *data, size_t len, const char **what)
{
    int fd = mkstemp(tmpl);  /* O_EXCL, mode 0600 less the umask */
    if (fd < 0) {
        *what = "mkstemp";
        return -1;
    }
    if (fchmod(fd, 0600) != 0 || write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        int e = errno;
        *what = "write";
        close(fd);
        unlink(tmpl);
        errno = e;
        return -1;
    }
    if (close(fd) != 0) {
        int e = errno;
        *what = "close";
        unlink(tmpl);
        errno = e;
        return -1;
    }
    return 0;
}

/* Renames tmp over path, then syncs dir so the rename lasts. 0, or -1 with errno set and *what
 * naming the step: "rename" (tmp is still there), "open directory" or "fsync directory". */
static int commit(const char *tmp, const char *path, const char *dir, const char **what)
{
    int fd;
    if (rename(tmp, path) != 0) {
        *what = "rename";
        return -1;
    }
    fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *what = "open directory";
        return -1;
    }
    if (fsync(fd) != 0) {
        int e = errno;
        *what = "fsync directory";
        close(fd);
        errno = e;
        return -1;
    }
    close(fd);
    return 0;
}

static const char TEMP_TAIL[] = ".tmp-XXXXXX";

/* fs_write_temp(dir, data) -> path of a new 0600 file in dir holding data, synced to disk */
static int l_fs_write_temp(lua_State *L)
{
    size_t dlen, len;
    const char *dir = luaL_checklstring(L, 1, &dlen);
    const char *data = luaL_checklstring(L, 2, &len);
    /* dir "/" TEMP_TAIL, freed by the GC, even on error */
    char *tmpl = (char *)lua_newuserdata(L, dlen + 1 + sizeof TEMP_TAIL);
    const char *what;
    memcpy(tmpl, dir, dlen);
    tmpl[dlen] = '/';
    memcpy(tmpl + dlen + 1, TEMP_TAIL, sizeof TEMP_TAIL);  /* with the NUL */
    if (write_temp(tmpl, data, len, &what) != 0) return fail(L, what);
    lua_pushstring(L, tmpl);
    return 1;
}

/* fs_commit(tmp, path, dir) -> true: renames tmp over path, then syncs dir so the rename lasts */
static int l_fs_commit(lua_State *L)
{
    const char *tmp = luaL_checkstring(L, 1);
    const char *path = luaL_checkstring(L, 2);
    const char *dir = luaL_checkstring(L, 3);
    const char *what;
    if (commit(tmp, path, dir, &what) != 0) return fail(L, what);
    lua_pushboolean(L, 1);
    return 1;
}

/* fs_write(path, data) -> true: fs_write_temp in path's directory, then fs_commit over path; the
 * temp file is removed on failure. For one-shot writers (the token file, export's files). */
static int l_fs_write(lua_State *L)
{
    size_t plen, len, cut;
    const char *path = luaL_checklstring(L, 1, &plen);
    const char *data = luaL_checklstring(L, 2, &len);
    const char *slash = strrchr(path, '/');
    const char *dir, *what;
    char *tmpl;
    if (strlen(path) != plen) {  /* a NUL inside: no such name (rename would cut it short) */
        errno = EINVAL;
        return fail(L, "mkstemp");
    }
    cut = slash != NULL ? (size_t)(slash - path) + 1 : 0;  /* the directory part, with its '/' */
    /* path's directory: "." without a slash, "/" for a file at the root */
    if (slash == NULL) dir = ".";
    else if (slash == path) dir = "/";
    else {
        lua_pushlstring(L, path, (size_t)(slash - path));  /* returns void in Lua 5.1 */
        dir = lua_tostring(L, -1);
    }
    tmpl = (char *)lua_newuserdata(L, cut + sizeof TEMP_TAIL);
    memcpy(tmpl, path, cut);
    memcpy(tmpl + cut, TEMP_TAIL, sizeof TEMP_TAIL);
    if (write_temp(tmpl, data, len, &what) != 0) return fail(L, what);
    if (commit(tmpl, path, dir, &what) != 0) {
        int e = errno;
        if (strcmp(what, "rename") == 0) unlink(tmpl);  /* after the rename the name is not ours */
        errno = e;
        return fail(L, what);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* fs_lock(path, wait) -> lock handle, or false when another holder has it and wait is false */
static int l_fs_lock(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int wait = lua_toboolean(L, 2);
    flock_handle *h = (flock_handle *)lua_newuserdata(L, sizeof *h);
    int rc;
    h->fd = -1;
    luaL_getmetatable(L, FLOCK_MT);
    lua_setmetatable(L, -2);
    /* never through a link planted in the directory; read-only is enough for flock, and opens
     * again a lock file that a umask made 0400 */
    h->fd = open(path, O_RDONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (h->fd < 0) return fail(L, "open lock file");
    (void)fchmod(h->fd, 0600);  /* the umask's share back; a file of another user stays as it is */
    do {
        rc = flock(h->fd, LOCK_EX | (wait ? 0 : LOCK_NB));
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        int e = errno;
        close(h->fd);
        h->fd = -1;
        if (e == EWOULDBLOCK) {
            lua_pushboolean(L, 0);
            return 1;
        }
        errno = e;
        return fail(L, "flock");
    }
    return 1;
}

/* lock:unlock() -> true the first time, false after; also __gc and __close */
static int l_flock_unlock(lua_State *L)
{
    flock_handle *h = (flock_handle *)luaL_checkudata(L, 1, FLOCK_MT);
    if (h->fd < 0) {
        lua_pushboolean(L, 0);
        return 1;
    }
    close(h->fd);  /* closing the only descriptor drops the lock */
    h->fd = -1;
    lua_pushboolean(L, 1);
    return 1;
}

/* fs_isatty(fd) -> boolean: 0 stdin, 1 stdout, 2 stderr */
static int l_fs_isatty(lua_State *L)
{
    lua_Integer fd = luaL_checkinteger(L, 1);
    lua_pushboolean(L, fd >= 0 && fd <= 1024 && isatty((int)fd) == 1);
    return 1;
}

void ig_open_fileio(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"fs_mkdir", l_fs_mkdir},
        {"fs_mode", l_fs_mode},
        {"fs_list", l_fs_list},
        {"fs_write_temp", l_fs_write_temp},
        {"fs_commit", l_fs_commit},
        {"fs_write", l_fs_write},
        {"fs_lock", l_fs_lock},
        {"fs_isatty", l_fs_isatty},
        {NULL, NULL}
    };
    static const luaL_Reg methods[] = {
        {"unlock", l_flock_unlock},
        {NULL, NULL}
    };
    if (luaL_newmetatable(L, DIR_MT)) {
        lua_pushcfunction(L, l_dir_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, FLOCK_MT)) {
        lua_newtable(L);
        ig_setfuncs(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_flock_unlock);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_flock_unlock);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    ig_setfuncs(L, funcs);
}
