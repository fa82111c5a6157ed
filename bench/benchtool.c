/*
 * The benchmark's native helpers, built by bench/run.py with the system's C
 * compiler (static, so that a spawn measures the server, not the dynamic
 * loader):
 *
 *   echo1 (a link to it)     child: read one line, write it back, exit
 *   hold (a link to it)      child: write "ready\n", wait for a line or EOF
 *   benchtool rr PORT CONNS SECONDS SIZE
 *                            client: CONNS connections, each sending SIZE
 *                            bytes and reading them back, again and again,
 *                            for SECONDS; prints "REQUESTS ERRORS"
 *
 * The request/response client is in C because a Python client tops out
 * below what the servers answer.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int echo1(void)
{
    char buf[4096];
    size_t len = 0;
    while (len < sizeof buf) {
        ssize_t n = read(0, buf + len, sizeof buf - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        if (memchr(buf + len - n, '\n', (size_t)n))
            break;
    }
    char *nl = memchr(buf, '\n', len);
    if (nl)
        len = (size_t)(nl - buf) + 1;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(1, buf + off, len - off);
        if (n <= 0)
            return 1;
        off += (size_t)n;
    }
    return 0;
}

static int hold(void)
{
    char c;
    if (write(1, "ready\n", 6) != 6)
        return 1;
    while (read(0, &c, 1) == 1 && c != '\n')
        ;
    return 0;
}

struct rr {
    int port;
    size_t size;
    double seconds;
    long done;
    long errors;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *rrWorker(void *arg)
{
    struct rr *r = arg;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)r->port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        r->errors++;
        close(fd);
        return NULL;
    }
    char *out = malloc(r->size), *in = malloc(r->size);
    memset(out, 'x', r->size);
    double end = now() + r->seconds;
    while (now() < end) {
        if (write(fd, out, r->size) != (ssize_t)r->size) {
            r->errors++;
            break;
        }
        size_t got = 0;
        while (got < r->size) {
            ssize_t n = read(fd, in + got, r->size - got);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        if (got != r->size) {
            r->errors++;
            break;
        }
        r->done++;
    }
    close(fd);
    free(out);
    free(in);
    return NULL;
}

static int rr(int argc, char **argv)
{
    if (argc != 6)
        return 2;
    int conns = atoi(argv[3]);
    struct rr *rs = calloc((size_t)conns, sizeof *rs);
    pthread_t *ts = calloc((size_t)conns, sizeof *ts);
    for (int i = 0; i < conns; i++) {
        rs[i].port = atoi(argv[2]);
        rs[i].seconds = atof(argv[4]);
        rs[i].size = (size_t)atol(argv[5]);
        pthread_create(&ts[i], NULL, rrWorker, &rs[i]);
    }
    long done = 0, errors = 0;
    for (int i = 0; i < conns; i++) {
        pthread_join(ts[i], NULL);
        done += rs[i].done;
        errors += rs[i].errors;
    }
    printf("%ld %ld\n", done, errors);
    return 0;
}

int main(int argc, char **argv)
{
    /* Servers run a child without arguments: it is named by its file. */
    const char *name = argc > 0 ? strrchr(argv[0], '/') : NULL;
    name = name ? name + 1 : (argc > 0 ? argv[0] : "");
    if (strcmp(name, "echo1") == 0)
        return echo1();
    if (strcmp(name, "hold") == 0)
        return hold();
    if (argc >= 2 && strcmp(argv[1], "rr") == 0)
        return rr(argc, argv);
    fprintf(stderr, "usage: benchtool rr PORT CONNS SECONDS SIZE (or run as echo1, hold)\n");
    return 2;
}
