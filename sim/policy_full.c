/* full: no eviction — the reference every other policy is measured against.
 * Cost per step: O(1). */
#include "policy.h"

const PolicyOps POLICY_FULL = {
    .name = "full", .cost = "O(1)", .kind = KIND_FULL,
};
