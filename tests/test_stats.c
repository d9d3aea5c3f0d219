/* The analysis statistics on numbers worked out by hand. */
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../analysis/stats.h"
#include "../util/select.h"
#include "../util/sha256.h"
#include "check.h"

/* x = 1..5, y ranks 1 2 3 5 4: d² sums to 2, rho = 1 - 6·2/(5·24) = 0.9. */
static void spearman_known_ranking(void)
{
    double x[5] = {10, 20, 30, 40, 50}, y[5] = {0.1, 0.4, 0.5, 9.0, 2.0}, work[10];
    CHECK(fabs(spearman(x, y, 5, work) - 0.9) < 1e-12, "rho %g", spearman(x, y, 5, work));
    double reversed[5] = {5, 4, 3, 2, 1};
    CHECK(fabs(spearman(x, reversed, 5, work) + 1.0) < 1e-12, "reversed %g", spearman(x, reversed, 5, work));
    /* ties get average ranks: y ranks 1.5 1.5 3 4 5; Pearson with 1..5 has
     * co-moment 9.5 and sums of squares 10 and 9.5: rho = 9.5 / sqrt(95) */
    double tied[5] = {1, 1, 2, 3, 4};
    double r = spearman(x, tied, 5, work);
    CHECK(fabs(r - 9.5 / sqrt(95.0)) < 1e-12, "tied %g", r);
    double constant[5] = {2, 2, 2, 2, 2};
    CHECK(isnan(spearman(x, constant, 5, work)), "constant side must give NaN");
}

/* The multiset Spearman of the bootstrap equals the plain one on the expanded data. */
static void multiset_equals_expanded(void)
{
    double x[6] = {3, 1, 4, 1.5, 5, 9}, y[6] = {2, 7, 1, 8, 2.5, 8.5}, work[40];
    size_t ox[6], oy[6];
    for (size_t i = 0; i < 6; i++) ox[i] = oy[i] = i;
    for (size_t i = 0; i < 6; i++) /* insertion sorts: the orders the bootstrap needs */
        for (size_t j = i; j > 0 && x[ox[j]] < x[ox[j - 1]]; j--) { size_t t = ox[j]; ox[j] = ox[j - 1]; ox[j - 1] = t; }
    for (size_t i = 0; i < 6; i++)
        for (size_t j = i; j > 0 && y[oy[j]] < y[oy[j - 1]]; j--) { size_t t = oy[j]; oy[j] = oy[j - 1]; oy[j - 1] = t; }
    unsigned ones[6] = {1, 1, 1, 1, 1, 1}, counts[6] = {0, 3, 1, 2, 0, 1};
    double rx[6], ry[6];
    double plain = spearman(x, y, 6, work), multi = spearman_of_counts(x, y, ox, oy, ones, 6, rx, ry);
    CHECK(fabs(plain - multi) < 1e-12, "counts of one: %g vs %g", multi, plain);
    double ex[7], ey[7];
    int n = 0;
    for (int i = 0; i < 6; i++)
        for (unsigned c = 0; c < counts[i]; c++) { ex[n] = x[i]; ey[n] = y[i]; n++; }
    double expanded = spearman(ex, ey, (size_t)n, work), weighted = spearman_of_counts(x, y, ox, oy, counts, 6, rx, ry);
    CHECK(fabs(expanded - weighted) < 1e-12, "multiset %g vs expanded %g", weighted, expanded);
}

/* Bootstrap intervals: a perfect monotone relation stays at 1; units with
 * known values give the mean and an interval inside their range. */
static void bootstrap_intervals(void)
{
    enum { N = 50, B = 200 };
    double x[N], y[N], noisy[N];
    for (int i = 0; i < N; i++) { x[i] = i; y[i] = 2.0 * i * i; noisy[i] = i + ((i * 7919) % 13) * 3.0; }
    const double *series[2] = {y, noisy};
    SpearmanBootstrap boot;
    KvError err;
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 7);
    CHECK(spearman_bootstrap_init(&boot, x, series, 2, N, &err) == 0, "%s", err.msg);
    double out[2], value[2] = {1.0, 0.0};
    float rep[2 * B];
    int below_one = 0;
    for (int b = 0; b < B; b++) {
        spearman_bootstrap_draw(&boot, x, series, rng, out);
        CHECK(fabs(out[0] - 1.0) < 1e-12, "monotone replicate %g", out[0]);
        rep[b] = (float)out[0];
        rep[B + b] = (float)out[1];
        below_one += out[1] < 0.999;
    }
    double work[2 * N];
    value[1] = spearman(x, noisy, N, work);
    CHECK(below_one > B / 2, "a noisy relation must vary between replicates");
    size_t units[2] = {0, 1};
    double pooled[3];
    CHECK(mean_with_interval(value, rep, units, 2, B, rng, pooled, &err) == 0, "%s", err.msg);
    CHECK(fabs(pooled[0] - (1.0 + value[1]) / 2) < 1e-12, "mean %g", pooled[0]);
    CHECK(pooled[1] <= pooled[0] && pooled[0] <= pooled[2], "interval [%g, %g] around %g", pooled[1], pooled[2], pooled[0]);
    CHECK(pooled[1] >= value[1] - 0.2 && pooled[2] <= 1.0 + 1e-6, "interval [%g, %g]", pooled[1], pooled[2]);
    double nan_unit[2] = {0.5, NAN};
    CHECK(mean_with_interval(nan_unit, NULL, units, 2, B, rng, pooled, &err) == 0 && pooled[0] == 0.5 &&
              pooled[1] == 0.5 && pooled[2] == 0.5, "NaN units are left out: %g [%g, %g]", pooled[0], pooled[1], pooled[2]);
    spearman_bootstrap_free(&boot);
    gsl_rng_free(rng);
}

/* top_k_flags against a model that ranks by (value desc, index asc):
 * values of a few levels (ties everywhere), k from n down to 0, over 50
 * random rows. */
static void top_k_many(void)
{
    enum { N = 300 };
    const int k[] = {N + 5, N, 250, 120, 64, 64, 7, 1, 0};
    enum { NK = sizeof k / sizeof k[0] };
    float value[N], scratch[N];
    unsigned char flags[NK][N];
    unsigned seed = 5;
    int wrong = 0;
    for (int trial = 0; trial < 50; trial++) {
        for (int i = 0; i < N; i++) {
            seed = seed * 1103515245u + 12345u;
            value[i] = (float)((seed >> 16) % (trial % 7 + 2)); /* 2..8 levels */
        }
        for (int q = 0; q < NK; q++) top_k_flags(value, N, k[q], scratch, flags[q]);
        for (int q = 0; q < NK; q++)
            for (int i = 0; i < N; i++) {
                int rank = 0; /* entries ranked before i */
                for (int j = 0; j < N; j++) rank += value[j] > value[i] || (value[j] == value[i] && j < i);
                wrong += flags[q][i] != (rank < k[q]);
            }
    }
    CHECK(wrong == 0, "%d flags differ from the ranking", wrong);
}

/* The same on rows long enough to be counted into two tables (4096 entries
 * and more, an odd length too), of values so close that they share their
 * leading digits, with ties: exactly k flagged, none flagged below an
 * unflagged value, and among equal values the lowest indices first. */
static void top_k_long(void)
{
    enum { N = 5001 };
    const int k[] = {N, 4999, 4096, 2500, 1000, 1, 0};
    static float value[N], scratch[N];
    static unsigned char flags[N];
    unsigned seed = 9;
    int wrong = 0;
    for (int trial = 0; trial < 6; trial++) {
        for (int i = 0; i < N; i++) {
            seed = seed * 1103515245u + 12345u;
            value[i] = 1.0f + (float)((seed >> 16) % (trial ? 400u * trial : 3u)) * 1e-5f;
        }
        for (size_t q = 0; q < sizeof k / sizeof k[0]; q++) {
            top_k_flags(value, N, k[q], scratch, flags);
            int taken = 0, last_equal = -1;
            float least = INFINITY, most_left = -INFINITY;
            for (int i = 0; i < N; i++) {
                taken += flags[i];
                if (flags[i] && value[i] < least) least = value[i];
                if (!flags[i] && value[i] > most_left) most_left = value[i];
            }
            for (int i = 0; i < N; i++) /* the flagged ties come before the unflagged ones */
                if (value[i] == least && flags[i]) last_equal = i;
            for (int i = 0; i < last_equal; i++) wrong += value[i] == least && !flags[i];
            wrong += taken != k[q] || (taken > 0 && taken < N && most_left > least);
        }
    }
    CHECK(wrong == 0, "%d selections differ from the ranking", wrong);
}

/* rng_skip_uniform_int leaves mt19937 in the state the calls would, across
 * block ends and with frequent rejections (n near 2^32), and falls back to
 * the calls for another generator. */
static void skip_draws_exact(void)
{
    const long draws[] = {0, 1, 623, 624, 625, 1249, 100000};
    const unsigned long n[] = {4096, 7, 3000000000UL};
    const gsl_rng_type *types[] = {gsl_rng_mt19937, gsl_rng_taus2};
    for (size_t t = 0; t < 2; t++)
        for (size_t i = 0; i < sizeof draws / sizeof draws[0]; i++)
            for (size_t j = 0; j < 3; j++) {
                gsl_rng *calls = gsl_rng_alloc(types[t]), *skipped = gsl_rng_alloc(types[t]);
                gsl_rng_set(calls, 11 + i);
                gsl_rng_set(skipped, 11 + i);
                for (int warm = 0; warm < (int)i * 37; warm++) { gsl_rng_get(calls); gsl_rng_get(skipped); }
                for (long d = 0; d < draws[i]; d++) gsl_rng_uniform_int(calls, n[j]);
                rng_skip_uniform_int(skipped, draws[i], n[j]);
                CHECK(!memcmp(gsl_rng_state(calls), gsl_rng_state(skipped), gsl_rng_size(calls)) &&
                          gsl_rng_get(calls) == gsl_rng_get(skipped),
                      "%s, %ld draws below %lu: another state", gsl_rng_name(calls), draws[i], n[j]);
                gsl_rng_free(calls);
                gsl_rng_free(skipped);
            }
}

/* SHA-256: FIPS 180-4's examples, and files hashed a block at a time equal
 * their bytes hashed at once, at every size near a padding or read-block
 * boundary (the file reader takes 4 MiB at a time). */
static void sha256_files(void)
{
    char hex[65];
    sha256_hex("abc", 3, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "abc: %s", hex);
    sha256_hex("", 0, hex);
    CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "empty: %s", hex);
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(two, strlen(two), hex);
    CHECK(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"), "448 bits: %s", hex);
    size_t sizes[] = {0, 1, 55, 56, 63, 64, 65, 119, 120, (4 << 20) - 1, 4 << 20, (4 << 20) + 1, (8 << 20) + 100};
    size_t most = (8 << 20) + 100;
    unsigned char *bytes = malloc(most);
    CHECK(bytes != NULL, "out of memory");
    if (!bytes) return;
    for (size_t i = 0; i < most; i++) bytes[i] = (unsigned char)(i * 2654435761u >> 13);
    char path[] = "/tmp/kvtrace-sha256-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "cannot create %s", path);
    for (size_t k = 0; fd >= 0 && k < sizeof sizes / sizeof sizes[0]; k++) {
        CHECK(ftruncate(fd, 0) == 0 && pwrite(fd, bytes, sizes[k], 0) == (ssize_t)sizes[k], "cannot write %s", path);
        char whole[65], file[65];
        sha256_hex(bytes, sizes[k], whole);
        CHECK(sha256_file_hex(path, file) == 0, "cannot hash %s", path);
        CHECK(!strcmp(whole, file), "%zu bytes: file %s, memory %s", sizes[k], file, whole);
    }
    if (fd >= 0) close(fd), unlink(path);
    CHECK(sha256_file_hex("/nonexistent/kvtrace", hex) == -1, "a missing file must fail");
    free(bytes);
}

int main(int argc, char **argv)
{
    struct { const char *name; void (*fn)(void); } cases[] = {
        {"sha256_files", sha256_files},
        {"spearman_known_ranking", spearman_known_ranking},
        {"multiset_equals_expanded", multiset_equals_expanded},
        {"bootstrap_intervals", bootstrap_intervals},
        {"top_k_many", top_k_many},
        {"top_k_long", top_k_long},
        {"skip_draws_exact", skip_draws_exact},
    };
    if (argc != 2) return 2;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!strcmp(argv[1], cases[i].name)) {
            cases[i].fn();
            return check_status();
        }
    fprintf(stderr, "unknown case %s\n", argv[1]);
    return 2;
}
