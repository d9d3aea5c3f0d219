/* Replays files through a fuzz target (no libFuzzer): the regression corpus
 * in the normal test suite, and a crash found by the fuzzer under gdb.
 * Arguments are files, or folders whose files are all replayed. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int replay_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "%s: cannot read\n", path);
        return -1;
    }
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0, got;
    do {
        if (n == cap) {
            cap = cap ? 2 * cap : 65536;
            unsigned char *g = realloc(buf, cap);
            if (!g) break;
            buf = g;
        }
        got = fread(buf + n, 1, cap - n, fp);
        n += got;
    } while (got > 0);
    int bad = ferror(fp);
    fclose(fp);
    if (bad || !buf) {
        free(buf);
        fprintf(stderr, "%s: cannot read\n", path);
        return -1;
    }
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    printf("%s: ok\n", path);
    return 0;
}

int main(int argc, char **argv)
{
    int replayed = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            struct dirent **names;
            int n = scandir(argv[i], &names, NULL, alphasort);
            for (int k = 0; k < n; k++) {
                char path[4096];
                snprintf(path, sizeof path, "%s/%s", argv[i], names[k]->d_name);
                if (names[k]->d_name[0] != '.' && replay_file(path)) return 2;
                replayed += names[k]->d_name[0] != '.';
                free(names[k]);
            }
            free(names);
        } else {
            if (replay_file(argv[i])) return 2;
            replayed++;
        }
    }
    printf("%d input(s) replayed\n", replayed);
    return replayed ? 0 : 2;
}
