/* The corpus driver for lz4 (fetch.sh copies it to work.c): compresses the same 64 KiB,
   made from the workload file, with lz4.c's fast compressor and lz4hc.c's high-compression
   one (lz4hc.c includes lz4.c for its common code) over and over, printing both sizes. */
#include <stdio.h>
#include <unistd.h>

#include "lz4.h"
#include "lz4hc.h"

static char src[1 << 16];
static char dst[1 << 17];

int main(int argc, char **argv) {
    FILE *in = argc > 1 ? fopen(argv[1], "rb") : NULL;
    if (!in) {
        perror("work: the workload file");
        return 1;
    }
    size_t n = fread(src, 1, sizeof src, in);
    fclose(in);
    if (n == 0)
        return 1;
    /* The text repeated, every 64th byte of each copy changed: matches of many lengths. */
    unsigned x = 12345;
    for (size_t i = n; i < sizeof src; i++) {
        x = x * 1103515245u + 12345u;
        src[i] = (x >> 16) % 64 == 0 ? (char)('a' + (x >> 24) % 26) : src[i % n];
    }
    for (int round = 1;; round++) {
        int fast = LZ4_compress_default(src, dst, sizeof src, sizeof dst);
        int hc = LZ4_compress_HC(src, dst, sizeof src, sizeof dst, 9);
        printf("round=%d fast=%d hc=%d\n", round, fast, hc);
        fflush(stdout);
        usleep(100000);
    }
}
