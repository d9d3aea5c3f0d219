#include "datadir.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef KVTRACE_SOURCE_DIR
#define KVTRACE_SOURCE_DIR "."
#endif
#ifndef KVTRACE_DATADIR
#define KVTRACE_DATADIR "/usr/local/share/kvtrace"
#endif
#ifndef KVTRACE_BIN_TO_DATA
#define KVTRACE_BIN_TO_DATA "../share/kvtrace"
#endif

static int readable(const char *path) { return access(path, R_OK) == 0; }

/* The folder of the running binary, or "" when unknown. */
static void binary_folder(char *out, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    out[0] = 0;
    if (n <= 0) return;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    snprintf(out, cap, "%s", exe);
}

int kv_find_data(const char *rel, char *out, size_t cap)
{
    char bin[PATH_MAX];
    binary_folder(bin, sizeof bin);
    const char *env = getenv("KVTRACE_DATA");
    char candidates[4][PATH_MAX + 64];
    int n = 0;
    if (env && *env) snprintf(candidates[n++], sizeof candidates[0], "%s", env);
    if (*bin) snprintf(candidates[n++], sizeof candidates[0], "%s/%s", bin, KVTRACE_BIN_TO_DATA);
    snprintf(candidates[n++], sizeof candidates[0], "%s", KVTRACE_DATADIR);
    snprintf(candidates[n++], sizeof candidates[0], "%s", KVTRACE_SOURCE_DIR);
    for (int i = 0; i < n; i++) {
        snprintf(out, cap, "%s/%s", candidates[i], rel);
        if (readable(out)) return 0;
    }
    return -1;
}

int kv_find_demo_model(char *out, size_t cap)
{
    const char *env = getenv("KVTRACE_MODEL");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
        return readable(out) ? 0 : -1;
    }
    const char *candidates[] = {"models/stories260K.gguf", KVTRACE_SOURCE_DIR "/models/stories260K.gguf",
                                KVTRACE_SOURCE_DIR "/../shared/models/stories260K.gguf"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        snprintf(out, cap, "%s", candidates[i]);
        if (readable(out)) return 0;
    }
    return -1;
}
