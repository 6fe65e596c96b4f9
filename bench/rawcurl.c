/* The ceiling of `make bench`: a raw libcurl loop, one easy handle reused for every transfer
 * (keep-alive, TLS session kept by the handle), the URL set once, the body collected and
 * dropped. No URL building, no JSON: what any libcurl client pays at least.
 *
 *   rawcurl URL serve WARM [CA_FILE]     WARM warm-up calls, then for each line SECONDS read from
 *                                        stdin: calls for SECONDS and prints
 *                                        "RESULT {"calls":N,"seconds":S}" (bench/run.lua's time
 *                                        slices); exits at end of input
 *   rawcurl URL count N [CA_FILE]        exactly N calls (for callgrind: run N and 2N)
 * Exits non-zero on any failed transfer or a status other than 200. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "body.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int call(CURL *h, struct body *b)
{
    long status = 0;
    CURLcode rc;
    b->len = 0;
    rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        fprintf(stderr, "rawcurl: %s\n", curl_easy_strerror(rc));
        return -1;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200 || b->len == 0) {
        fprintf(stderr, "rawcurl: HTTP %ld, %lu bytes\n", status, (unsigned long)b->len);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    CURL *h;
    struct body b = {NULL, 0, 0};
    long i, n, calls;
    double t0, elapsed;

    if (argc < 4 || (strcmp(argv[2], "serve") != 0 && strcmp(argv[2], "count") != 0)) {
        fprintf(stderr, "usage: rawcurl URL serve WARM|count N [CA_FILE]\n");
        return 2;
    }
    n = atol(argv[3]);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return 1;
    h = curl_easy_init();
    if (h == NULL) return 1;
    curl_easy_setopt(h, CURLOPT_URL, argv[1]);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "rawcurl");
    if (argc > 4) curl_easy_setopt(h, CURLOPT_CAINFO, argv[4]);

    if (strcmp(argv[2], "serve") == 0) {
        char line[64];
        for (i = 0; i < n; i++)
            if (call(h, &b) != 0) return 1;
        while (fgets(line, sizeof line, stdin) != NULL) {
            double slice = atof(line);
            calls = 0;
            t0 = now();
            do {
                if (call(h, &b) != 0) return 1;
                calls++;
                elapsed = now() - t0;
            } while (elapsed < slice);
            printf("RESULT {\"calls\":%ld,\"seconds\":%.6f}\n", calls, elapsed);
            fflush(stdout);
        }
    } else {
        for (i = 0; i < n; i++)
            if (call(h, &b) != 0) return 1;
    }
    curl_easy_cleanup(h);
    free(b.data);
    curl_global_cleanup();
    return 0;
}
