/* datadir.h — where kvtrace finds the files it ships (the demo's prompts,
 * the hand-written texts, the example trace) and the bundled model.
 *
 * Looked up, in order: $KVTRACE_DATA; beside the running binary as
 * installed (BIN/../share/kvtrace, which also holds after
 * `meson install --destdir`); the installation's data directory; the source
 * tree the binary was built from.  So `kvtrace demo` runs from any folder. */
#ifndef KV_DATADIR_H
#define KV_DATADIR_H

#include <stddef.h>

/* Finds rel ("traces/prompts.txt") in the data locations; 0 and the path
 * in out, or -1 when no location has it. */
int kv_find_data(const char *rel, char *out, size_t cap);

/* The stories260K model for the demo: $KVTRACE_MODEL, ./models/, then the
 * source tree's models/ and ../shared/models/; -1 when there is none. */
int kv_find_demo_model(char *out, size_t cap);

#endif
