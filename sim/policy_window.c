/* window: keep the B most recent tokens; the oldest goes first.
 * Cost per step: O(1) to choose, O(B) to close the gap in the held list. */
#include "policy.h"

const PolicyOps POLICY_WINDOW = {
    .name = "window", .cost = "O(1)", .kind = KIND_ORDER,
};
