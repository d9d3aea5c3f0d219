/* progress.h — a single self-overwriting status line on stderr.
 *
 * Shown only when stderr is a terminal, so logs and tests stay quiet.  The
 * line is redrawn at most ten times a second. */
#ifndef KV_PROGRESS_H
#define KV_PROGRESS_H

typedef struct {
    int enabled;
    double start_s;
    double last_draw_s;
    char label[64];
} Progress;

double kv_now_seconds(void);
void progress_begin(Progress *p, const char *label);
/* done/total units; unit names what is counted ("tokens", "units"). */
void progress_update(Progress *p, long done, long total, const char *unit);
void progress_end(Progress *p);

#endif
