/* The libcurl session: one multi handle per session, whose connection cache
 * keeps connections alive across perform and perform_many, a share handle for
 * DNS and TLS sessions, and a small pool of "slots" (an easy handle and its
 * buffers, all kept across transfers) reused for consecutive requests.
 *
 * Rules kept here: no Lua API call inside a libcurl callback (callbacks only
 * append to C buffers and abort by returning 0); every C resource is owned by
 * the session userdata, so a Lua error at any point leaks nothing (close/__gc
 * frees it all); bytes that may hold tokens are wiped once used. libcurl
 * handles belong to the process that made them: after a fork the child
 * leaves them alone and makes its own (see session_adopt). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/types.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "ig.h"

#define SESSION_MT "instagram.session"
#define RESPONSE_MT "instagram.response"
#define REQUEST_MT "instagram.request"

#define DEFAULT_TIMEOUT_MS 30000L
#define DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define DEFAULT_MAX_RESPONSE ((curl_off_t)8 * 1024 * 1024)
#define DEFAULT_USER_AGENT "lua-instagram"
#define DEFAULT_CONCURRENCY 8
#define MAX_CONCURRENCY 64
#define MAX_TIMEOUT_MS 2147483647.0 /* libcurl's limit: a long of milliseconds on 32-bit longs */
#define TIMEOUT_RANGE "a number of seconds between 0 and 2147483.647"
#define MAX_HEADER_BYTES ((size_t)256 * 1024)
#define LOW_SPEED_LIMIT_BPS 1L
#define LOW_SPEED_TIME_S 15L
#define MAX_CONNECTION_AGE_S 300L
#define BUFFER_MIN ((size_t)16 * 1024)
#define BUFFER_KEEP ((size_t)64 * 1024) /* larger buffers are freed after their transfer */
#define MESSAGE_MAX (CURL_ERROR_SIZE + 128)
#define ORIGIN_MAX 256

typedef struct {
    char *data;
    size_t len, cap;
    size_t used; /* high-water mark of len since the last wipe: what may hold data */
} membuf;

/* one easy handle and everything libcurl may touch while it runs; the handle
 * keeps its per-session options across transfers (configure_easy) */
typedef struct {
    CURL *easy; /* NULL until first used, and again after an allocation failure */
    char errbuf[CURL_ERROR_SIZE];
    struct curl_slist *headers;
    membuf body, head;
    size_t max_body;
    int body_too_big, head_too_big, out_of_memory;
    int in_multi;
    int was_post; /* the handle last ran a POST: its POSTFIELDS pointer must be cleared */
    int fixed_headers; /* the handle points at a prepared request's header list */
    /* the per-transfer options the handle holds (valid when opts_known): a
     * GET sets again only those that differ from its last transfer */
    int opts_known, cur_fresh, cur_del;
    /* the origin the handle's CURLOPT_URL holds ("scheme://host[:port]/"), when the last
     * transfer went by CURLOPT_REQUEST_TARGET (split_target); "" otherwise */
    char cur_origin[ORIGIN_MAX];
    curl_off_t cur_max_file;
    long cur_timeout_ms, cur_connect_timeout_ms;
    int req; /* 1-based index of the request it runs, 0 when idle */
    /* a download (req.file): a 2xx body goes to fd as it arrives, at most file_max bytes */
    int has_fd, fd, file_too_big, write_errno;
    curl_off_t file_bytes, file_max;
} slot;

typedef struct {
    CURLM *multi; /* NULL before the first transfer of this process */
    CURLSH *share; /* DNS cache and TLS sessions of all the slots; NULL like multi */
    pid_t pid; /* the process that made multi, share and the easy handles */
    unsigned long id; /* tells the requests this session prepared (sess:prepare) */
    unsigned long forks; /* fork_count when pid was last checked (see session_adopt) */
    slot **slots; /* each slot is its own allocation: libcurl keeps pointers into it */
    int nslots;
    int busy;
    int closed;
    int allow_http;
    char *ca_file;
    char *user_agent;
    long timeout_ms, connect_timeout_ms;
    curl_off_t max_response;
} session;

/* a validated request; its strings are anchored in a Lua table for the whole batch */
typedef struct {
    const char *url;
    const char *query; /* the URL's query, kept out of error messages */
    size_t query_len;
    const char *body;
    size_t body_len;
    int post;
    int del;
    const char *file; /* a download: the file to create (O_EXCL, 0600) for a 2xx body */
    curl_off_t max_file;
    long timeout_ms, connect_timeout_ms;
    int hfirst, hcount; /* hcount headers: name, value, name, value... from anchor index hfirst */
    struct curl_slist *fixed_headers; /* a prepared request's lines, else NULL (hcount then 0) */
} prepared;

/* sess:prepare(req): a request checked once and copied (url, body, file after the struct),
 * with its header list built once; immutable. Its copies are wiped when it is collected. */
typedef struct {
    prepared p; /* its strings point into data */
    unsigned long owner; /* the id of the session that prepared it */
    size_t size; /* bytes of data */
    char data[1];
} request_ud;

typedef struct {
    session *s;
    prepared *reqs;
    int n, concurrency;
    int usual; /* fetch_object: results[1] is the usual success, decoded (see finish_request) */
} batch;

/* ---------- buffers ---------- */

/* Wipes what the buffer ever held since the last wipe and empties it; frees
 * it too when free_it or when it grew past BUFFER_KEEP. */
static void membuf_clear(membuf *b, int free_it)
{
    if (b->data) {
        if (b->used) OPENSSL_cleanse(b->data, b->used);
        if (free_it || b->cap > BUFFER_KEEP) {
            free(b->data);
            b->data = NULL;
            b->cap = 0;
        }
    }
    b->len = b->used = 0;
}

/* Appends n bytes, never growing past limit (the caller checked len + n <= limit).
 * Grows by copy so the old block can be wiped: realloc would leave it behind. */
static int membuf_append(membuf *b, const char *p, size_t n, size_t limit)
{
    size_t need = b->len + n;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : BUFFER_MIN;
        char *grown;
        while (cap < need && cap <= ((size_t)-1) / 2) cap *= 2;
        if (cap < need) cap = need;
        if (cap > limit) cap = limit;
        grown = (char *)malloc(cap);
        if (grown == NULL) return -1;
        if (b->len) memcpy(grown, b->data, b->len);
        if (b->data) {
            if (b->used) OPENSSL_cleanse(b->data, b->used);
            free(b->data);
        }
        b->data = grown;
        b->cap = cap;
        b->used = b->len;
    }
    memcpy(b->data + b->len, p, n);
    b->len = need;
    if (need > b->used) b->used = need;
    return 0;
}

/* ---------- libcurl callbacks: C only ---------- */

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    slot *sl = (slot *)ud;
    size_t n = size * nmemb;
    if (sl->has_fd) {
        long status = 0;
        curl_easy_getinfo(sl->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300) {
            const char *q = p;
            size_t left = n;
            if ((curl_off_t)n > sl->file_max - sl->file_bytes) {
                sl->file_too_big = 1;
                return 0;
            }
            while (left > 0) {
                ssize_t w = write(sl->fd, q, left);
                if (w < 0) {
                    if (errno == EINTR) continue;
                    sl->write_errno = errno;
                    return 0;
                }
                q += w;
                left -= (size_t)w;
            }
            sl->file_bytes += (curl_off_t)n;
            return n;
        }
        /* an error answer (403 "URL signature expired") is read into memory as usual */
    }
    if (n > sl->max_body - sl->body.len) {
        sl->body_too_big = 1;
        return 0;
    }
    if (n > 0 && membuf_append(&sl->body, p, n, sl->max_body) != 0) {
        sl->out_of_memory = 1;
        return 0;
    }
    return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    slot *sl = (slot *)ud;
    size_t n = size * nmemb;
    /* a status line starts a new response (1xx interim ones come first):
     * only the final response's headers are kept */
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) sl->head.len = 0;
    if (n > MAX_HEADER_BYTES - sl->head.len) {
        sl->head_too_big = 1;
        return 0;
    }
    if (n > 0 && membuf_append(&sl->head, p, n, MAX_HEADER_BYTES) != 0) {
        sl->out_of_memory = 1;
        return 0;
    }
    return n;
}

/* ---------- slots ---------- */

static void wipe_header_list(struct curl_slist *list)
{
    struct curl_slist *p;
    for (p = list; p; p = p->next)
        OPENSSL_cleanse(p->data, strlen(p->data));
    curl_slist_free_all(list);
}

static void drop_easy(slot *sl)
{
    if (sl->easy) curl_easy_cleanup(sl->easy);
    sl->easy = NULL;
    sl->was_post = 0;
}

/* Returns the slot to idle: out of the multi, the header list wiped and freed,
 * the used part of the buffers wiped, no pointer into a Lua string left in the
 * handle. The easy handle and the buffers stay for the next transfer (the
 * connections live in the multi handle either way). After an allocation
 * failure anywhere in the transfer the handle is dropped: libcurl may have
 * left it half set up, and the next transfer gets a fresh one from
 * curl_easy_init, which reports its failures (curl_easy_reset is never used:
 * it ignores an allocation failure half way through restoring the defaults).
 * Idempotent. */
static void slot_idle(session *s, slot *sl, int failed_alloc)
{
    if (sl->in_multi) {
        curl_multi_remove_handle(s->multi, sl->easy);
        sl->in_multi = 0;
    }
    if (sl->out_of_memory) failed_alloc = 1;
    if (sl->easy && !failed_alloc) {
        /* these setopts store a pointer and cannot fail */
        if (sl->headers || sl->fixed_headers)
            curl_easy_setopt(sl->easy, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
        if (sl->was_post) {
            curl_easy_setopt(sl->easy, CURLOPT_POSTFIELDS, (char *)NULL);
            curl_easy_setopt(sl->easy, CURLOPT_HTTPGET, 1L);
            sl->was_post = 0;
        }
    } else {
        drop_easy(sl);
    }
    if (sl->headers) {
        wipe_header_list(sl->headers);
        sl->headers = NULL;
    }
    sl->fixed_headers = 0;
    membuf_clear(&sl->body, 0);
    membuf_clear(&sl->head, 0);
    sl->body_too_big = sl->head_too_big = sl->out_of_memory = 0;
    if (sl->has_fd) {
        close(sl->fd);
        sl->has_fd = 0;
    }
    sl->fd = -1;
    sl->file_too_big = sl->write_errno = 0;
    sl->file_bytes = sl->file_max = 0;
    sl->errbuf[0] = '\0';
    sl->req = 0;
}

static void reset_all_slots(session *s)
{
    int i;
    for (i = 0; i < s->nslots; i++) slot_idle(s, s->slots[i], 0);
}

/* Makes sure at least n slots exist; returns how many do. */
static int ensure_slots(session *s, int n)
{
    if (n > s->nslots) {
        slot **grown = (slot **)realloc(s->slots, (size_t)n * sizeof *grown);
        if (grown == NULL) return s->nslots;
        s->slots = grown;
        while (s->nslots < n) {
            slot *sl = (slot *)calloc(1, sizeof *sl);
            if (sl == NULL) break;
            s->slots[s->nslots++] = sl;
        }
    }
    return s->nslots;
}

static slot *idle_slot(session *s, int limit)
{
    int i;
    for (i = 0; i < limit; i++)
        if (s->slots[i]->req == 0) return s->slots[i];
    return NULL;
}

/* Counts the fork() children this process descends from: the child handler runs in every
 * child (nginx workers, a forking server), so a session can tell "maybe another process" from
 * a number instead of a getpid() system call on every transfer. glibc drops the handler when
 * the module is unloaded (dlclose), and a reload registers it again. */
static unsigned long fork_count;
static int fork_watch; /* the handler is registered */

static void on_fork_child(void)
{
    fork_count++;
}

/* Forgets every libcurl handle without calling libcurl on it: they were made
 * by another process (we are a fork() child) and share its sockets and TLS
 * state, so any call could write to, shut down or read from the parent's
 * connections (curl_multi_cleanup sends a TLS close_notify). They are leaked:
 * a few KiB and one descriptor per inherited connection, for the life of the
 * child. The session's own buffers (not libcurl's) are wiped and freed. */
static void session_abandon_handles(session *s)
{
    int i;
    for (i = 0; i < s->nslots; i++) {
        slot *sl = s->slots[i];
        sl->easy = NULL; /* leaked on purpose */
        sl->in_multi = 0;
        sl->was_post = 0;
        if (sl->headers) { /* only ours: curl_slist_append's nodes, never given to a transfer here */
            wipe_header_list(sl->headers);
            sl->headers = NULL;
        }
        membuf_clear(&sl->body, 1);
        membuf_clear(&sl->head, 1);
    }
    s->multi = NULL;  /* leaked on purpose */
    s->share = NULL;  /* leaked on purpose */
}

/* Makes sure the session has libcurl handles of this process: after a fork
 * the child drops the inherited ones (session_abandon_handles) and starts
 * fresh, so it never reads the parent's responses nor touches its sockets.
 * Returns NULL or an error message (no transfer can start). */
static const char *session_adopt(session *s)
{
    /* getpid() is a system call: made only when a fork() happened since the last check, or
     * always when the fork handler could not be registered */
    if (!fork_watch || s->forks != fork_count) {
        pid_t self = getpid();
        if (s->pid != self) {
            if (s->multi || s->share) session_abandon_handles(s);
            s->pid = self;
        }
        s->forks = fork_count;
    }
    if (s->share == NULL) {
        CURLSH *share = curl_share_init();
        if (share == NULL) return "could not create a libcurl share handle";
        /* DNS answers and TLS sessions for every slot: a new connection, and a
         * POST's always-fresh one, resumes TLS instead of a full handshake.
         * The connection cache is the multi handle's (shared by all the easy
         * handles added to it). Single-threaded: no lock callbacks. */
        if (curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK
            || curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
            curl_share_cleanup(share);
            return "could not set up a libcurl share handle";
        }
        s->share = share;
    }
    if (s->multi == NULL && (s->multi = curl_multi_init()) == NULL)
        return "could not create a libcurl multi handle";
    return NULL;
}

static void session_free(session *s)
{
    int i;
    if (s->pid != getpid()) session_abandon_handles(s);
    for (i = 0; i < s->nslots; i++) {
        slot *sl = s->slots[i];
        if (s->multi) slot_idle(s, sl, 1);
        drop_easy(sl);
        membuf_clear(&sl->body, 1);
        membuf_clear(&sl->head, 1);
        free(sl);
    }
    free(s->slots);
    s->slots = NULL;
    s->nslots = 0;
    if (s->multi) curl_multi_cleanup(s->multi);
    s->multi = NULL;
    /* after every easy handle using it is gone */
    if (s->share) curl_share_cleanup(s->share);
    s->share = NULL;
    free(s->ca_file);
    s->ca_file = NULL;
    free(s->user_agent);
    s->user_agent = NULL;
    s->closed = 1;
}

/* ---------- starting and finishing a transfer ---------- */

static int has_prefix_ci(const char *s, const char *prefix)
{
    for (; *prefix; s++, prefix++) {
        char c = *s;
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != *prefix) return 0;
    }
    return 1;
}

#define SETOPT(opt, val)                                                      \
    do {                                                                      \
        if ((rc = curl_easy_setopt(sl->easy, opt, val)) != CURLE_OK) goto failed; \
    } while (0)

/* A fresh easy handle for sl with the options that are the same for every
 * transfer of the session. NULL or an error message. */
static const char *configure_easy(const session *s, slot *sl)
{
    CURLcode rc;
    sl->opts_known = 0;
    if ((sl->easy = curl_easy_init()) == NULL) return "could not create a libcurl handle";
    SETOPT(CURLOPT_PRIVATE, (void *)sl);
    SETOPT(CURLOPT_ERRORBUFFER, sl->errbuf);
    SETOPT(CURLOPT_SHARE, s->share);
    SETOPT(CURLOPT_PROTOCOLS_STR, s->allow_http ? "http,https" : "https");
    SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "https");
    SETOPT(CURLOPT_DEFAULT_PROTOCOL, "https");
    SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(CURLOPT_MAXREDIRS, 0L);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_LOW_SPEED_LIMIT, LOW_SPEED_LIMIT_BPS);
    SETOPT(CURLOPT_LOW_SPEED_TIME, LOW_SPEED_TIME_S);
    SETOPT(CURLOPT_MAXLIFETIME_CONN, MAX_CONNECTION_AGE_S);
    SETOPT(CURLOPT_MAXFILESIZE_LARGE, s->max_response);
    SETOPT(CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(CURLOPT_WRITEDATA, (void *)sl);
    SETOPT(CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(CURLOPT_HEADERDATA, (void *)sl);
    SETOPT(CURLOPT_USERAGENT, s->user_agent);
    if (s->ca_file) SETOPT(CURLOPT_CAINFO, s->ca_file);
    SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
    SETOPT(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    SETOPT(CURLOPT_NETRC, (long)CURL_NETRC_IGNORED);
    SETOPT(CURLOPT_PROXY, "");
    return NULL;

failed:
    drop_easy(sl);
    return curl_easy_strerror(rc);
}

/* the bytes split_target's scan stops at: NUL (the end), '/' (a dot segment may follow), and
 * those that make libcurl change the target: controls and space, DEL and above, '#', '\\'.
 * Filled once, when the module is opened. */
static unsigned char target_stop[256];

static void init_target_stop(void)
{
    int c;
    for (c = 0; c < 256; c++)
        target_stop[c] = (unsigned char)(c <= 0x20 || c >= 0x7f || c == '#' || c == '\\' || c == '/');
}

/* The usual request URL, "scheme://host[:port]/path?query", is given to libcurl as its origin
 * (CURLOPT_URL, "scheme://host[:port]/") and its request target (CURLOPT_REQUEST_TARGET,
 * "/path?query"). libcurl then parses only the short origin, and copies the target into the
 * request line whole: given the whole URL, it parses it, rebuilds it with its printf and then
 * writes the query into the request line one byte at a time through its printf again, which
 * for a Graph URL with a token costs more than the rest of the transfer.
 * Only a target libcurl would send unchanged takes this way: printable ASCII without space,
 * no fragment, no dot segment (which libcurl would remove). Anything else goes as the whole
 * URL, as before. There is no proxy (CURLOPT_PROXY ""), so the request line is always in
 * origin form. Returns the origin's length (the target starts there), or 0. */
static size_t split_target(const char *url)
{
    size_t start = has_prefix_ci(url, "https://") ? 8 : has_prefix_ci(url, "http://") ? 7 : 0;
    size_t origin;
    const unsigned char *p;
    if (start == 0) return 0;
    origin = start + strcspn(url + start, "/?#@\\");
    if (url[origin] != '/' || origin == start || origin + 1 >= ORIGIN_MAX) return 0;
    for (p = (const unsigned char *)url + origin;; p++) {
        while (!target_stop[*p]) p++;
        if (*p != '/') return *p == '\0' ? origin : 0;
        if (p[1] == '.') return 0;
    }
}

/* Configures sl for req and adds it to the multi. Returns NULL, or a message
 * for an error result (kind network) when the request could not start; the
 * caller then idles the slot with failed_alloc set, dropping the handle: every
 * option below is set again for each transfer, but a half-configured handle is
 * not worth keeping. */
/* Appends "Name: value" (or "Name;", libcurl's way to send a header with an empty value) to
 * *list; 0, or -1 when out of memory (*list is then unchanged). The line is made in a C buffer,
 * not as a Lua string: a value may be a secret (Authorization), and this copy is wiped once
 * libcurl has its own (which is wiped when freed). */
static int append_header_line(struct curl_slist **list, const char *name, size_t nl, const char *value,
                              size_t vl)
{
    struct curl_slist *grown;
    char small[256], *line;
    size_t n = nl + 2 + vl + 1;
    line = n <= sizeof small ? small : (char *)malloc(n);
    if (line == NULL) return -1;
    memcpy(line, name, nl);
    if (vl == 0) {
        memcpy(line + nl, ";", 2);
    } else {
        memcpy(line + nl, ": ", 2);
        memcpy(line + nl + 2, value, vl);
        line[nl + 2 + vl] = '\0';
    }
    grown = curl_slist_append(*list, line);
    OPENSSL_cleanse(line, n);
    if (line != small) free(line);
    if (grown == NULL) return -1;
    *list = grown;
    return 0;
}

static const char *start_request(lua_State *L, session *s, slot *sl, const prepared *req,
                                 int index, int anchor)
{
    CURLcode rc;
    CURLMcode mrc;
    const char *err;
    curl_off_t max_file;
    size_t origin;
    int i, known, fresh;

    if (!has_prefix_ci(req->url, "https://") && !(s->allow_http && has_prefix_ci(req->url, "http://")))
        return s->allow_http ? "URL scheme not allowed: only https and http URLs are accepted"
                             : "URL scheme not allowed: only https URLs are accepted (allow_http is off)";
    if (sl->easy == NULL && (err = configure_easy(s, sl)) != NULL) return err;
    sl->req = index;
    sl->max_body = (size_t)s->max_response;
    if (req->file) {
        int fd = open(req->file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
            sl->write_errno = errno;
            return strerror(errno);
        }
        sl->fd = fd;
        sl->has_fd = 1;
        sl->file_max = req->max_file;
    }

    for (i = 0; i < req->hcount; i++) {
        size_t nl, vl;
        const char *name, *value;
        int failed;
        lua_rawgeti(L, anchor, req->hfirst + 2 * i);
        lua_rawgeti(L, anchor, req->hfirst + 2 * i + 1);
        name = lua_tolstring(L, -2, &nl);
        value = lua_tolstring(L, -1, &vl);
        failed = append_header_line(&sl->headers, name, nl, value, vl);
        lua_pop(L, 2);
        if (failed) return "out of memory building request headers";
    }
    if (req->post && !req->fixed_headers) {
        /* no "Expect: 100-continue" round trip (a prepared POST has it in its list) */
        struct curl_slist *grown = curl_slist_append(sl->headers, "Expect:");
        if (grown == NULL) return "out of memory building request headers";
        sl->headers = grown;
    }

    /* every per-transfer option is set, or is known to hold this transfer's
     * value already (libcurl keeps options across transfers): nothing of an
     * earlier transfer carries over. The cache is forgotten first, so a
     * failure half way leaves nothing stale (the handle is dropped anyway). */
    known = sl->opts_known;
    sl->opts_known = 0;
    max_file = req->file ? req->max_file : s->max_response;
    origin = split_target(req->url);
    if (origin) {
        /* the origin with its "/", set only when it changed (libcurl keeps options) */
        if (!known || strncmp(sl->cur_origin, req->url, origin) != 0 || sl->cur_origin[origin] != '/'
            || sl->cur_origin[origin + 1] != '\0') {
            memcpy(sl->cur_origin, req->url, origin + 1);
            sl->cur_origin[origin + 1] = '\0';
            SETOPT(CURLOPT_URL, sl->cur_origin);
        }
        SETOPT(CURLOPT_REQUEST_TARGET, req->url + origin);
    } else {
        sl->cur_origin[0] = '\0';
        SETOPT(CURLOPT_URL, req->url);
        SETOPT(CURLOPT_REQUEST_TARGET, (const char *)NULL);
    }
    if (!known || sl->cur_max_file != max_file) SETOPT(CURLOPT_MAXFILESIZE_LARGE, max_file);
    if (!known || sl->cur_connect_timeout_ms != req->connect_timeout_ms)
        SETOPT(CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
    if (!known || sl->cur_timeout_ms != req->timeout_ms) SETOPT(CURLOPT_TIMEOUT_MS, req->timeout_ms);
    if (req->fixed_headers) {
        sl->fixed_headers = 1;
        SETOPT(CURLOPT_HTTPHEADER, req->fixed_headers);
    } else {
        SETOPT(CURLOPT_HTTPHEADER, sl->headers);
    }
    /* libcurl silently re-sends a request whose reused connection died
     * before any reply; a POST (a single-use code) must go out at most
     * once, so it always gets a connection of its own. A DELETE is retried
     * by the Lua layer, which must know whether an earlier try went out
     * (a retried delete that finds nothing succeeded): no silent replay by
     * libcurl either. Set for every POST and DELETE, never taken from the cache. */
    fresh = req->post || req->del;
    if (req->post) {
        /* the body is a Lua string anchored for the whole batch: no copy to wipe */
        sl->was_post = 1;
        SETOPT(CURLOPT_POST, 1L);
        SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        SETOPT(CURLOPT_POSTFIELDS, req->body ? req->body : "");
    } else {
        SETOPT(CURLOPT_HTTPGET, 1L);
    }
    if (fresh || !known || sl->cur_fresh) SETOPT(CURLOPT_FRESH_CONNECT, fresh ? 1L : 0L);
    if (req->del || !known || sl->cur_del)
        SETOPT(CURLOPT_CUSTOMREQUEST, req->del ? "DELETE" : (const char *)NULL);
    sl->cur_max_file = max_file;
    sl->cur_connect_timeout_ms = req->connect_timeout_ms;
    sl->cur_timeout_ms = req->timeout_ms;
    sl->cur_fresh = fresh;
    sl->cur_del = req->del;
    sl->opts_known = 1;

    mrc = curl_multi_add_handle(s->multi, sl->easy);
    if (mrc != CURLM_OK) return curl_multi_strerror(mrc);
    sl->in_multi = 1;
    return NULL;

failed:
    return curl_easy_strerror(rc);
}

#undef SETOPT

static const char *error_kind(CURLcode rc)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return "timeout";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_USE_SSL_FAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
        return "tls";
    case CURLE_UNSUPPORTED_PROTOCOL: /* the scheme was checked before: this is an HTTP/0.9 reply */
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_FILESIZE_EXCEEDED:
        return "response";
    default:
        return "network";
    }
}

static int contains(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
    size_t i;
    if (nlen == 0 || nlen > hlen) return 0;
    for (i = 0; i + nlen <= hlen; i++)
        if (memcmp(hay + i, needle, nlen) == 0) return 1;
    return 0;
}

/* Writes the error message of a failed transfer into msg. */
static const char *failure(const session *s, const slot *sl, const prepared *req, CURLcode rc,
                           char *msg, size_t size)
{
    size_t n;
    if (sl->write_errno) {
        snprintf(msg, size, "cannot write the file: %s", strerror(sl->write_errno));
        return "file";
    }
    if (sl->file_too_big || (sl->has_fd && rc == CURLE_FILESIZE_EXCEEDED)) {
        snprintf(msg, size, "response body larger than %llu bytes", (unsigned long long)sl->file_max);
        return "response";
    }
    if (sl->body_too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(msg, size, "response body larger than %llu bytes", (unsigned long long)s->max_response);
        return "response";
    }
    if (sl->head_too_big) {
        snprintf(msg, size, "response headers larger than %lu bytes", (unsigned long)MAX_HEADER_BYTES);
        return "response";
    }
    if (sl->out_of_memory) {
        snprintf(msg, size, "out of memory while reading the response");
        return "network";
    }
    snprintf(msg, size, "%s", sl->errbuf[0] ? sl->errbuf : curl_easy_strerror(rc));
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    if (contains(msg, n, req->query, req->query_len))
        snprintf(msg, size, "%s", curl_easy_strerror(rc));
    return error_kind(rc);
}

static void push_lower(lua_State *L, const char *p, size_t n)
{
    char small[128];
    size_t i;
    if (n > sizeof small) {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (i = 0; i < n; i++) {
            char c = p[i];
            luaL_addchar(&b, (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c);
        }
        luaL_pushresult(&b);
        return;
    }
    for (i = 0; i < n; i++) {
        char c = p[i];
        small[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    lua_pushlstring(L, small, n);
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* the response headers that the Lua layer reads from every response (Client:_record_usage) */
static const char *const USAGE_HEADERS[] = {"x-app-usage", "x-business-use-case-usage", NULL};

/* name (n bytes, any case) is one of the lower-case names of list */
static int name_in(const char *name, size_t n, const char *const *list)
{
    for (; *list; list++) {
        size_t i;
        if ((name[0] | 0x20) != (*list)[0] || strlen(*list) != n) continue; /* letters' case bit */
        for (i = 0; i < n; i++) {
            char c = name[i];
            if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
            if (c != (*list)[i]) break;
        }
        if (i == n) return 1;
    }
    return 0;
}

/* Pushes {lower-case-name = value} from the raw header block of the final
 * response (data, len); repeated names are joined with ", ". An obs-fold line
 * (leading space or tab) continues the header before it, joined with one space
 * (RFC 9112 5.2), as the cosocket transport does. Other lines that are not
 * "name: value" (the status line, malformed lines) are skipped. With only
 * (a NULL-terminated list of lower-case names), the headers of other names
 * are skipped too, fold lines and all: the table holds those names alone, and
 * is nil when none of them came. */
static void push_headers(lua_State *L, const char *data, size_t len, const char *const *only)
{
    const char *p = data, *end = data + len;
    const char *last_name = NULL; /* the header a fold line continues */
    size_t last_len = 0;
    int t = 0;
    if (!only) {
        const char *q = p;
        int lines = 0;
        /* sized once for every line (an upper bound on the names; at most 64, so a
         * block of empty lines cannot make a big table): no rehash as it fills */
        while (lines < 64 && q && q < end && (q = (const char *)memchr(q, '\n', (size_t)(end - q))) != NULL) {
            lines++;
            q++;
        }
        lua_createtable(L, 0, lines);
        t = lua_gettop(L);
    }
    while (p && p < end) {
        const char *eol = (const char *)memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end, *next = eol ? eol + 1 : end;
        const char *colon;
        while (line_end > p && line_end[-1] == '\r') line_end--;
        if (last_name && p < line_end && is_blank(*p)) {
            const char *v = p, *v_end = line_end;
            while (v < v_end && is_blank(*v)) v++;
            while (v_end > v && is_blank(v_end[-1])) v_end--;
            if (v < v_end) {
                push_lower(L, last_name, last_len);
                lua_pushvalue(L, -1);
                lua_rawget(L, t);
                lua_pushliteral(L, " ");
                lua_pushlstring(L, v, (size_t)(v_end - v));
                lua_concat(L, 3);
                lua_rawset(L, t);
            }
            p = next;
            continue;
        }
        last_name = NULL;
        colon = (const char *)memchr(p, ':', (size_t)(line_end - p));
        if (only && !(colon && colon > p && name_in(p, (size_t)(colon - p), only))) {
            p = next; /* last_name stays NULL: its fold lines are skipped too */
            continue;
        }
        if (colon && colon > p && !is_blank(*p)) {
            const char *name_end = p;
            while (name_end < colon && !is_blank(*name_end)) name_end++;
            if (name_end == colon) {
                const char *v = colon + 1, *v_end;
                while (v < line_end && is_blank(*v)) v++;
                for (v_end = line_end; v_end > v && is_blank(v_end[-1]); v_end--) {}
                if (t == 0) { /* the first of the names asked for: the table is made now */
                    lua_createtable(L, 0, 2);
                    t = lua_gettop(L);
                }
                push_lower(L, p, (size_t)(colon - p));
                lua_pushvalue(L, -1);
                lua_rawget(L, t);
                if (lua_isnil(L, -1)) {
                    lua_pop(L, 1);
                    lua_pushlstring(L, v, (size_t)(v_end - v));
                } else {
                    lua_pushliteral(L, ", ");
                    lua_pushlstring(L, v, (size_t)(v_end - v));
                    lua_concat(L, 3);
                }
                lua_rawset(L, t);
                last_name = p;
                last_len = (size_t)(colon - p);
            }
        }
        p = next;
    }
    if (t == 0) lua_pushnil(L); /* only: none of the names came */
}

/* __index of a response table: res.headers, on first read, is decoded from res.raw_headers
 * and kept in res (a plain table from then on: pairs and next see every header); any other
 * missing field is nil. */
static int response_index(lua_State *L)
{
    size_t len;
    const char *raw;
    if (lua_type(L, 2) != LUA_TSTRING || strcmp(lua_tostring(L, 2), "headers") != 0) return 0;
    lua_pushliteral(L, "raw_headers");
    lua_rawget(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) return 0;
    raw = lua_tolstring(L, -1, &len);
    push_headers(L, raw, len, NULL);
    lua_pushliteral(L, "headers");
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    return 1;
}

/* text, after Lua's %s whitespace, begins with '{' */
static int starts_with_brace(const char *t, size_t n)
{
    size_t i = 0;
    while (i < n && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\v' || t[i] == '\f' || t[i] == '\r'))
        i++;
    return i < n && t[i] == '{';
}

/* fetch_object's usual success, told as errors.classify tells it first: a 2xx whose body, after
 * whitespace, begins with '{' and decodes (decode: the function at that stack index) to a table
 * without an error, error_type or error_message field. Then the table, normalized (exact IDs), is
 * on the stack top and 1 is returned; else the stack is as it was and 0. */
static int push_usual_object(lua_State *L, int decode, long status, const char *body, size_t len)
{
    int top;
    if (status < 200 || status >= 300 || !starts_with_brace(body, len)) return 0;
    top = lua_gettop(L);
    lua_pushvalue(L, decode);
    lua_pushlstring(L, body, len);
    lua_call(L, 1, 1);
    if (lua_type(L, -1) == LUA_TTABLE) {
        lua_pushliteral(L, "error");
        lua_rawget(L, -2);
        lua_pushliteral(L, "error_type");
        lua_rawget(L, -3);
        lua_pushliteral(L, "error_message");
        lua_rawget(L, -4);
        if (lua_isnil(L, -1) && lua_isnil(L, -2) && lua_isnil(L, -3)) {
            lua_pop(L, 3);
            ig_normalize_ids(L, top + 1);
            return 1;
        }
    }
    lua_settop(L, top);
    return 0;
}

/* Stores the result of the transfer in sl at results[sl->req] and idles sl. With decode (a stack
 * index; 0 for none: perform and perform_many), the usual success of a plain transfer is stored
 * decoded instead, with its usage headers at results.usage_headers, and b->usual is set: no
 * response table is made for it (fetch_object). */
static void finish_request(lua_State *L, session *s, slot *sl, const prepared *req, CURLcode rc,
                           int results, int decode, batch *b)
{
    int index = sl->req;
    if (sl->in_multi) {
        curl_multi_remove_handle(s->multi, sl->easy);
        sl->in_multi = 0;
    }
    if (rc == CURLE_OK && !sl->body_too_big && !sl->head_too_big && !sl->out_of_memory) {
        long status = 0;
        curl_easy_getinfo(sl->easy, CURLINFO_RESPONSE_CODE, &status);
        if (decode && !sl->has_fd
            && push_usual_object(L, decode, status, sl->body.data ? sl->body.data : "", sl->body.len)) {
            lua_rawseti(L, results, index);
            push_headers(L, sl->head.data, sl->head.len, USAGE_HEADERS);
            lua_setfield(L, results, "usage_headers");
            b->usual = 1;
            slot_idle(s, sl, 0);
            return;
        }
        lua_createtable(L, 0, 4);
        lua_pushinteger(L, (lua_Integer)status);
        lua_setfield(L, -2, "status");
        /* the headers are decoded when res.headers is first read (response_index): most
         * responses are never asked for one. The usage headers, read from every response, are
         * decoded now, alone (no table when there are none). */
        lua_pushlstring(L, sl->head.data ? sl->head.data : "", sl->head.len);
        lua_setfield(L, -2, "raw_headers");
        push_headers(L, sl->head.data, sl->head.len, USAGE_HEADERS);
        if (lua_isnil(L, -1))
            lua_pop(L, 1);
        else
            lua_setfield(L, -2, "usage_headers");
        lua_pushlstring(L, sl->body.data ? sl->body.data : "", sl->body.len);
        lua_setfield(L, -2, "body");
        luaL_getmetatable(L, RESPONSE_MT);
        lua_setmetatable(L, -2);
        if (sl->has_fd) {
            lua_pushnumber(L, (lua_Number)sl->file_bytes);
            lua_setfield(L, -2, "bytes");
        }
    } else {
        char msg[MESSAGE_MAX];
        const char *kind = failure(s, sl, req, rc, msg, sizeof msg);
        long status = 0;
        curl_easy_getinfo(sl->easy, CURLINFO_RESPONSE_CODE, &status);
        lua_createtable(L, 0, 3);
        lua_pushstring(L, kind);
        lua_setfield(L, -2, "error");
        lua_pushstring(L, msg);
        lua_setfield(L, -2, "message");
        /* a response judged bad (over the size cap, say) had a status; a cut transfer has none */
        if (status > 0 && strcmp(kind, "response") == 0) {
            lua_pushinteger(L, (lua_Integer)status);
            lua_setfield(L, -2, "status");
        }
    }
    lua_rawseti(L, results, index);
    slot_idle(s, sl, rc == CURLE_OUT_OF_MEMORY);
}

static void push_error_result(lua_State *L, int results, int index, const char *kind, const char *msg)
{
    lua_createtable(L, 0, 2);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "error");
    lua_pushstring(L, msg);
    lua_setfield(L, -2, "message");
    lua_rawseti(L, results, index);
}

/* Fails every running transfer after a multi-level error. */
static void fail_running(lua_State *L, session *s, int limit, int results, const char *msg)
{
    int i;
    for (i = 0; i < limit; i++) {
        slot *sl = s->slots[i];
        if (sl->req) {
            push_error_result(L, results, sl->req, "network", msg);
            slot_idle(s, sl, 1);
        }
    }
}

/* Runs a batch to completion; called under lua_pcall so the caller can always
 * reset the slots. Arguments: batch (light userdata), anchor table, results table. */
static int run_batch(lua_State *L)
{
    batch *b = (batch *)lua_touserdata(L, 1);
    session *s = b->s;
    const int anchor = 2, results = 3, decode = lua_isnil(L, 4) ? 0 : 4;
    int next = 0, active = 0;
    int width = ensure_slots(s, b->concurrency);
    const char *err = session_adopt(s);

    if (err) {
        for (; next < b->n; next++) push_error_result(L, results, next + 1, "network", err);
        return 0;
    }
    if (width > b->concurrency) width = b->concurrency;
    if (width == 0) return luaL_error(L, "out of memory");

    for (;;) {
        CURLMcode mrc;
        CURLMsg *m;
        int running = 0, left, completed = 0;

        while (active < width && next < b->n) {
            slot *sl = idle_slot(s, width);
            err = start_request(L, s, sl, &b->reqs[next], next + 1, anchor);
            if (err) {
                push_error_result(L, results, next + 1, sl->write_errno ? "file" : "network", err);
                slot_idle(s, sl, 1);
            } else {
                active++;
            }
            next++;
        }
        if (active == 0) break;

        mrc = curl_multi_perform(s->multi, &running);
        if (mrc != CURLM_OK) {
            fail_running(L, s, width, results, curl_multi_strerror(mrc));
            active = 0;
            continue;
        }
        while ((m = curl_multi_info_read(s->multi, &left)) != NULL) {
            void *priv = NULL;
            slot *sl;
            CURLcode rc = m->data.result;
            if (m->msg != CURLMSG_DONE) continue;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
            sl = (slot *)priv;
            finish_request(L, s, sl, &b->reqs[sl->req - 1], rc, results, decode, b);
            active--;
            completed++;
        }
        if (completed == 0 && active > 0) {
            mrc = curl_multi_poll(s->multi, NULL, 0, 1000, NULL);
            if (mrc != CURLM_OK) {
                fail_running(L, s, width, results, curl_multi_strerror(mrc));
                active = 0;
            }
        }
    }
    return 0;
}

static int run(lua_State *L, session *s, prepared *reqs, int n, int concurrency, int anchor, int results,
               int decode)
{
    batch b;
    int status;
    b.s = s;
    b.reqs = reqs;
    b.n = n;
    b.concurrency = concurrency;
    b.usual = 0;
    /* run_batch, the upvalue of perform, fetch_object and perform_many: pushing the function
     * itself would make a new closure object per call under LuaJIT */
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushlightuserdata(L, &b);
    lua_pushvalue(L, anchor);
    lua_pushvalue(L, results);
    if (decode)
        lua_pushvalue(L, decode);
    else
        lua_pushnil(L);
    s->busy = 1;
    status = lua_pcall(L, 4, 0, 0);
    reset_all_slots(s);
    s->busy = 0;
    if (status != 0) lua_error(L);
    return b.usual;
}

/* ---------- argument checking (all before any transfer starts) ---------- */

static int request_error(lua_State *L, const char *fname, int index, const char *detail)
{
    if (index > 0) return luaL_error(L, "%s: request #%d: %s", fname, index, detail);
    return luaL_error(L, "%s: %s", fname, detail);
}

static int has_crlf_nul(const char *s, size_t n)
{
    return memchr(s, '\r', n) != NULL || memchr(s, '\n', n) != NULL || memchr(s, '\0', n) != NULL;
}

static int is_token(const char *s, size_t n)
{
    size_t i;
    if (n == 0) return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
              || (c != 0 && strchr("!#$%&'*+-.^_`|~", (int)c) != NULL)))
            return 0;
    }
    return 1;
}

/* Seconds (number) at field of table t to milliseconds; def when absent.
 * Returns -1 when the value is not a usable number. */
static long seconds_field(lua_State *L, int t, const char *field, long def)
{
    double x, ms;
    lua_getfield(L, t, field);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return def;
    }
    if (lua_type(L, -1) != LUA_TNUMBER) {
        lua_pop(L, 1);
        return -1;
    }
    x = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (!(x >= 0) || x > MAX_TIMEOUT_MS / 1000.0) return -1; /* also rejects NaN */
    ms = ceil(x * 1000.0);
    return (long)ms;
}

/* Validates the request table at idx into p, anchoring its strings in anchor
 * (its next free index is *acount + 1). Raises on misuse. */
static void prepare_request(lua_State *L, const session *s, int idx, int anchor, int *acount,
                            prepared *p, const char *fname, int index)
{
    size_t len;
    const char *url, *q;

    memset(p, 0, sizeof *p);
    lua_getfield(L, idx, "method");
    if (lua_isnil(L, -1)) {
        p->post = 0;
    } else {
        const char *method = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        if (strcmp(method, "GET") == 0)
            p->post = 0;
        else if (strcmp(method, "POST") == 0)
            p->post = 1;
        else if (strcmp(method, "DELETE") == 0)
            p->del = 1;
        else
            request_error(L, fname, index, "method must be \"GET\", \"POST\" or \"DELETE\"");
    }
    lua_pop(L, 1);

    lua_getfield(L, idx, "url");
    if (lua_type(L, -1) != LUA_TSTRING) request_error(L, fname, index, "url must be a string");
    url = lua_tolstring(L, -1, &len);
    if (has_crlf_nul(url, len)) request_error(L, fname, index, "url contains CR, LF or NUL");
    p->url = url;
    q = strchr(url, '?');
    if (q) {
        const char *hash = strchr(q, '#');
        p->query = q + 1;
        p->query_len = hash ? (size_t)(hash - q - 1) : strlen(q + 1);
    } else {
        p->query = url + len;
    }
    lua_rawseti(L, anchor, ++*acount);

    lua_getfield(L, idx, "file");
    if (!lua_isnil(L, -1)) {
        size_t flen;
        const char *file;
        if (lua_type(L, -1) != LUA_TSTRING) request_error(L, fname, index, "file must be a string");
        file = lua_tolstring(L, -1, &flen);
        if (flen == 0 || memchr(file, '\0', flen) != NULL)
            request_error(L, fname, index, "file must be a non-empty path without NUL");
        if (p->post || p->del) request_error(L, fname, index, "file is only allowed with GET");
        p->file = file;
        p->max_file = s->max_response;
        lua_getfield(L, idx, "max_bytes");
        if (!lua_isnil(L, -1)) {
            lua_Number m = lua_tonumber(L, -1);
            if (lua_type(L, -1) != LUA_TNUMBER || !(m >= 1) || m > 9007199254740992.0 || m != floor(m))
                request_error(L, fname, index, "max_bytes must be a positive integer");
            p->max_file = (curl_off_t)m;
        }
        lua_pop(L, 1);
    }
    lua_rawseti(L, anchor, ++*acount);

    lua_getfield(L, idx, "body");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING) request_error(L, fname, index, "body must be a string");
        if (!p->post) request_error(L, fname, index, "body is only allowed with POST");
        p->body = lua_tolstring(L, -1, &p->body_len);
    }
    lua_rawseti(L, anchor, ++*acount);

    p->timeout_ms = seconds_field(L, idx, "timeout", s->timeout_ms);
    if (p->timeout_ms < 0) request_error(L, fname, index, "timeout must be " TIMEOUT_RANGE);
    p->connect_timeout_ms = seconds_field(L, idx, "connect_timeout", s->connect_timeout_ms);
    if (p->connect_timeout_ms < 0) request_error(L, fname, index, "connect_timeout must be " TIMEOUT_RANGE);

    p->hfirst = *acount + 1;
    lua_getfield(L, idx, "headers");
    if (!lua_isnil(L, -1)) {
        int h = lua_gettop(L);
        if (!lua_istable(L, h)) request_error(L, fname, index, "headers must be a table");
        lua_pushnil(L);
        while (lua_next(L, h) != 0) {
            size_t nl, vl;
            const char *name, *value;
            if (lua_type(L, -2) != LUA_TSTRING)
                request_error(L, fname, index, "header names must be strings");
            name = lua_tolstring(L, -2, &nl);
            if (!is_token(name, nl))
                request_error(L, fname, index,
                              "header name must be a non-empty token (no CR, LF, NUL, ':' or spaces)");
            if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
                request_error(L, fname, index, "header values must be strings");
            lua_pushvalue(L, -1); /* convert a copy, never the key lua_next walks */
            value = lua_tolstring(L, -1, &vl);
            if (has_crlf_nul(value, vl)) request_error(L, fname, index, "header value contains CR, LF or NUL");
            /* the name and the value (a number's as a string), anchored for start_request */
            lua_pushvalue(L, -3);
            lua_rawseti(L, anchor, ++*acount);
            lua_rawseti(L, anchor, ++*acount);
            lua_pop(L, 1);
            p->hcount++;
        }
    }
    lua_pop(L, 1);
}

/* ---------- Lua methods ---------- */

static session *check_session(lua_State *L, const char *fname)
{
    session *s = (session *)luaL_checkudata(L, 1, SESSION_MT);
    if (s->closed) luaL_error(L, "%s: session is closed", fname);
    if (s->busy) luaL_error(L, "%s: session is busy", fname);
    return s;
}

/* the prepared request at idx (sess:prepare), or NULL when it is something else */
static const request_ud *to_request(lua_State *L, int idx)
{
    const request_ud *r = NULL;
    if (idx < 0) idx = lua_gettop(L) + idx + 1;
    if (lua_type(L, idx) == LUA_TUSERDATA && lua_getmetatable(L, idx)) {
        luaL_getmetatable(L, REQUEST_MT);
        if (lua_rawequal(L, -1, -2)) r = (const request_ud *)lua_touserdata(L, idx);
        lua_pop(L, 2);
    }
    return r;
}

/* sess:prepare(req) -> request: req checked as perform checks it, and copied. The copy is what is
 * sent, every time: a request changed after it was prepared is not seen. Only this session's
 * perform and perform_many take it. */
static int l_prepare(lua_State *L)
{
    session *s = check_session(L, "prepare");
    prepared p;
    request_ud *r;
    int acount = 0, i;
    size_t url_len, size;
    char *at;

    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    lua_createtable(L, 8, 0); /* 3: the anchor prepare_request fills */
    prepare_request(L, s, 2, 3, &acount, &p, "prepare", 0);
    url_len = strlen(p.url);
    size = url_len + 1 + (p.body ? p.body_len : 0) + 1 + (p.file ? strlen(p.file) : 0) + 1;
    r = (request_ud *)lua_newuserdata(L, sizeof *r + size); /* 4 */
    memset(r, 0, sizeof *r + size);
    r->p = p;
    r->owner = s->id;
    r->size = size;
    at = r->data;
    memcpy(at, p.url, url_len);
    r->p.url = at;
    r->p.query = at + (p.query - p.url);
    at += url_len + 1;
    if (p.body) {
        memcpy(at, p.body, p.body_len);
        r->p.body = at;
        at += p.body_len;
    }
    at++;
    if (p.file) {
        memcpy(at, p.file, strlen(p.file));
        r->p.file = at;
    }
    r->p.hfirst = r->p.hcount = 0;
    r->p.fixed_headers = NULL;
    luaL_getmetatable(L, REQUEST_MT);
    lua_setmetatable(L, 4); /* collected with its __gc from here on: a failure below leaks nothing */
    for (i = 0; i < p.hcount; i++) {
        size_t nl, vl;
        const char *name, *value;
        int failed;
        lua_rawgeti(L, 3, p.hfirst + 2 * i);
        lua_rawgeti(L, 3, p.hfirst + 2 * i + 1);
        name = lua_tolstring(L, -2, &nl);
        value = lua_tolstring(L, -1, &vl);
        failed = append_header_line(&r->p.fixed_headers, name, nl, value, vl);
        lua_pop(L, 2);
        if (failed) return luaL_error(L, "prepare: out of memory");
    }
    if (p.post) {
        /* no "Expect: 100-continue" round trip */
        struct curl_slist *grown = curl_slist_append(r->p.fixed_headers, "Expect:");
        if (grown == NULL) return luaL_error(L, "prepare: out of memory");
        r->p.fixed_headers = grown;
    }
    return 1;
}

/* __gc: the copies (the URL may hold a token, the body a code) and the header lines are wiped */
static int request_gc(lua_State *L)
{
    request_ud *r = (request_ud *)luaL_checkudata(L, 1, REQUEST_MT);
    if (r->p.fixed_headers) {
        wipe_header_list(r->p.fixed_headers);
        r->p.fixed_headers = NULL;
    }
    OPENSSL_cleanse(r->data, r->size);
    return 0;
}

static int request_tostring(lua_State *L)
{
    const request_ud *r = (const request_ud *)luaL_checkudata(L, 1, REQUEST_MT);
    lua_pushfstring(L, "instagram.request (%s)", r->p.post ? "POST" : r->p.del ? "DELETE" : "GET");
    return 1;
}

static void push_result_values(lua_State *L, int *nret)
{
    /* results[1] is on top: either a response or {error, message[, status]}; raw reads (a
     * response's metatable would be asked for the absent "error" key) */
    lua_pushliteral(L, "error");
    lua_rawget(L, -2);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        *nret = 1;
        return;
    }
    lua_pushnil(L);
    lua_insert(L, -2);
    lua_pushliteral(L, "message");
    lua_rawget(L, -4);
    lua_pushliteral(L, "status");
    lua_rawget(L, -5);
    *nret = 4;
}

/* perform's body, for perform and fetch_object: fname names the caller in its errors; decode is
 * fetch_object's decode function (its stack index, 3), or 0 for perform */
static int perform_one(lua_State *L, const char *fname, int decode)
{
    session *s = check_session(L, fname);
    prepared p; /* holds no resource: an error raised while it is filled leaks nothing */
    int acount = 0, nret, usual;
    const int t = decode ? decode + 1 : 3; /* the results and anchor table */
    const request_ud *r = to_request(L, 2);
    if (r == NULL) luaL_checktype(L, 2, LUA_TTABLE);
    else if (r->owner != s->id) return luaL_error(L, "%s: the request was prepared by another session", fname);
    lua_settop(L, t - 1);
    /* t: the results (the one result at [1]) and the anchor (url, file, body, then the header
     * lines, from [2]) in one table: the function's upvalue, emptied after each call (only a
     * fetch_object's decode runs Lua code during one, and a call made there finds the anchors in
     * use or none at all). A call that raised left its anchors (the url is always at [2]): then a
     * new table. */
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_rawgeti(L, t, 2);
    if (!lua_isnil(L, -1)) {
        lua_createtable(L, 8, 0);
        lua_replace(L, t);
        lua_pushvalue(L, t);
        lua_replace(L, lua_upvalueindex(2));
    }
    lua_pop(L, 1);
    acount = 1;
    if (r) /* anchored as the argument */
        p = r->p;
    else
        prepare_request(L, s, 2, t, &acount, &p, fname, 0);
    usual = run(L, s, &p, 1, 1, t, t, decode);
    lua_rawgeti(L, t, 1);
    for (; acount > 0; acount--) {
        lua_pushnil(L);
        lua_rawseti(L, t, acount);
    }
    if (usual) { /* fetch_object's usual success: the object, and its usage headers (nil when none came) */
        lua_pushliteral(L, "usage_headers");
        lua_rawget(L, t);
        lua_pushnil(L);
        lua_setfield(L, t, "usage_headers");
        return 2;
    }
    push_result_values(L, &nret);
    if (decode && nret == 1) { /* any other response, after false */
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    return nret;
}

static int l_perform(lua_State *L)
{
    return perform_one(L, "perform", 0);
}

/* sess:fetch_object(req, decode) -> object, usage_headers | false, response | nil, kind, message[, status]
 * perform, with the test errors.classify makes first made in C as the transfer finishes: a 2xx
 * whose body, after whitespace, begins with '{' and decodes (decode: instagram.json.decode) to a
 * table without an error, error_type or error_message field is the usual success, returned decoded
 * and normalized (normalize_ids), with the response's usage headers (nil when none came), and no
 * response table is made for it. Any other response is returned as perform returns it, after
 * false; a failed transfer as perform returns it. */
static int l_fetch_object(lua_State *L)
{
    if (lua_type(L, 3) != LUA_TFUNCTION) return luaL_error(L, "fetch_object: decode must be a function");
    return perform_one(L, "fetch_object", 3);
}

static int l_perform_many(lua_State *L)
{
    session *s = check_session(L, "perform_many");
    lua_Integer concurrency;
    prepared *p;
    int n, i, acount = 0;
    size_t len;

    luaL_checktype(L, 2, LUA_TTABLE);
    concurrency = luaL_optinteger(L, 3, DEFAULT_CONCURRENCY);
    luaL_argcheck(L, concurrency >= 1, 3, "concurrency must be at least 1");
    lua_settop(L, 2);
    len = ig_rawlen(L, 2);
    if (len > (size_t)1000000) return luaL_error(L, "perform_many: too many requests");
    n = (int)len;
    lua_createtable(L, 3 * n, 0); /* 3: anchor (3 strings a request, then header lines) */
    p = (prepared *)lua_newuserdata(L, (size_t)(n > 0 ? n : 1) * sizeof *p); /* 4 */
    for (i = 0; i < n; i++) {
        const request_ud *r;
        lua_rawgeti(L, 2, i + 1);
        r = to_request(L, -1);
        if (r) {
            if (r->owner != s->id) request_error(L, "perform_many", i + 1, "was prepared by another session");
            p[i] = r->p;
            lua_pushvalue(L, -1);
            lua_rawseti(L, 3, ++acount); /* anchored for the batch */
        } else {
            if (!lua_istable(L, -1))
                request_error(L, "perform_many", i + 1, "must be a table or a prepared request");
            prepare_request(L, s, lua_gettop(L), 3, &acount, &p[i], "perform_many", i + 1);
        }
        lua_pop(L, 1);
    }
    lua_createtable(L, n, 0); /* 5: results */
    if (n > 0) {
        if (concurrency > n) concurrency = n;
        if (concurrency > MAX_CONCURRENCY) concurrency = MAX_CONCURRENCY;
        run(L, s, p, n, (int)concurrency, 3, 5, 0);
    }
    return 1;
}

static int l_close(lua_State *L)
{
    session *s = (session *)luaL_checkudata(L, 1, SESSION_MT);
    if (s->busy) return luaL_error(L, "close: session is busy");
    session_free(s);
    return 0;
}

static int l_tostring(lua_State *L)
{
    session *s = (session *)luaL_checkudata(L, 1, SESSION_MT);
    if (s->closed)
        lua_pushliteral(L, "instagram.session (closed)");
    else
        lua_pushfstring(L, "instagram.session (%p)", (void *)s);
    return 1;
}

/* Copies the string option field of opts (or def) into *dst with malloc.
 * Raises on a non-string or on bytes that must not reach libcurl. */
static void string_option(lua_State *L, int opts, const char *field, const char *def, char **dst,
                          int reject_crlf)
{
    size_t n;
    const char *v;
    lua_getfield(L, opts, field);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        if (def == NULL) return;
        v = def;
        n = strlen(def);
    } else {
        if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "session: %s must be a string", field);
        v = lua_tolstring(L, -1, &n);
        if (memchr(v, '\0', n) != NULL || (reject_crlf && has_crlf_nul(v, n)))
            luaL_error(L, "session: %s contains %s", field, reject_crlf ? "CR, LF or NUL" : "NUL");
        lua_pop(L, 1); /* still referenced by opts */
    }
    *dst = (char *)malloc(n + 1);
    if (*dst == NULL) luaL_error(L, "session: out of memory");
    memcpy(*dst, v, n + 1);
}

/* the last session id given (per process; ids only compare), under a lock: Lua states in other
 * threads may make sessions at the same time */
static unsigned long session_ids;
static pthread_mutex_t session_ids_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned long next_session_id(void)
{
    unsigned long id;
    pthread_mutex_lock(&session_ids_lock);
    id = ++session_ids;
    pthread_mutex_unlock(&session_ids_lock);
    return id;
}

static int l_session(lua_State *L)
{
    session *s;
    int opts;

    if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (lua_isnil(L, 1)) {
        lua_newtable(L);
        lua_replace(L, 1);
    }
    opts = 1;

    /* the userdata exists, with its __gc, before anything is allocated */
    s = (session *)lua_newuserdata(L, sizeof *s);
    memset(s, 0, sizeof *s);
    s->pid = getpid();
    s->forks = fork_count;
    s->id = next_session_id();
    luaL_getmetatable(L, SESSION_MT);
    lua_setmetatable(L, -2);

    lua_getfield(L, opts, "allow_http");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TBOOLEAN)
        luaL_error(L, "session: allow_http must be a boolean");
    s->allow_http = lua_toboolean(L, -1);
    lua_pop(L, 1);

    s->timeout_ms = seconds_field(L, opts, "timeout", DEFAULT_TIMEOUT_MS);
    if (s->timeout_ms < 0) luaL_error(L, "session: timeout must be " TIMEOUT_RANGE);
    s->connect_timeout_ms = seconds_field(L, opts, "connect_timeout", DEFAULT_CONNECT_TIMEOUT_MS);
    if (s->connect_timeout_ms < 0) luaL_error(L, "session: connect_timeout must be " TIMEOUT_RANGE);

    /* 0 would be a cap no response can meet (libcurl's MAXFILESIZE reads it as
     * "no limit", the body callback as "nothing"): misuse, as in instagram.new */
    lua_getfield(L, opts, "max_response_bytes");
    if (lua_isnil(L, -1)) {
        s->max_response = DEFAULT_MAX_RESPONSE;
    } else if (lua_type(L, -1) != LUA_TNUMBER) {
        luaL_error(L, "session: max_response_bytes must be a positive integer");
    } else {
        double max = lua_tonumber(L, -1);
        if (!(max >= 1) || max != floor(max) || max > 9007199254740992.0)
            luaL_error(L, "session: max_response_bytes must be a positive integer");
        s->max_response = (curl_off_t)max;
    }
    lua_pop(L, 1);

    string_option(L, opts, "ca_file", NULL, &s->ca_file, 0);
    string_option(L, opts, "user_agent", DEFAULT_USER_AGENT, &s->user_agent, 1);

    {
        const char *err = session_adopt(s);
        if (err) {
            session_free(s);
            lua_pushnil(L);
            lua_pushfstring(L, "session: %s", err);
            return 2;
        }
    }
    return 1;
}

/* sleep(seconds): blocks the calling thread; used for retry back-off outside nginx. */
static int l_sleep(lua_State *L)
{
    lua_Number secs = luaL_checknumber(L, 1);
    struct timespec ts, rem;
    luaL_argcheck(L, secs >= 0 && secs <= 86400, 1, "seconds must be between 0 and 86400");
    ts.tv_sec = (time_t)secs;
    ts.tv_nsec = (long)((secs - (lua_Number)ts.tv_sec) * 1e9);
    if (ts.tv_nsec > 999999999L) ts.tv_nsec = 999999999L;
    while (nanosleep(&ts, &rem) != 0 && errno == EINTR) ts = rem;
    return 0;
}

/* libcurl's own heap blocks (its copies of URLs, request headers and small
 * POST bodies, the request it builds, response headers, ...) are wiped before
 * they are freed: curl_global_init_mem with a free that clears every block's
 * whole usable size, through a volatile function pointer so the compiler
 * cannot drop it (the technique of OpenSSL's portable OPENSSL_cleanse), with
 * 16-byte stores: OPENSSL_cleanse's x86-64 loop costs 0.5 instruction a byte,
 * and libcurl frees a 16 KiB buffer per transfer. glibc only
 * (malloc_usable_size); elsewhere plain curl_global_init. */
#if defined(__GLIBC__)
#include <malloc.h>
#define IG_WIPE_CURL_HEAP 1

/* glibc's memset, called as such: with a constant size the compiler would
 * inline it as "rep stosq" */
static void *(*const volatile zero_fill)(void *, int, size_t) = memset;

/* zeroes n bytes with glibc's memset, in steps of at most 1 KiB: above
 * 2 KiB glibc's memset turns to "rep stosb", which valgrind counts byte by
 * byte; below that it stores a vector register at a time whatever the size */
static void wipe_block(void *p, size_t n)
{
    unsigned char *b = (unsigned char *)p;
    for (; n > 1024; b += 1024, n -= 1024) zero_fill(b, 0, 1024);
    zero_fill(b, 0, n);
}

/* called through a volatile pointer: the stores cannot be dropped as dead
 * even though the block is freed right after */
static void (*const volatile wipe)(void *, size_t) = wipe_block;

static void wiping_free(void *p)
{
    if (p) {
        wipe(p, malloc_usable_size(p));
        free(p);
    }
}

/* never realloc: a block that moves would be freed unwiped */
static void *wiping_realloc(void *p, size_t n)
{
    size_t old;
    char *q;
    if (p == NULL) return malloc(n);
    old = malloc_usable_size(p);
    if (n <= old) return p;
    q = (char *)malloc(n);
    if (q == NULL) return NULL;
    memcpy(q, p, old);
    wiping_free(p);
    return q;
}

static char *copy_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = (char *)malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}
#endif

void ig_open_session(lua_State *L)
{
    static int curl_ready = 0;
    static const luaL_Reg methods[] = {
        {"close", l_close},
        {"prepare", l_prepare},
        {NULL, NULL}
    };
    static const luaL_Reg metamethods[] = {
        {"__gc", l_close},
        {"__close", l_close},
        {"__tostring", l_tostring},
        {NULL, NULL}
    };
    static const luaL_Reg funcs[] = {
        {"session", l_session},
        {"sleep", l_sleep},
        {NULL, NULL}
    };

    /* once per process, before any other libcurl call; never cleaned up here,
     * since other modules or Lua states may still use libcurl */
    if (!curl_ready) {
#if IG_WIPE_CURL_HEAP
        /* a no-op when libcurl was initialised earlier in the process (by
         * another module): then its blocks are not wiped */
        if (curl_global_init_mem(CURL_GLOBAL_ALL, malloc, wiping_free, wiping_realloc, copy_string, calloc)
            != CURLE_OK)
#else
        if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
#endif
            luaL_error(L, "instagram.core: curl_global_init failed");
        curl_ready = 1;
    }
    if (!fork_watch && pthread_atfork(NULL, NULL, on_fork_child) == 0) fork_watch = 1;
    init_target_stop();

    if (luaL_newmetatable(L, REQUEST_MT)) {
        lua_pushcfunction(L, request_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, request_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, "the request is immutable");
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, RESPONSE_MT)) {
        lua_pushcfunction(L, response_index);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, SESSION_MT)) {
        ig_setfuncs(L, metamethods);
        lua_newtable(L);
        ig_setfuncs(L, methods);
        /* perform, fetch_object and perform_many run their transfers through run_batch, their
         * upvalue */
        lua_pushcfunction(L, run_batch);
        lua_pushvalue(L, -1);
        lua_createtable(L, 8, 0);
        lua_pushcclosure(L, l_perform, 2);
        lua_setfield(L, -3, "perform");
        lua_pushvalue(L, -1);
        lua_createtable(L, 8, 0); /* a table of its own: its decode may call perform */
        lua_pushcclosure(L, l_fetch_object, 2);
        lua_setfield(L, -3, "fetch_object");
        lua_pushcclosure(L, l_perform_many, 1);
        lua_setfield(L, -2, "perform_many");
        lua_setfield(L, -2, "__index");
        lua_pushliteral(L, SESSION_MT);
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
    ig_setfuncs(L, funcs);
}
