/* knorm (Devoto et al. 2024): keep the keys with the lowest L2 norm; needs no
 * attention at all.  Layers listed in `skip` keep everything.
 * Cost per step: O(log B) (static scores in a heap). */
#include "policy.h"

static int knorm_init(Policy *p, KvError *err)
{
    (void)err;
    p->recent = policy_recent_tokens(p->spec.recent, p->budget);
    p->sink = p->spec.sink;
    for (int i = 0; i < p->spec.n_skip; i++)
        if (p->spec.skip[i] == p->layer) p->budget = p->capacity; /* this layer is not compressed */
    return 0;
}

static float knorm_score(Policy *p, int token, const TokenFeatures *f)
{
    (void)p;
    (void)token;
    return f ? -f->k_norm : 0.0f; /* highest norm = lowest score = first out */
}

const PolicyOps POLICY_KNORM = {
    .name = "knorm", .defaults = "skip=none,sink=0,recent=0", .keys = "skip,sink,recent", .cost = "O(log B)",
    .kind = KIND_STATIC, .init = knorm_init, .enter_score = knorm_score,
};
