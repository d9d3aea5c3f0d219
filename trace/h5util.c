#include "h5util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../util/sha256.h"
#include "quant.h"

void h5_quiet(void)
{
    if (!getenv("KVTRACE_HDF5_ERRORS")) H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* a debugging aid */
}

void h5_startup(void)
{
    H5dont_atexit();
    h5_quiet();
}

hid_t h5_create_file(const char *path)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    hid_t f = -1;
    if (H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) >= 0)
        f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    return f;
}

/* ---- opening files that may be damaged ---- */

/* Exit codes of the checking child; anything else (a signal, a sanitizer's
 * report) means libhdf5 crashed on the file. */
enum { CHECK_OK = 0, CHECK_CANNOT_OPEN = 10, CHECK_ERRORS = 11 };
#define CHECK_MAX_BYTES ((hsize_t)256 << 20) /* strings and small datasets read whole up to this */

static hid_t open_readonly(const char *path)
{
    /* an SWMR reader sees a file being recorded, or one whose recorder was killed, consistently */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT);
    return f >= 0 ? f : H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
}

/* Reads every element of an attribute or dataset through its native type. */
static int read_whole(hid_t obj, int is_attr)
{
    hid_t ft = is_attr ? H5Aget_type(obj) : H5Dget_type(obj);
    hid_t sp = is_attr ? H5Aget_space(obj) : H5Dget_space(obj);
    hid_t mt = ft >= 0 ? H5Tget_native_type(ft, H5T_DIR_ASCEND) : -1;
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    size_t size = mt >= 0 ? H5Tget_size(mt) : 0;
    int rc = -1;
    if (n >= 0 && size > 0 && (hsize_t)n * size <= CHECK_MAX_BYTES) {
        void *buf = calloc((size_t)n + 1, size);
        if (buf) {
            herr_t r = is_attr ? H5Aread(obj, mt, buf) : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
            rc = r < 0 ? -1 : 0;
            if (r >= 0 && H5Tdetect_class(mt, H5T_VLEN) > 0) H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, buf);
            else if (r >= 0 && H5Tis_variable_str(mt) > 0) H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, buf);
            free(buf);
        }
    } else if (n >= 0 && size > 0 && !is_attr) {
        rc = 0; /* a large numeric dataset: its chunks are checked when read (deflate, fletcher32) */
    }
    if (mt >= 0) H5Tclose(mt);
    if (sp >= 0) H5Sclose(sp);
    if (ft >= 0) H5Tclose(ft);
    return rc;
}

static herr_t check_attribute(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    (void)info;
    int *bad = data;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0 || read_whole(a, 1)) *bad = 1;
    if (a >= 0) H5Aclose(a);
    return 0;
}

/* A dataset's storage: its chunk index walked, strings and small data read. */
static int check_dataset(hid_t d)
{
    hid_t dcpl = H5Dget_create_plist(d), t = H5Dget_type(d), sp = H5Dget_space(d);
    int bad = dcpl < 0 || t < 0 || sp < 0;
    if (!bad && H5Pget_layout(dcpl) == H5D_CHUNKED) {
        hsize_t chunks;
        bad = H5Dget_num_chunks(d, sp, &chunks) < 0;
    }
    if (!bad) {
        int strings = H5Tget_class(t) == H5T_STRING || H5Tdetect_class(t, H5T_VLEN) > 0;
        hssize_t n = H5Sget_simple_extent_npoints(sp);
        size_t size = H5Tget_size(t);
        if (strings || (n >= 0 && (hsize_t)n * size <= ((hsize_t)1 << 20))) bad = read_whole(d, 0) != 0;
    }
    if (dcpl >= 0) H5Pclose(dcpl);
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    return bad;
}

static herr_t check_object(hid_t root, const char *name, const H5O_info_t *info, void *data)
{
    int *bad = data;
    hid_t o = H5Oopen(root, name, H5P_DEFAULT);
    if (o < 0) {
        *bad = 1;
        return 0;
    }
    hsize_t idx = 0;
    if (H5Aiterate2(o, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, check_attribute, bad) < 0) *bad = 1;
    if (info->type == H5O_TYPE_DATASET && check_dataset(o)) *bad = 1;
    H5Oclose(o);
    return 0;
}

/* In the child: every object, attribute, string and chunk index. */
static int check_file_child(const char *path)
{
    hid_t f = open_readonly(path);
    if (f < 0) return CHECK_CANNOT_OPEN;
    int bad = 0;
    if (H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_NATIVE, check_object, &bad, H5O_INFO_BASIC) < 0) bad = 1;
    if (H5Fclose(f) < 0) bad = 1;
    return bad ? CHECK_ERRORS : CHECK_OK;
}

static int check_seconds(void)
{
    const char *s = getenv("KVTRACE_H5_CHECK_SECONDS");
    int v = s ? atoi(s) : 0;
    return v > 0 ? v : 60;
}

/* Runs check_file_child once in a child process; its wait status in *status. */
static int run_check(const char *path, int seconds, int *status, KvError *err)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return kv_fail(err, "%s: cannot start the file check: %s", path, strerror(errno));
    if (pid == 0) {
        int devnull = getenv("KVTRACE_HDF5_ERRORS") ? -1 : open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, STDERR_FILENO); /* a sanitizer's report of libhdf5's crash */
        signal(SIGALRM, SIG_DFL);
        alarm((unsigned)seconds);
        _exit(check_file_child(path));
    }
    while (waitpid(pid, status, 0) < 0)
        if (errno != EINTR) return kv_fail(err, "%s: the file check failed: %s", path, strerror(errno));
    return 0;
}

/* Runs check_file_child in a child process; 0 when the file read cleanly.
 * A trace being recorded is written while the check walks it, and a walk
 * that meets a flush halfway sees errors that are gone a moment later, so
 * errors are believed only when three walks 0.1 s apart all see them.
 * KVTRACE_H5_CHECK=off skips it: for the fuzz targets, whose generated files
 * are sound HDF5 and which must not fork once per input. */
static int inputs_trusted; /* h5_trust_inputs */

void h5_trust_inputs(void) { inputs_trusted = 1; }

static int check_file(const char *path, const char *what, KvError *err)
{
    const char *mode = getenv("KVTRACE_H5_CHECK");
    if (inputs_trusted || (mode && !strcmp(mode, "off"))) return 0;
    int seconds = check_seconds(), status = 0;
    for (int attempt = 0; attempt < 3; attempt++) {
        if (attempt) nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL);
        if (run_check(path, seconds, &status, err)) return -1;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != CHECK_ERRORS) break;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == CHECK_OK) return 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == CHECK_CANNOT_OPEN)
        return kv_fail(err, "%s: HDF5 cannot open the %s (truncated or damaged, or left open for writing by "
                       "a program that was killed: `h5clear -s %s` clears that flag)", path, what, path);
    if (WIFEXITED(status) && WEXITSTATUS(status) == CHECK_ERRORS)
        return kv_fail(err, "%s: the %s is damaged (HDF5 reports errors reading its metadata); record or "
                       "write it again", path, what);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        return kv_fail(err, "%s: the %s is damaged (HDF5 did not finish reading its metadata in %d s: "
                       "libhdf5 loops on some damaged files); record or write it again", path, what, seconds);
    return kv_fail(err, "%s: the %s is damaged (libhdf5 crashed reading its metadata); record or write it "
                   "again", path, what);
}

hid_t h5_open_read(const char *path, const char *what, KvError *err)
{
    if (access(path, R_OK) != 0) return kv_fail(err, "%s: cannot open the %s: %s", path, what, strerror(errno)), -1;
    if (H5Fis_hdf5(path) <= 0) return kv_fail(err, "%s: not an HDF5 file (wrong file, truncated or damaged)", path), -1;
    if (check_file(path, what, err)) return -1;
    hid_t f = open_readonly(path);
    if (f < 0) kv_fail(err, "%s: HDF5 cannot open the %s (truncated or damaged?)", path, what);
    return f;
}

static hid_t vlen_utf8(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return -1;
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

/* Opens an attribute for writing, replacing an old one of the same name. */
static hid_t attr_for_write(hid_t obj, const char *name, hid_t type)
{
    if (H5Aexists(obj, name) > 0 && H5Adelete(obj, name) < 0) return -1;
    hid_t space = H5Screate(H5S_SCALAR);
    if (space < 0) return -1;
    hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(space);
    return a;
}

static int attr_write(hid_t obj, const char *name, hid_t file_type, hid_t mem_type, const void *value)
{
    hid_t a = attr_for_write(obj, name, file_type);
    if (a < 0) return -1;
    herr_t rc = H5Awrite(a, mem_type, value);
    H5Aclose(a);
    return rc < 0 ? -1 : 0;
}

int h5_attr_write_str(hid_t obj, const char *name, const char *value)
{
    hid_t t = vlen_utf8();
    if (t < 0) return -1;
    int rc = attr_write(obj, name, t, t, &value);
    H5Tclose(t);
    return rc;
}

int h5_attr_write_int(hid_t obj, const char *name, long long value)
{
    return attr_write(obj, name, H5T_STD_I64LE, H5T_NATIVE_LLONG, &value);
}

int h5_attr_write_double(hid_t obj, const char *name, double value)
{
    return attr_write(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

int h5_attr_update_int(hid_t obj, const char *name, long long value)
{
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    herr_t rc = H5Awrite(a, H5T_NATIVE_LLONG, &value);
    H5Aclose(a);
    return rc < 0 ? -1 : 0;
}

static hid_t attr_open(hid_t obj, const char *name)
{
    if (H5Aexists(obj, name) <= 0) return -1;
    return H5Aopen(obj, name, H5P_DEFAULT);
}

char *h5_attr_read_str_alloc(hid_t obj, const char *name)
{
    hid_t a = attr_open(obj, name);
    if (a < 0) return NULL;
    hid_t ft = H5Aget_type(a);
    char *out = NULL;
    if (ft >= 0 && H5Tget_class(ft) == H5T_STRING) {
        if (H5Tis_variable_str(ft) > 0) {
            hid_t mt = vlen_utf8();
            char *p = NULL;
            if (H5Aread(a, mt, &p) >= 0 && p) {
                out = strdup(p);
                H5free_memory(p);
            }
            H5Tclose(mt);
        } else {
            size_t n = H5Tget_size(ft);
            out = calloc(n + 1, 1);
            if (out && H5Aread(a, ft, out) < 0) { free(out); out = NULL; }
        }
    }
    if (ft >= 0) H5Tclose(ft);
    H5Aclose(a);
    return out;
}

int h5_attr_read_str(hid_t obj, const char *name, char *out, size_t cap)
{
    char *s = h5_attr_read_str_alloc(obj, name);
    if (!s) return -1;
    snprintf(out, cap, "%s", s);
    free(s);
    return 0;
}

static int attr_read_number(hid_t obj, const char *name, hid_t mem_type, void *out)
{
    hid_t a = attr_open(obj, name);
    if (a < 0) return -1;
    hid_t ft = H5Aget_type(a), sp = H5Aget_space(a);
    int ok = ft >= 0 && (H5Tget_class(ft) == H5T_INTEGER || H5Tget_class(ft) == H5T_FLOAT) &&
             H5Sget_simple_extent_npoints(sp) == 1 && H5Aread(a, mem_type, out) >= 0;
    if (ft >= 0) H5Tclose(ft);
    if (sp >= 0) H5Sclose(sp);
    H5Aclose(a);
    return ok ? 0 : -1;
}

int h5_attr_read_int(hid_t obj, const char *name, long long *out)
{
    return attr_read_number(obj, name, H5T_NATIVE_LLONG, out);
}

int h5_attr_read_double(hid_t obj, const char *name, double *out)
{
    return attr_read_number(obj, name, H5T_NATIVE_DOUBLE, out);
}

hid_t h5_float16_type(void)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0) return -1;
    /* sign bit 15, exponent bits 10..14, mantissa bits 0..9, bias 15 */
    if (H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 15) < 0 ||
        H5Tset_precision(t, 16) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

int h5_set_chunked(hid_t dcpl, int rank, const hsize_t *chunk, int deflate_level, int checksum)
{
    /* checksum last, over the compressed bytes: a damaged chunk is refused, not inflated */
    return H5Pset_chunk(dcpl, rank, chunk) >= 0 && H5Pset_shuffle(dcpl) >= 0 &&
                   H5Pset_deflate(dcpl, (unsigned)deflate_level) >= 0 && (!checksum || H5Pset_fletcher32(dcpl) >= 0)
               ? 0 : -1;
}

hid_t h5_create_growable(hid_t loc, const char *name, hid_t file_type, int rank, const hsize_t *dims,
                         const hsize_t *chunk, int growable, int deflate_level)
{
    hsize_t cur[8], max[8];
    for (int i = 0; i < rank; i++) {
        cur[i] = i < growable ? 0 : dims[i];
        max[i] = i < growable ? H5S_UNLIMITED : dims[i];
    }
    hid_t space = H5Screate_simple(rank, cur, max);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t d = -1;
    /* HDF5 filters cannot apply to variable-length strings (they hold heap references): no checksum there */
    int strings = H5Tis_variable_str(file_type) > 0 || H5Tdetect_class(file_type, H5T_VLEN) > 0;
    if (space >= 0 && dcpl >= 0 && h5_set_chunked(dcpl, rank, chunk, deflate_level, !strings) >= 0)
        d = H5Dcreate2(loc, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return d;
}

int h5_append_rows(hid_t dset, hid_t mem_type, hsize_t row0, hsize_t nrows, const void *buf)
{
    hid_t fs = H5Dget_space(dset);
    hsize_t dims[8], start[8] = {0}, count[8];
    int rank = fs >= 0 ? H5Sget_simple_extent_dims(fs, dims, NULL) : -1;
    if (fs >= 0) H5Sclose(fs);
    if (rank < 1) return -1;
    if (dims[0] < row0 + nrows) {
        dims[0] = row0 + nrows;
        if (H5Dset_extent(dset, dims) < 0) return -1;
    }
    memcpy(count, dims, sizeof dims);
    start[0] = row0;
    count[0] = nrows;
    fs = H5Dget_space(dset);
    hid_t ms = H5Screate_simple(rank, count, NULL);
    int rc = -1;
    if (fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
        H5Dwrite(dset, mem_type, ms, fs, H5P_DEFAULT, buf) >= 0)
        rc = 0;
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return rc;
}

int h5_write_array(hid_t loc, const char *name, hid_t file_type, hid_t mem_type, int rank, const hsize_t *dims,
                   const void *buf)
{
    hid_t space = H5Screate_simple(rank, dims, NULL);
    if (space < 0) return -1;
    hid_t d = H5Dcreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = d >= 0 && H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0 ? 0 : -1;
    if (d >= 0) H5Dclose(d);
    H5Sclose(space);
    return rc;
}

int h5_exists(hid_t loc, const char *path)
{
    /* H5Lexists needs every intermediate link to exist: walk the path */
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf;; p++) {
        if (*p == '/' || *p == 0) {
            char saved = *p;
            *p = 0;
            if (buf[0] && H5Lexists(loc, buf, H5P_DEFAULT) <= 0) return 0;
            if (!saved) return 1;
            *p = saved;
        }
    }
}

int h5_attr_write_file_digests(hid_t obj, const char *name, const char *const *paths, int n)
{
    FileDigests digests;
    file_digests_start(&digests, paths, n, 0);
    char *lines = file_digests_take(&digests);
    int rc = lines ? h5_attr_write_str(obj, name, lines) : -1;
    free(lines);
    return rc;
}

int h5_dataset_shape(hid_t loc, const char *name, int *rank, hsize_t dims[8])
{
    if (!h5_exists(loc, name)) return -1;
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t s = H5Dget_space(d);
    int r = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    if (r >= 0 && r <= 8) H5Sget_simple_extent_dims(s, dims, NULL);
    if (s >= 0) H5Sclose(s);
    H5Dclose(d);
    if (r < 0 || r > 8) return -1;
    *rank = r;
    return 0;
}

int h5_read_all(hid_t loc, const char *name, hid_t mem_type, void *out, size_t n)
{
    int rank;
    hsize_t dims[8];
    if (h5_dataset_shape(loc, name, &rank, dims)) return -1;
    size_t total = 1;
    for (int i = 0; i < rank; i++) total *= dims[i];
    if (total != n) return -1;
    if (n == 0) return 0;
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0) return -1;
    herr_t rc = H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out);
    H5Dclose(d);
    return rc < 0 ? -1 : 0;
}

/* Selects n elements of whole rows along axis 0 from the start (along axis
 * 1 only [first, first + width) when width > 0), and a memory space of the
 * selection's shape. */
static int select_rows(hid_t d, size_t n, hsize_t first, hsize_t width, hid_t *file_space, hid_t *mem_space)
{
    hsize_t dims[8], start[8] = {0}, count[8];
    hid_t fs = H5Dget_space(d);
    int rank = fs >= 0 ? H5Sget_simple_extent_ndims(fs) : -1;
    if (rank < 1 || rank > 8 || H5Sget_simple_extent_dims(fs, dims, NULL) < 0 ||
        (width > 0 && (rank < 2 || first + width > dims[1]))) {
        if (fs >= 0) H5Sclose(fs);
        return -1;
    }
    memcpy(count, dims, sizeof dims);
    if (width > 0) start[1] = first, count[1] = width;
    size_t row = 1;
    for (int i = 1; i < rank; i++) row *= count[i];
    if (row == 0 || n % row || n / row > dims[0]) {
        H5Sclose(fs);
        return -1;
    }
    count[0] = n / row;
    /* the memory space has the selection's shape (the same bytes as a flat
     * one): with a flat one HDF5 maps every element of a chunked dataset to
     * its chunk one at a time, most of the time of reading a recorded layer */
    *mem_space = H5Screate_simple(rank, count, NULL);
    if (*mem_space < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0) {
        if (*mem_space >= 0) H5Sclose(*mem_space);
        H5Sclose(fs);
        return -1;
    }
    *file_space = fs;
    return 0;
}

static int read_rows(hid_t loc, const char *name, hid_t mem_type, hsize_t first, hsize_t width, void *out, size_t n)
{
    if (n == 0) return 0;
    if (!h5_exists(loc, name)) return -1;
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t fs = -1, ms = -1;
    int rc = select_rows(d, n, first, width, &fs, &ms) == 0 && H5Dread(d, mem_type, ms, fs, H5P_DEFAULT, out) >= 0
                 ? 0 : -1;
    if (fs >= 0) H5Sclose(fs);
    if (ms >= 0) H5Sclose(ms);
    H5Dclose(d);
    return rc;
}

int h5_read_prefix(hid_t loc, const char *name, hid_t mem_type, void *out, size_t n)
{
    return read_rows(loc, name, mem_type, 0, 0, out, n);
}

int h5_read_floats_part(hid_t loc, const char *name, size_t first, size_t width, float *out, size_t n)
{
    if (!h5_exists(loc, name)) return -1;
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t t = H5Dget_type(d);
    int half = t >= 0 && H5Tget_class(t) == H5T_FLOAT && H5Tget_size(t) == 2;
    if (t >= 0) H5Tclose(t);
    H5Dclose(d);
    if (!half) return read_rows(loc, name, H5T_NATIVE_FLOAT, first, width, out, n);
    /* read the raw halves into the second half of out, then widen in place from the front */
    uint16_t *raw = (uint16_t *)(out + n) - n;
    hid_t f16 = h5_float16_type();
    int rc = f16 >= 0 ? read_rows(loc, name, f16, first, width, raw, n) : -1;
    if (f16 >= 0) H5Tclose(f16);
    if (rc) return -1;
    fp16_to_float_array(raw, out, n);
    return 0;
}

int h5_read_floats(hid_t loc, const char *name, float *out, size_t n)
{
    return h5_read_floats_part(loc, name, 0, 0, out, n);
}

int h5_write_strings(hid_t loc, const char *name, const char *const *v, int n)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return -1;
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hsize_t dims[1] = {(hsize_t)n};
    int rc = h5_write_array(loc, name, t, t, 1, dims, v);
    H5Tclose(t);
    return rc;
}

int h5_write_file(const OutputFile *out, const char *what, int (*write)(hid_t file, void *ctx), void *ctx,
                  KvError *err)
{
    errno = 0;
    hid_t f = h5_create_file(out->tmp);
    if (f < 0) return output_io_error(err, out->path, what);
    int rc = write(f, ctx);
    int saved = errno;
    if (H5Fclose(f) < 0 && rc == 0) {
        rc = -1;
        saved = errno;
    }
    errno = saved;
    return rc ? output_io_error(err, out->path, what) : 0;
}

static char **read_strings(hid_t loc, const char *name, int n, int prefix)
{
    char **raw = calloc((size_t)(n ? n : 1), sizeof *raw), **out = calloc((size_t)(n ? n : 1), sizeof *out);
    hid_t str = vlen_utf8();
    int rc = raw && out && str >= 0 ? (prefix ? h5_read_prefix : h5_read_all)(loc, name, str, raw, (size_t)n) : -1;
    for (int i = 0; i < n && rc == 0; i++)
        if (!(out[i] = strdup(raw[i] ? raw[i] : ""))) rc = -1;
    for (int i = 0; raw && i < n; i++) H5free_memory(raw[i]);
    if (str >= 0) H5Tclose(str);
    free(raw);
    if (rc) {
        h5_free_strings(out, n);
        return NULL;
    }
    return out;
}

char **h5_read_strings(hid_t loc, const char *name, int n) { return read_strings(loc, name, n, 0); }
char **h5_read_string_prefix(hid_t loc, const char *name, int n) { return read_strings(loc, name, n, 1); }

int h5_chunks_missing(hid_t loc, const char *name, hsize_t rows, unsigned row_axes, hsize_t *have, hsize_t *want)
{
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t dcpl = H5Dget_create_plist(d), fs = H5Dget_space(d);
    hsize_t dims[8], chunk[8], n = 0;
    int rc = -1;
    *have = *want = 0;
    if (dcpl >= 0 && fs >= 0) {
        int rank = H5Sget_simple_extent_dims(fs, dims, NULL);
        if (H5Pget_layout(dcpl) != H5D_CHUNKED) {
            rc = 0;
        } else if (rank >= 1 && rank <= 8 && H5Pget_chunk(dcpl, rank, chunk) == rank &&
                   H5Dget_num_chunks(d, fs, &n) >= 0) {
            /* rows 0..rows-1 need every chunk they touch, on every axis */
            hsize_t need = 1;
            for (int i = 0; i < rank; i++) {
                hsize_t extent = row_axes & (1u << i) ? rows : dims[i];
                need *= chunk[i] ? (extent + chunk[i] - 1) / chunk[i] : 0;
            }
            *have = n;
            *want = need;
            rc = n < need ? 1 : 0;
        }
    }
    if (dcpl >= 0) H5Pclose(dcpl);
    if (fs >= 0) H5Sclose(fs);
    H5Dclose(d);
    return rc;
}

void h5_free_strings(char **v, int n)
{
    if (!v) return;
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}
