/* streaming (StreamingLLM): the first `sink` tokens plus the most recent ones;
 * the oldest non-sink token goes first.  Cost per step: O(1). */
#include "policy.h"

static int streaming_init(Policy *p, KvError *err)
{
    (void)err;
    p->sink = p->spec.sink;
    return 0;
}

const PolicyOps POLICY_STREAMING = {
    .name = "streaming", .defaults = "sink=4", .keys = "sink", .cost = "O(1)", .kind = KIND_ORDER,
    .init = streaming_init,
};
