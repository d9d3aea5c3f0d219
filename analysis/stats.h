/* stats.h — the rank statistics and bootstrap the analysis reports (GSL).
 *
 * Confidence intervals are percentile bootstraps.  A correlation's bootstrap
 * resamples its (x, y) pairs; instead of sorting every resample, each
 * replicate draws how many copies of every pair it holds and ranks that
 * multiset by walking orders sorted once (ties get average ranks), so a
 * replicate costs O(n).  Means over many units (heads, sequences) resample
 * the units and take each drawn unit's own replicate: a two-stage bootstrap
 * that carries both the spread between heads and the noise within one. */
#ifndef KV_STATS_H
#define KV_STATS_H

#include <gsl/gsl_rng.h>
#include <stddef.h>

#include "../util/error.h"

/* Spearman rank correlation with average ranks for ties (GSL); NaN when
 * n < 2 or either side is constant.  work holds 2n doubles. */
double spearman(const double *x, const double *y, size_t n, double *work);

/* Spearman of the multiset holding count[i] copies of pair i; order_x and
 * order_y index x and y in increasing order; rank_x, rank_y are scratch. */
double spearman_of_counts(const double *x, const double *y, const size_t *order_x, const size_t *order_y,
                          const unsigned *count, size_t n, double *rank_x, double *rank_y);

/* Bootstrap replicates of the Spearman correlations of n_y series with one x
 * (the same resample for all of them). */
typedef struct {
    size_t n;
    int n_y;
    size_t *order;     /* [1 + n_y][n]: order of x, then of each y */
    unsigned *count;   /* [n] copies of each pair in the replicate */
    double *rank_x, *rank_y;
} SpearmanBootstrap;

int spearman_bootstrap_init(SpearmanBootstrap *b, const double *x, const double *const *y, int n_y, size_t n,
                            KvError *err);
/* One replicate: out[j] = Spearman of x with y[j] on the resample. */
void spearman_bootstrap_draw(SpearmanBootstrap *b, const double *x, const double *const *y, gsl_rng *rng,
                             double *out);
void spearman_bootstrap_free(SpearmanBootstrap *b);

/* Moves rng past `draws` calls of gsl_rng_uniform_int(rng, n), leaving it
 * exactly as those calls would.  GSL's mt19937 (the analysis's generator)
 * is advanced by its own recurrence, a block of 624 words at a time, several
 * times faster than the calls; any other generator makes the calls. */
void rng_skip_uniform_int(gsl_rng *rng, long draws, unsigned long n);

/* Mean over units with a 95% percentile interval.  value[u] is unit u's
 * estimate, rep[u * n_boot + b] its b-th bootstrap replicate (or rep NULL:
 * units are resampled, each unit taken as is).  NaN units are left out.
 * out = {mean, low, high}. */
int mean_with_interval(const double *value, const float *rep, const size_t *units, size_t n_units, int n_boot,
                       gsl_rng *rng, double out[3], KvError *err);

#endif
