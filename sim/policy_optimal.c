/* optimal: the best permanent-eviction schedule in hindsight — for each token
 * the step at which it leaves, such that the total retained attention
 * Σ_t Σ_{h in unit} m_t^h is maximal with |C_t| <= B.  No real policy can
 * beat it (every real schedule is feasible for it); `ideal` bounds it above.
 *
 * The schedule is an exact min-cost assignment of the forced evictions to
 * tokens (flow.h), solved once per unit from the unit's attention rows,
 * which it streams (O(T·B) memory, no T×T matrix).  The replay then evicts,
 * whenever over budget, the token that leaves earliest in the schedule: it
 * holds exactly the schedule's tokens at every step, so it retains exactly
 * the optimal mass.  Cost per step: O(log B) (a static-score heap). */
#include <stdlib.h>

#include "flow.h"
#include "policy.h"

typedef struct {
    float *leave; /* [capacity] step at which the token leaves the cache */
} OptimalState;

static int optimal_init(Policy *p, KvError *err)
{
    OptimalState *s = calloc(1, sizeof *s);
    if (s) s->leave = calloc((size_t)p->capacity + 1, sizeof *s->leave);
    p->priv = s;
    if (!s || !s->leave) return kv_fail(err, "out of memory for the optimal schedule");
    return 0;
}

static void optimal_destroy(Policy *p)
{
    OptimalState *s = p->priv;
    if (s) free(s->leave);
    free(s);
    p->priv = NULL;
}

static int optimal_prepare(Policy *p, const AttentionRows *rows, int first_step, KvError *err)
{
    OptimalState *st = p->priv;
    int *leave = malloc((size_t)rows->T * sizeof *leave);
    if (!leave) return kv_fail(err, "out of memory for the optimal schedule of %d tokens", rows->T);
    int rc = schedule_optimal(rows, first_step, p->budget, leave, NULL, err);
    for (int i = 0; i < rows->T && rc == 0; i++) st->leave[i] = (float)leave[i];
    free(leave);
    return rc;
}

static float optimal_score(Policy *p, int token, const TokenFeatures *f)
{
    (void)f;
    return ((OptimalState *)p->priv)->leave[token]; /* earliest leaver goes first */
}

/* Measured with one thread on a 2-core AMD EPYC (2026-11-23; `kvtrace
 * simulate` of synthetic units of 2048 and 4096 tokens at 10 % and 40 %):
 * 1.0e-10 · T³ · (0.5 + B/T) seconds within 15 %, i.e. ≈ T^3 per unit. */
static double optimal_estimate_seconds(int T, int budget)
{
    double t = T;
    return 1.05e-10 * t * t * t * (0.5 + (double)budget / (T > 0 ? T : 1));
}

static size_t optimal_estimate_bytes(int T, int budget, int first_step)
{
    return schedule_memory_bytes(T, first_step, budget);
}

const PolicyOps POLICY_OPTIMAL = {
    .name = "optimal", .cost = "exact assignment once per unit, O(log B) per step",
    .kind = KIND_STATIC, .uses_attention = 1, .needs_hindsight = 1, .init = optimal_init,
    .destroy = optimal_destroy, .prepare = optimal_prepare, .enter_score = optimal_score,
    .estimate_seconds = optimal_estimate_seconds, .estimate_bytes = optimal_estimate_bytes,
};
