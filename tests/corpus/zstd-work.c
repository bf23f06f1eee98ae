/* The corpus driver for zstd (fetch.sh copies it to work.c): compresses the same 128 KiB,
   made from the workload file, at levels 1 (zstd_fast.c), 3 (zstd_double_fast.c) and 9
   (zstd_lazy.c) with one reused context, decompresses each frame and checks the round trip,
   over and over, printing ZSTD_compressBound of the input and the three sizes (a round
   whose round trip fails prints `!MISMATCH` instead). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "zstd.h"

#define N (1 << 17)

static char src[N];
static char dst[N + (N >> 7) + 4096];
static char back[N];

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
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    if (!cctx || !dctx)
        return 1;
    static const int levels[] = {1, 3, 9};
    for (int round = 1;; round++) {
        size_t sizes[3];
        int same = 1;
        for (int l = 0; l < 3; l++) {
            size_t c = ZSTD_compressCCtx(cctx, dst, sizeof dst, src, sizeof src, levels[l]);
            size_t d = ZSTD_isError(c) ? c : ZSTD_decompressDCtx(dctx, back, sizeof back, dst, c);
            if (ZSTD_isError(d) || d != sizeof src || memcmp(back, src, sizeof src) != 0) {
                printf("round=%d !MISMATCH at level %d: %s\n", round, levels[l],
                       ZSTD_isError(d) ? ZSTD_getErrorName(d) : "other bytes");
                same = 0;
            }
            sizes[l] = c;
        }
        /* Only a round whose three frames decompress to the input prints its sizes. */
        if (same)
            printf("round=%d bound=%zu l1=%zu l3=%zu l9=%zu\n", round, ZSTD_compressBound(N),
                   sizes[0], sizes[1], sizes[2]);
        fflush(stdout);
        usleep(20000);
    }
}
