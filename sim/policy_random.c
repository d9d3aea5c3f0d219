/* random: evict a uniformly random unprotected token.  The draw for a token
 * depends only on (seed, layer, unit, position), so results do not depend on
 * thread scheduling.  Cost per step: O(log B). */
#include "policy.h"

enum { RANDOM_SEED };
static const PolicyParam RANDOM_PARAMS[] = {{"seed", PARAM_COUNT, "0", 0, 1e15, 0, NULL, "seed of the draws", SHRINK_NEVER}};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static float random_score(Policy *p, int token, const TokenFeatures *f)
{
    (void)f;
    uint64_t h = mix((uint64_t)policy_param(p, RANDOM_SEED) ^ mix(((uint64_t)p->layer << 40) ^ ((uint64_t)p->unit << 24) ^ (uint64_t)token));
    return (float)(h >> 40) / (float)(1 << 24);
}

const PolicyOps POLICY_RANDOM = {
    .name = "random", .params = RANDOM_PARAMS, .n_params = 1, .cost = "O(log B)", .kind = KIND_STATIC,
    .enter_score = random_score,
};
