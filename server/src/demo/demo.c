/* hot-lsp demo: a program with state that keeps running while its code changes. */
#include <stdio.h>
#include <unistd.h>

static int frames;

const char *greeting(void) {
    return "hello";
}

int score(int frame) {
    return frame * 1;
}

int main(void) {
    for (;;) {
        frames++;
        printf("frame %3d  %-24s score=%d\n", frames, greeting(), score(frames));
        fflush(stdout);
        usleep(200000);
    }
}
