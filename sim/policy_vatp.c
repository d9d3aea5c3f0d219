/* vatp (Guo et al. 2024): score = accumulated attention x ‖v‖₁.  The base
 * accumulation is h2o's sum or a2sf's decayed sum; weighting each row's
 * contribution by the token's (fixed) value norm equals weighting the sum.
 * Attention sinks have tiny value norms, so the first `sink` tokens are
 * protected outright.  Cost per step: O(B) add, O(B) scan. */
#include <string.h>

#include "policy.h"

static int vatp_init(Policy *p, KvError *err)
{
    (void)err;
    p->recent = policy_recent_tokens(p->spec.recent, p->budget);
    p->sink = p->spec.sink;
    return 0;
}

static void vatp_observe(Policy *p, const float *r, int t)
{
    (void)t;
    if (!strcmp(p->spec.base, "a2sf")) {
        a2sf_decayed_add(p, r, p->aux);
        return;
    }
    for (int j = 0; j < p->n; j++) p->score[j] += r[j] * p->aux[j]; /* aux = ‖v‖₁ */
}

const PolicyOps POLICY_VATP = {
    .name = "vatp", .defaults = "base=h2o,alpha=0.2,recent=0.5,sink=4", .keys = "base,alpha,recent,sink",
    .cost = "O(B)", .kind = KIND_SCAN, .uses_attention = 1, .uses_value_norm = 1, .init = vatp_init, .observe = vatp_observe,
};
