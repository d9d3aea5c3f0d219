#include "h5util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

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
    if (space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, rank, chunk) >= 0 && H5Pset_shuffle(dcpl) >= 0 &&
        H5Pset_deflate(dcpl, (unsigned)deflate_level) >= 0)
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

int h5_read_floats(hid_t loc, const char *name, float *out, size_t n)
{
    if (!h5_exists(loc, name)) return -1;
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t t = H5Dget_type(d);
    int half = t >= 0 && H5Tget_class(t) == H5T_FLOAT && H5Tget_size(t) == 2;
    if (t >= 0) H5Tclose(t);
    H5Dclose(d);
    if (!half) return h5_read_all(loc, name, H5T_NATIVE_FLOAT, out, n);
    /* read the raw halves into the second half of out, then widen in place from the front */
    uint16_t *raw = (uint16_t *)(out + n) - n;
    hid_t f16 = h5_float16_type();
    int rc = f16 >= 0 ? h5_read_all(loc, name, f16, raw, n) : -1;
    if (f16 >= 0) H5Tclose(f16);
    if (rc) return -1;
    for (size_t i = 0; i < n; i++) out[i] = fp16_to_float(raw[i]);
    return 0;
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

int h5_write_file(const char *path, const char *what, int (*write)(hid_t file, void *ctx), void *ctx,
                  KvError *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return kv_fail(err, "%s: cannot create the %s file (is the folder writable?)", path, what);
    int rc = write(f, ctx);
    if (H5Fclose(f) < 0) rc = -1;
    if (rc || rename(tmp, path) != 0) {
        remove(tmp);
        return kv_fail(err, "%s: writing the %s failed (disk full?)", path, what);
    }
    return 0;
}

char **h5_read_strings(hid_t loc, const char *name, int n)
{
    char **raw = calloc((size_t)(n ? n : 1), sizeof *raw), **out = calloc((size_t)(n ? n : 1), sizeof *out);
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, H5T_VARIABLE);
    H5Tset_cset(str, H5T_CSET_UTF8);
    int rc = raw && out ? h5_read_all(loc, name, str, raw, (size_t)n) : -1;
    for (int i = 0; i < n && rc == 0; i++)
        if (!(out[i] = strdup(raw[i] ? raw[i] : ""))) rc = -1;
    for (int i = 0; raw && i < n; i++) H5free_memory(raw[i]);
    H5Tclose(str);
    free(raw);
    if (rc) {
        h5_free_strings(out, n);
        return NULL;
    }
    return out;
}

void h5_free_strings(char **v, int n)
{
    if (!v) return;
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}
