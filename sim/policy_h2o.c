/* h2o (Heavy-Hitter Oracle): score = sum of the observed attention a token has
 * received, plus a recent window of floor(recent*B + 0.5) tokens.  Old tokens
 * have been summed over more rows: the age bias A2SF corrects.
 * Cost per step: O(B) to add the row, O(B) to scan for the victim. */
#include "policy.h"

enum { H2O_RECENT };
static const PolicyParam H2O_PARAMS[] = {PARAM_RECENT("0.5")};

static int h2o_init(Policy *p, KvError *err)
{
    (void)err;
    p->recent = policy_recent_tokens(policy_param(p, H2O_RECENT), p->budget);
    return 0;
}

__attribute__((target_clones("avx2", "default")))
static void h2o_observe(Policy *p, const float *g, float factor, int t)
{
    (void)t;
    float *restrict score = p->score;
    for (int j = 0; j < p->n; j++) {
        float r = g[j] * factor; /* its own statement: never fused into the add */
        score[j] += r;
    }
}

const PolicyOps POLICY_H2O = {
    .name = "h2o", .params = H2O_PARAMS, .n_params = 1, .cost = "O(B)", .kind = KIND_SCAN,
    .uses_attention = 1, .comparable_scores = 1, .init = h2o_init, .observe_scaled = h2o_observe,
};
