#include "stats.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int constant(const double *v, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (v[i] != v[0]) return 0;
    return 1;
}

double spearman(const double *x, const double *y, size_t n, double *work)
{
    if (n < 2 || constant(x, n) || constant(y, n)) return NAN;
    return gsl_stats_spearman(x, 1, y, 1, n, work);
}

/* Average ranks (1-based) of the multiset in which value i appears count[i] times. */
static void ranks_of_counts(const double *v, const size_t *order, const unsigned *count, size_t n, double *rank)
{
    double below = 0;
    for (size_t j = 0; j < n;) {
        size_t end = j + 1; /* always advances: a NaN equals nothing, not even itself */
        double copies = count[order[j]];
        while (end < n && v[order[end]] == v[order[j]]) copies += count[order[end++]];
        double r = below + (copies + 1) / 2.0;
        for (size_t q = j; q < end; q++) rank[order[q]] = r;
        below += copies;
        j = end;
    }
}

static double weighted_pearson(const double *a, const double *b, const unsigned *w, size_t n)
{
    double total = 0, mean_a = 0, mean_b = 0;
    for (size_t i = 0; i < n; i++) {
        total += w[i];
        mean_a += w[i] * a[i];
        mean_b += w[i] * b[i];
    }
    if (total < 2) return NAN;
    mean_a /= total;
    mean_b /= total;
    double cov = 0, var_a = 0, var_b = 0;
    for (size_t i = 0; i < n; i++) {
        if (!w[i]) continue;
        double da = a[i] - mean_a, db = b[i] - mean_b;
        cov += w[i] * da * db;
        var_a += w[i] * da * da;
        var_b += w[i] * db * db;
    }
    return var_a > 0 && var_b > 0 ? cov / sqrt(var_a * var_b) : NAN;
}

double spearman_of_counts(const double *x, const double *y, const size_t *order_x, const size_t *order_y,
                          const unsigned *count, size_t n, double *rank_x, double *rank_y)
{
    ranks_of_counts(x, order_x, count, n, rank_x);
    ranks_of_counts(y, order_y, count, n, rank_y);
    return weighted_pearson(rank_x, rank_y, count, n);
}

int spearman_bootstrap_init(SpearmanBootstrap *b, const double *x, const double *const *y, int n_y, size_t n,
                            KvError *err)
{
    memset(b, 0, sizeof *b);
    b->n = n;
    b->n_y = n_y;
    b->order = malloc((size_t)(1 + n_y) * n * sizeof(size_t));
    b->count = malloc(n * sizeof(unsigned));
    b->rank_x = malloc(n * sizeof(double));
    b->rank_y = malloc(n * sizeof(double));
    if (!b->order || !b->count || !b->rank_x || !b->rank_y) {
        spearman_bootstrap_free(b);
        return kv_fail(err, "out of memory for a %zu-point bootstrap", n);
    }
    gsl_sort_index(b->order, x, 1, n);
    for (int j = 0; j < n_y; j++) gsl_sort_index(b->order + (size_t)(1 + j) * n, y[j], 1, n);
    return 0;
}

void spearman_bootstrap_draw(SpearmanBootstrap *b, const double *x, const double *const *y, gsl_rng *rng,
                             double *out)
{
    size_t n = b->n;
    memset(b->count, 0, n * sizeof(unsigned));
    for (size_t i = 0; i < n; i++) b->count[gsl_rng_uniform_int(rng, n)]++;
    ranks_of_counts(x, b->order, b->count, n, b->rank_x);
    for (int j = 0; j < b->n_y; j++) {
        ranks_of_counts(y[j], b->order + (size_t)(1 + j) * n, b->count, n, b->rank_y);
        out[j] = weighted_pearson(b->rank_x, b->rank_y, b->count, n);
    }
}

void spearman_bootstrap_free(SpearmanBootstrap *b)
{
    free(b->order);
    free(b->count);
    free(b->rank_x);
    free(b->rank_y);
    memset(b, 0, sizeof *b);
}

int mean_with_interval(const double *value, const float *rep, const size_t *units, size_t n_units, int n_boot,
                       gsl_rng *rng, double out[3], KvError *err)
{
    out[0] = out[1] = out[2] = NAN;
    size_t *kept = malloc((n_units ? n_units : 1) * sizeof(size_t));
    double *replicate = malloc((n_boot > 0 ? (size_t)n_boot : 1) * sizeof(double));
    if (!kept || !replicate) {
        free(kept);
        free(replicate);
        return kv_fail(err, "out of memory for a bootstrap over %zu units", n_units);
    }
    size_t n = 0;
    double sum = 0;
    for (size_t j = 0; j < n_units; j++)
        if (!isnan(value[units[j]])) {
            sum += value[units[j]];
            kept[n++] = units[j];
        }
    int made = 0;
    if (n > 0) out[0] = sum / (double)n;
    for (int b = 0; n > 0 && b < n_boot; b++) {
        double s = 0;
        int defined = 0;
        for (size_t j = 0; j < n; j++) {
            size_t u = kept[n > 1 ? gsl_rng_uniform_int(rng, n) : 0];
            double v = rep ? rep[u * (size_t)n_boot + b] : value[u];
            if (!isnan(v)) { s += v; defined++; }
        }
        if (defined) replicate[made++] = s / defined;
    }
    if (made >= 2) {
        gsl_sort(replicate, 1, (size_t)made);
        out[1] = gsl_stats_quantile_from_sorted_data(replicate, 1, (size_t)made, 0.025);
        out[2] = gsl_stats_quantile_from_sorted_data(replicate, 1, (size_t)made, 0.975);
    }
    free(kept);
    free(replicate);
    return 0;
}

/* ------------------------------------------------------------ skipping draws */

/* GSL's mt19937 state (rng/mt.c): the 624 words of Matsumoto and
 * Nishimura's generator, each kept in an unsigned long, and the index of
 * the next word to temper (624: the block is used up). */
enum { MT_N = 624, MT_M = 397 };
typedef struct {
    unsigned long mt[MT_N];
    int mti;
} MtState;

/* The next block of 624 words (the generator's twist): word k from words
 * k, k + 1 and k + 397 (mod 624), those before k already renewed. */
static unsigned long mt_mix(unsigned long upper, unsigned long lower, unsigned long far)
{
    unsigned long y = (upper & 0x80000000UL) | (lower & 0x7fffffffUL);
    return far ^ (y >> 1) ^ (-(y & 1) & 0x9908b0dfUL); /* no branch: y's low bit is a coin flip */
}

__attribute__((target_clones("avx2", "default")))
static void mt_twist(unsigned long *mt)
{
    int k = 0;
    for (; k < MT_N - MT_M; k++) mt[k] = mt_mix(mt[k], mt[k + 1], mt[k + MT_M]);
    for (; k < MT_N - 1; k++) mt[k] = mt_mix(mt[k], mt[k + 1], mt[k + MT_M - MT_N]);
    mt[MT_N - 1] = mt_mix(mt[MT_N - 1], mt[0], mt[MT_M - 1]);
}

static unsigned long mt_temper(unsigned long k)
{
    k ^= k >> 11;
    k ^= (k << 7) & 0x9d2c5680UL;
    k ^= (k << 15) & 0xefc60000UL;
    return k ^ (k >> 18);
}

/* How many of the words mt[0..n), tempered, are below `below`.  The words
 * hold 32 bits (so does below: mt19937's range), so the tempering is done
 * on 32-bit lanes, which vectorise. */
__attribute__((target_clones("avx2", "default")))
static long accepted_words(const unsigned long *mt, int n, uint32_t below)
{
    long accepted = 0;
    for (int i = 0; i < n; i++) {
        uint32_t k = (uint32_t)mt[i];
        k ^= k >> 11;
        k ^= (k << 7) & 0x9d2c5680u;
        k ^= (k << 15) & 0xefc60000u;
        accepted += (k ^ (k >> 18)) < below;
    }
    return accepted;
}

/* gsl_rng_uniform_int(r, n) takes words until one is below n * (range / n)
 * (range = max - min; min is 0 for mt19937): each draw uses up one word, or
 * more on the rare rejections. */
void rng_skip_uniform_int(gsl_rng *rng, long draws, unsigned long n)
{
    if (rng->type != gsl_rng_mt19937 || gsl_rng_size(rng) != sizeof(MtState) || rng->type->min != 0 || n == 0 ||
        n > rng->type->max) {
        for (long d = 0; d < draws; d++) gsl_rng_uniform_int(rng, n);
        return;
    }
    MtState *state = gsl_rng_state(rng);
    unsigned long below = rng->type->max / n * n;
    while (draws > 0) {
        if (state->mti >= MT_N) {
            mt_twist(state->mt);
            state->mti = 0;
        }
        int i = state->mti;
        if (draws >= MT_N - i) { /* at least a draw per word left: all are used, one draw per accepted word */
            draws -= accepted_words(state->mt + i, MT_N - i, (uint32_t)below);
            i = MT_N;
        } else {
            for (; draws > 0 && i < MT_N; i++) draws -= mt_temper(state->mt[i]) < below;
        }
        state->mti = i;
    }
}
