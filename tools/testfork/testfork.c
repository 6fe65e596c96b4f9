/* Test-only module "ig_testfork" (never shipped, never installed): fork and its
 * friends for the fork-safety specs (spec/core_fork_spec.lua). lua-posix has no
 * Lua 5.4 build on Debian, so this is the smallest thing that does it.
 *   fork() -> pid in the parent, 0 in the child, or nil, message
 *   wait(pid) -> exit status (or 128 + signal)
 *   getpid() -> pid
 *   exit_now(code): _exit(code), no finalizers, no stdio flush */
#include <errno.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>

int luaopen_ig_testfork(lua_State *L);

static int l_fork(lua_State *L)
{
    pid_t pid = fork();
    if (pid < 0) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    lua_pushinteger(L, (lua_Integer)pid);
    return 1;
}

static int l_wait(lua_State *L)
{
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            lua_pushnil(L);
            lua_pushstring(L, strerror(errno));
            return 2;
        }
    }
    lua_pushinteger(L, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return 1;
}

static int l_getpid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

static int l_exit_now(lua_State *L)
{
    _exit((int)luaL_optinteger(L, 1, 0));
    return 0;
}

int luaopen_ig_testfork(lua_State *L)
{
    lua_newtable(L);
    lua_pushcfunction(L, l_fork);
    lua_setfield(L, -2, "fork");
    lua_pushcfunction(L, l_wait);
    lua_setfield(L, -2, "wait");
    lua_pushcfunction(L, l_getpid);
    lua_setfield(L, -2, "getpid");
    lua_pushcfunction(L, l_exit_now);
    lua_setfield(L, -2, "exit_now");
    return 1;
}
