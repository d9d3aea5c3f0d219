/* tova (token omission via attention): score = the observed attention of the
 * latest row only.  Cost per step: O(B) copy, O(B) scan. */
#include "policy.h"

__attribute__((target_clones("avx2", "default")))
static void tova_observe(Policy *p, const float *g, float factor, int t)
{
    (void)t;
    float *restrict score = p->score;
    for (int j = 0; j < p->n; j++) score[j] = g[j] * factor;
}

const PolicyOps POLICY_TOVA = {
    .name = "tova", .cost = "O(B)", .kind = KIND_SCAN, .uses_attention = 1, .comparable_scores = 1,
    .observe_scaled = tova_observe,
};
