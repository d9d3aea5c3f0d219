#include "fuzz.h"

#include "../trace/h5util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int memory_file(char *path, size_t cap)
{
    int fd = memfd_create("kvtrace-fuzz", 0);
    if (fd >= 0) snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

void fuzz_hdf5_once(void)
{
    static int done;
    if (done) return;
    done = 1;
    h5_startup();
    setenv("KVTRACE_H5_CHECK", "off", 1); /* the generated files are sound HDF5: no child process per input */
}

int fuzz_empty_file(char *path, size_t cap)
{
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    if ((size_t)snprintf(path, cap, "%s/kvtrace-fuzz-XXXXXX", dir) >= cap) return -1;
    return mkstemp(path);
}

void fuzz_release_file(int fd, const char *path)
{
    close(fd);
    unlink(path);
}

int fuzz_file(const uint8_t *data, size_t size, char *path, size_t cap)
{
    int fd = memory_file(path, cap);
    if (fd < 0) return -1;
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)n;
    }
    return fd;
}

uint32_t fuzz_u32(FuzzReader *r)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v = v << 8 | (r->at < r->size ? r->data[r->at++] : 0);
    return v;
}

uint32_t fuzz_below(FuzzReader *r, uint32_t n)
{
    uint8_t b = r->at < r->size ? r->data[r->at++] : 0;
    return n ? b % n : 0;
}

float fuzz_float(FuzzReader *r)
{
    uint32_t bits = fuzz_u32(r);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

int fuzz_bool(FuzzReader *r) { return (int)fuzz_below(r, 2); }
