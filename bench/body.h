/* make bench: the body collector of the raw loop (rawcurl.c) and the floor (floor.c), a libcurl
 * write callback that appends to a growing buffer, as a careful C program would write it. */
#ifndef BENCH_BODY_H
#define BENCH_BODY_H

#include <stdlib.h>
#include <string.h>

struct body {
    char *data;
    size_t len, cap;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct body *b = (struct body *)userdata;
    size_t n = size * nmemb;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        char *p;
        while (cap < b->len + n) cap *= 2;
        p = (char *)realloc(b->data, cap);
        if (p == NULL) return 0;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    return n;
}

#endif
