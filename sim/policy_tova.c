/* tova (token omission via attention): score = the observed attention of the
 * latest row only.  Cost per step: O(B) copy, O(B) scan. */
#include <string.h>

#include "policy.h"

static void tova_observe(Policy *p, const float *r, int t)
{
    (void)t;
    memcpy(p->score, r, (size_t)p->n * sizeof *r);
}

const PolicyOps POLICY_TOVA = {
    .name = "tova", .cost = "O(B)", .kind = KIND_SCAN, .uses_attention = 1, .comparable_scores = 1,
    .observe = tova_observe,
};
