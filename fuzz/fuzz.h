/* fuzz.h — what the fuzz targets share: the input as a file (the readers
 * under test take paths) and a small reader of typed values from the input,
 * for the structure-aware targets.
 *
 * Each target is one LLVMFuzzerTestOneInput.  Built with clang and libFuzzer
 * (meson -Dfuzz=true, see fuzz/README.md) it is a coverage-guided fuzzer;
 * built with fuzz/replay.c instead it replays files through the same code,
 * which is how the normal test suite runs the regression corpus. */
#ifndef KV_FUZZ_H
#define KV_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes data into an anonymous in-memory file; its path ("/proc/self/fd/N")
 * goes into path.  Returns the descriptor to close, or -1. */
int fuzz_file(const uint8_t *data, size_t size, char *path, size_t cap);

/* An empty file to be written by the code under test, a real one in
 * /dev/shm (else $TMPDIR or /tmp): libhdf5 resolves a file's real path, which
 * an anonymous in-memory file does not have.  Returns the descriptor, or -1;
 * fuzz_release_file closes and removes it. */
int fuzz_empty_file(char *path, size_t cap);
void fuzz_release_file(int fd, const char *path);

/* For the targets that write HDF5 files: the library set up once, and
 * kvtrace's child-process check of each file off (the files are sound). */
void fuzz_hdf5_once(void);

/* Consumes the input from the front; past its end every value is 0. */
typedef struct {
    const uint8_t *data;
    size_t size, at;
} FuzzReader;

uint32_t fuzz_u32(FuzzReader *r);
uint32_t fuzz_below(FuzzReader *r, uint32_t n); /* 0 .. n-1 */
float fuzz_float(FuzzReader *r);                /* any bit pattern: NaN, Inf, huge, subnormal */
int fuzz_bool(FuzzReader *r);

#endif
