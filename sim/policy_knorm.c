/* knorm (Devoto et al. 2024): keep the keys with the lowest L2 norm; needs no
 * attention at all.  Layers listed in `skip` keep everything.
 * Cost per step: O(log B) (static scores in a heap). */
#include "policy.h"

enum { KNORM_SKIP, KNORM_SINK, KNORM_RECENT };
static const PolicyParam KNORM_PARAMS[] = {
    {"skip", PARAM_LAYERS, "none", 0, 0, 0, NULL, "layers that keep everything (0+1)", SHRINK_NEVER},
    PARAM_SINK("0"),
    PARAM_RECENT("0"),
};

static int knorm_init(Policy *p, KvError *err)
{
    (void)err;
    const ParamValue *skip = &p->spec.value[KNORM_SKIP];
    p->recent = policy_recent_tokens(policy_param(p, KNORM_RECENT), p->budget);
    p->sink = (int)policy_param(p, KNORM_SINK);
    for (int i = 0; i < skip->n_layers; i++)
        if (skip->layers[i] == p->layer) p->budget = p->capacity; /* this layer is not compressed */
    return 0;
}

static float knorm_score(Policy *p, int token, const TokenFeatures *f)
{
    (void)p;
    (void)token;
    return f ? -f->k_norm : 0.0f; /* highest norm = lowest score = first out */
}

const PolicyOps POLICY_KNORM = {
    .name = "knorm", .params = KNORM_PARAMS, .n_params = 3, .cost = "O(log B)",
    .kind = KIND_STATIC, .init = knorm_init, .enter_score = knorm_score,
};
