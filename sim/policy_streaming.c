/* streaming (StreamingLLM): the first `sink` tokens plus the most recent ones;
 * the oldest non-sink token goes first.  Cost per step: O(1). */
#include "policy.h"

enum { STREAMING_SINK };
static const PolicyParam STREAMING_PARAMS[] = {PARAM_SINK("4")};

static int streaming_init(Policy *p, KvError *err)
{
    (void)err;
    p->sink = (int)policy_param(p, STREAMING_SINK);
    return 0;
}

const PolicyOps POLICY_STREAMING = {
    .name = "streaming", .params = STREAMING_PARAMS, .n_params = 1, .cost = "O(1)", .kind = KIND_ORDER,
    .init = streaming_init,
};
