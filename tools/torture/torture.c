/* Allocation-failure torture for instagram.core (make test-torture).
 *
 * Embeds Lua 5.4 and routes every allocation that can happen inside a core
 * call through one counter: Lua's allocator (lua_newstate), libcurl's
 * (curl_global_init_mem, before the module's own curl_global_init, which is
 * then a refcounted no-op), OpenSSL's (CRYPTO_set_mem_functions, before any
 * OpenSSL allocation) and the core's own malloc/calloc/realloc (the torture
 * build force-includes tools/torture/hooks.h). Only allocations made while a
 * script call runs under torture.call() are counted ("armed").
 *
 * One pass of the script (tools/torture/script.lua) with nothing failing
 * counts K armed allocations. Then for each n in 1..K (or an evenly spread
 * sample of them, --shallow) a forked child runs the pass again with the n-th
 * armed allocation failing (a failed Lua allocation also fails Lua's one retry
 * after its emergency collection, so a memory error really is raised). The
 * script checks every outcome; the child closes its Lua state, so
 * LeakSanitizer sees anything the failure leaked. A child fails on a non-zero
 * exit, a signal, a timeout or any sanitizer report in its log
 * (build/torture/logs/run-<n>.log, kept only for failures).
 *
 * usage: torture [-j jobs] [-s shallow] [-n only] [-t timeout_s] script.lua
 * env:   TORTURE_CPATH (default build/torture/?.so) */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <dlfcn.h>

#include <sanitizer/common_interface_defs.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

enum { SRC_LUA, SRC_CURL, SRC_OPENSSL, SRC_CORE, NSRC };
static const char *const SRC_NAME[NSRC] = {"lua", "curl", "openssl", "core"};

/* exit codes of a child */
#define EXIT_INJECTED_BASE 10 /* + source of the failed allocation: pass ok */
#define EXIT_NOTED_BASE 20    /* + source: pass ok, with a torture.note() */
#define EXIT_NOT_REACHED 2    /* pass ok, but fewer than n allocations happened */
#define EXIT_SCRIPT 1         /* the script found a bad outcome */

/* ---------- the failing allocators (one process = one run) ---------- */

static int armed;
static long counter;  /* allocations counted while armed */
static long fail_at;  /* the allocation to fail, 0 for none */
static int injected = -1; /* source of the failed allocation */
static int noted;         /* the script called torture.note() */
static long per_source[NSRC];
static struct {
    int pending;
    void *p;
    size_t osize, nsize;
} lua_retry;

static int should_fail(int source)
{
    if (!armed) return 0;
    counter++;
    per_source[source]++;
    if (counter == fail_at) {
        injected = source;
        if (getenv("TORTURE_TRACE")) {
            fprintf(stderr, "torture: failing allocation %ld (%s) here:\n", counter, SRC_NAME[source]);
            __sanitizer_print_stack_trace();
        }
        return 1;
    }
    return 0;
}

/* the core's own allocations (hooks.h) */
void *ig_torture_malloc(size_t n);
void *ig_torture_calloc(size_t n, size_t size);
void *ig_torture_realloc(void *p, size_t n);

void *ig_torture_malloc(size_t n)
{
    return should_fail(SRC_CORE) ? NULL : malloc(n);
}

void *ig_torture_calloc(size_t n, size_t size)
{
    return should_fail(SRC_CORE) ? NULL : calloc(n, size);
}

void *ig_torture_realloc(void *p, size_t n)
{
    return should_fail(SRC_CORE) ? NULL : realloc(p, n);
}

/* libcurl */
static void *curl_m(size_t n)
{
    return should_fail(SRC_CURL) ? NULL : malloc(n);
}

static void curl_f(void *p)
{
    free(p);
}

static void *curl_r(void *p, size_t n)
{
    return should_fail(SRC_CURL) ? NULL : realloc(p, n);
}

static char *curl_s(const char *s)
{
    return should_fail(SRC_CURL) ? NULL : strdup(s);
}

static void *curl_c(size_t n, size_t size)
{
    return should_fail(SRC_CURL) ? NULL : calloc(n, size);
}

/* OpenSSL: with custom functions CRYPTO_malloc/CRYPTO_realloc hand every call
 * over, so these keep OpenSSL's own conventions (0 bytes: NULL; realloc of
 * NULL: malloc; realloc to 0: free) */
static void *ossl_m(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    if (n == 0) return NULL;
    return should_fail(SRC_OPENSSL) ? NULL : malloc(n);
}

static void *ossl_r(void *p, size_t n, const char *file, int line)
{
    if (p == NULL) return ossl_m(n, file, line);
    if (n == 0) {
        free(p);
        return NULL;
    }
    return should_fail(SRC_OPENSSL) ? NULL : realloc(p, n);
}

static void ossl_f(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    free(p);
}

/* Lua 5.4: must not fail when shrinking; when ptr is NULL osize is a type tag */
static void *lua_a(void *ud, void *p, size_t osize, size_t nsize)
{
    (void)ud;
    if (nsize == 0) {
        free(p);
        return NULL;
    }
    if (p == NULL || nsize > osize) {
        if (lua_retry.pending) {
            int same = lua_retry.p == p && lua_retry.osize == osize && lua_retry.nsize == nsize;
            lua_retry.pending = 0;
            if (same && armed) return NULL; /* Lua's retry after its emergency GC */
        }
        if (should_fail(SRC_LUA)) {
            lua_retry.pending = 1;
            lua_retry.p = p;
            lua_retry.osize = osize;
            lua_retry.nsize = nsize;
            return NULL;
        }
    }
    return realloc(p, nsize);
}

/* ---------- the torture table seen by the script ---------- */

/* torture.call(f, ...): pcall(f, ...) with the countdown armed */
static int t_call(lua_State *L)
{
    int n = lua_gettop(L), status;
    luaL_checktype(L, 1, LUA_TFUNCTION);
    armed = 1;
    status = lua_pcall(L, n - 1, LUA_MULTRET, 0);
    armed = 0;
    lua_retry.pending = 0;
    luaL_checkstack(L, 1, "torture.call");
    lua_pushboolean(L, status == LUA_OK);
    lua_insert(L, 1);
    return lua_gettop(L);
}

/* torture.injected(): the source name of the failed allocation, or nil */
static int t_injected(lua_State *L)
{
    if (injected < 0)
        lua_pushnil(L);
    else
        lua_pushstring(L, SRC_NAME[injected]);
    return 1;
}

/* torture.count(): armed allocations so far */
static int t_count(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)counter);
    return 1;
}

/* torture.note(msg): an outcome that is not the core's fault (the library
 * stays broken for new sessions too); printed, counted, its log kept */
static int t_note(lua_State *L)
{
    fprintf(stderr, "torture: run %ld note: %s\n", fail_at, luaL_checkstring(L, 1));
    noted = 1;
    return 0;
}

static int t_target(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)fail_at);
    return 1;
}

static const luaL_Reg torture_funcs[] = {
    {"call", t_call},
    {"injected", t_injected},
    {"count", t_count},
    {"target", t_target},
    {"note", t_note},
    {NULL, NULL}
};

/* ---------- one run (in a child process) ---------- */

static int run_pass(const char *script, long n, int report_fd)
{
    lua_State *L;
    const char *cpath = getenv("TORTURE_CPATH");
    int rc;

    fail_at = n;
    if (curl_global_init_mem(CURL_GLOBAL_ALL, curl_m, curl_f, curl_r, curl_s, curl_c) != CURLE_OK) {
        fprintf(stderr, "torture: curl_global_init_mem failed\n");
        return EXIT_SCRIPT;
    }
    {
        /* pin the module: lua_close unloads it, and then leak reports could
         * not name its functions */
        char so[512];
        const char *c = cpath ? cpath : "build/torture/?.so", *q = strchr(c, '?');
        if (q && strchr(c, ';') == NULL)
            snprintf(so, sizeof so, "%.*sinstagram/core%s", (int)(q - c), c, q + 1);
        else
            snprintf(so, sizeof so, "%s", c);
        if (dlopen(so, RTLD_NOW | RTLD_NODELETE) == NULL) {
            fprintf(stderr, "torture: cannot load %s: %s\n", so, dlerror());
            return EXIT_SCRIPT;
        }
    }
    L = lua_newstate(lua_a, NULL);
    if (L == NULL) {
        fprintf(stderr, "torture: lua_newstate failed\n");
        return EXIT_SCRIPT;
    }
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_pushstring(L, cpath ? cpath : "build/torture/?.so");
    lua_setfield(L, -2, "cpath");
    lua_pushliteral(L, "./?.lua");
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_setfuncs(L, torture_funcs, 0);
    lua_setglobal(L, "torture");

    rc = luaL_dofile(L, script);
    if (rc != LUA_OK) {
        fprintf(stderr, "torture: run %ld (failed allocation: %s): %s\n", n,
                injected >= 0 ? SRC_NAME[injected] : "none", lua_tostring(L, -1));
        rc = EXIT_SCRIPT;
    } else if (n == 0) {
        rc = 0;
    } else {
        rc = injected < 0 ? EXIT_NOT_REACHED : (noted ? EXIT_NOTED_BASE : EXIT_INJECTED_BASE) + injected;
    }
    lua_close(L); /* collects every session: anything leaked shows up at exit */
    curl_global_cleanup();
    if (report_fd >= 0) {
        char line[160];
        int len = snprintf(line, sizeof line, "%ld %ld %ld %ld %ld\n", counter, per_source[SRC_LUA],
                           per_source[SRC_CURL], per_source[SRC_OPENSSL], per_source[SRC_CORE]);
        if (write(report_fd, line, (size_t)len) != (ssize_t)len) rc = EXIT_SCRIPT;
        close(report_fd);
    }
    return rc;
}

/* ---------- the driver (parent) ---------- */

typedef struct {
    pid_t pid;
    long n;
    struct timespec started;
} child;

static const char *LOG_DIR = "build/torture/logs";
static int show_logs; /* -n: print the run's log whatever happened */

static void log_path(char *buf, size_t size, long n)
{
    snprintf(buf, size, "%s/run-%ld.log", LOG_DIR, n);
}

static pid_t spawn(const char *script, long n, int report_fd)
{
    pid_t pid;
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid == 0) {
        char path[256];
        int fd;
        log_path(path, sizeof path, n);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        exit(run_pass(script, n, report_fd));
    }
    return pid;
}

static double elapsed(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* 1 if the log has a sanitizer report */
static int log_has_report(const char *path)
{
    static const char *const marks[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                                        "SUMMARY: ", NULL};
    char line[4096];
    int found = 0, i;
    FILE *f = fopen(path, "r");
    if (f == NULL) return 0;
    while (!found && fgets(line, sizeof line, f))
        for (i = 0; marks[i]; i++)
            if (strstr(line, marks[i])) found = 1;
    fclose(f);
    return found;
}

static void print_log(const char *path)
{
    char line[4096];
    int lines = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL) return;
    while (fgets(line, sizeof line, f) && lines++ < 60) fputs(line, stderr);
    fclose(f);
}

/* Judges a finished child; returns 1 if it failed. Tallies injected sources. */
static int judge(long n, int status, int timed_out, long *by_source, long *not_reached, long *notes)
{
    char path[256];
    int failed = 0, code = -1, keep = 0;
    log_path(path, sizeof path, n);
    if (timed_out) {
        failed = 1;
    } else if (WIFSIGNALED(status)) {
        failed = 1;
    } else {
        code = WEXITSTATUS(status);
        if (code == EXIT_NOT_REACHED)
            (*not_reached)++;
        else if (code >= EXIT_INJECTED_BASE && code < EXIT_INJECTED_BASE + NSRC)
            by_source[code - EXIT_INJECTED_BASE]++;
        else if (code >= EXIT_NOTED_BASE && code < EXIT_NOTED_BASE + NSRC) {
            by_source[code - EXIT_NOTED_BASE]++;
            (*notes)++;
            keep = 1;
        }
        else
            failed = 1;
    }
    if (!failed && log_has_report(path)) failed = 1;
    if (failed) {
        fprintf(stderr, "torture: run %ld FAILED (%s%d); log %s:\n", n,
                timed_out ? "timeout, " : WIFSIGNALED(status) ? "signal " : "exit ",
                timed_out ? 0 : WIFSIGNALED(status) ? WTERMSIG(status) : code, path);
        print_log(path);
    } else if (show_logs) {
        print_log(path);
    } else if (!keep) {
        unlink(path);
    }
    return failed;
}

static void usage(void)
{
    fprintf(stderr, "usage: torture [-j jobs] [-s shallow] [-n only] [-t timeout_s] script.lua\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *script;
    long jobs = 2, shallow = 0, only = 0, k, n_runs, i, next = 0, failures = 0, not_reached = 0, notes = 0;
    long by_source[NSRC] = {0, 0, 0, 0}, k_source[NSRC] = {0, 0, 0, 0};
    double timeout_s = 120;
    long *targets;
    child *kids;
    int opt, pipefd[2], status, running = 0;
    char buf[256], path0[256];
    ssize_t got;
    FILE *rf;
    struct timespec t0;
    pid_t pid;

    while ((opt = getopt(argc, argv, "j:s:n:t:")) != -1) {
        switch (opt) {
        case 'j': jobs = strtol(optarg, NULL, 10); break;
        case 's': shallow = strtol(optarg, NULL, 10); break;
        case 'n': only = strtol(optarg, NULL, 10); break;
        case 't': timeout_s = strtod(optarg, NULL); break;
        default: usage();
        }
    }
    if (optind != argc - 1 || jobs < 1) usage();
    script = argv[optind];
    clock_gettime(CLOCK_MONOTONIC, &t0);

    /* before anything can make OpenSSL allocate; forked children inherit it */
    if (CRYPTO_set_mem_functions(ossl_m, ossl_r, ossl_f) != 1) {
        fprintf(stderr, "torture: CRYPTO_set_mem_functions failed (OpenSSL allocated already)\n");
        return 1;
    }
    if (mkdir(LOG_DIR, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "torture: cannot create %s: %s\n", LOG_DIR, strerror(errno));
        return 1;
    }

    /* the counting pass */
    if (pipe(pipefd) != 0) return 1;
    pid = spawn(script, 0, pipefd[1]);
    close(pipefd[1]);
    got = read(pipefd[0], buf, sizeof buf - 1);
    close(pipefd[0]);
    waitpid(pid, &status, 0);
    log_path(path0, sizeof path0, 0);
    if (got <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || log_has_report(path0)) {
        snprintf(buf, sizeof buf, "%s", path0);
        fprintf(stderr, "torture: the pass without failures did not succeed; log %s:\n", buf);
        print_log(buf);
        return 1;
    }
    buf[got] = '\0';
    if (sscanf(buf, "%ld %ld %ld %ld %ld", &k, &k_source[0], &k_source[1], &k_source[2], &k_source[3]) != 5
        || k <= 0) {
        fprintf(stderr, "torture: bad count report: %s\n", buf);
        return 1;
    }
    unlink(path0);
    printf("torture: one pass makes %ld allocations (lua %ld, curl %ld, openssl %ld, core %ld)\n", k,
           k_source[0], k_source[1], k_source[2], k_source[3]);

    /* which allocations to fail */
    if (only > 0) {
        n_runs = 1;
        show_logs = 1;
    } else if (shallow > 0 && shallow < k) {
        n_runs = shallow;
    } else {
        n_runs = k;
    }
    targets = (long *)malloc((size_t)n_runs * sizeof *targets);
    kids = (child *)calloc((size_t)jobs, sizeof *kids);
    if (targets == NULL || kids == NULL) return 1;
    for (i = 0; i < n_runs; i++) {
        if (only > 0)
            targets[i] = only;
        else if (n_runs == k)
            targets[i] = i + 1;
        else /* evenly spread, always including the first and the last */
            targets[i] = 1 + (n_runs > 1 ? i * (k - 1) / (n_runs - 1) : 0);
    }

    while (next < n_runs || running > 0) {
        while (running < jobs && next < n_runs) {
            long j;
            for (j = 0; j < jobs; j++)
                if (kids[j].pid == 0) break;
            kids[j].n = targets[next++];
            kids[j].pid = spawn(script, kids[j].n, -1);
            clock_gettime(CLOCK_MONOTONIC, &kids[j].started);
            running++;
        }
        pid = waitpid(-1, &status, WNOHANG);
        if (pid > 0) {
            long j;
            for (j = 0; j < jobs; j++) {
                if (kids[j].pid == pid) {
                    failures += judge(kids[j].n, status, 0, by_source, &not_reached, &notes);
                    kids[j].pid = 0;
                    running--;
                }
            }
            continue;
        }
        for (i = 0; i < jobs; i++) {
            if (kids[i].pid > 0 && elapsed(&kids[i].started) > timeout_s) {
                kill(kids[i].pid, SIGKILL);
                waitpid(kids[i].pid, &status, 0);
                failures += judge(kids[i].n, status, 1, by_source, &not_reached, &notes);
                kids[i].pid = 0;
                running--;
            }
        }
        {
            struct timespec nap = {0, 2000000};
            nanosleep(&nap, NULL);
        }
    }

    rf = stdout;
    fprintf(rf, "torture: failed allocations by source: lua %ld, curl %ld, openssl %ld, core %ld; "
                "%ld runs did not reach their allocation; %.1f s\n",
            by_source[0], by_source[1], by_source[2], by_source[3], not_reached, elapsed(&t0));
    if (notes)
        fprintf(rf, "torture: %ld runs left the library (not the session) broken for later calls; "
                    "their logs are in %s\n", notes, LOG_DIR);
    if (n_runs == k)
        fprintf(rf, "torture: %ld allocation sites exercised, %ld runs, %ld failures\n", k, n_runs, failures);
    else
        fprintf(rf, "torture: %ld of %ld allocation sites exercised (sampled), %ld runs, %ld failures\n",
                n_runs, k, n_runs, failures);
    free(targets);
    free(kids);
    return failures ? 1 : 0;
}
