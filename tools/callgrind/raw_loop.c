/* The ceiling for tools/callgrind_me.sh: N GETs of one URL through one reused
 * libcurl easy handle (curl_easy_perform), the body collected into a growing
 * buffer, as a careful C program would do it.  Usage: raw_loop URL N */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

typedef struct {
    char *data;
    size_t len, cap;
} buf;

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    buf *b = (buf *)ud;
    size_t n = size * nmemb;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16384;
        char *grown;
        while (cap < b->len + n) cap *= 2;
        grown = (char *)realloc(b->data, cap);
        if (grown == NULL) return 0;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return n;
}

int main(int argc, char **argv)
{
    CURL *easy;
    struct curl_slist *headers = NULL;
    buf b = {NULL, 0, 0};
    long i, n;
    if (argc != 3) {
        fprintf(stderr, "usage: raw_loop URL N\n");
        return 2;
    }
    n = strtol(argv[2], NULL, 10);
    curl_global_init(CURL_GLOBAL_ALL);
    easy = curl_easy_init();
    if (easy == NULL) return 1;
    curl_easy_setopt(easy, CURLOPT_URL, argv[1]);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "lua-instagram");
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    headers = curl_slist_append(headers, "Accept: application/json");
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, (void *)&b);
    for (i = 0; i < n; i++) {
        long status = 0;
        b.len = 0;
        if (curl_easy_perform(easy) != CURLE_OK) return 1;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        if (status != 200) return 1;
    }
    curl_easy_cleanup(easy);
    curl_slist_free_all(headers);
    free(b.data);
    curl_global_cleanup();
    return 0;
}
