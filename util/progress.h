/* progress.h — a single self-overwriting status line on stderr.
 *
 * Shown only when stderr is a terminal, so logs and tests stay quiet.  The
 * line shows done/total, the rate and an estimate of the time left; a small
 * thread redraws it every second even when the work reports nothing for a
 * while (one long cache unit), so a terminal never looks frozen.  Updates
 * may come from any thread. */
#ifndef KV_PROGRESS_H
#define KV_PROGRESS_H

#include <pthread.h>
#include <stddef.h>

typedef struct {
    int enabled;
    double start_s;
    double last_draw_s;
    char label[64];
    char unit[16];
    long done, total;
    int stop;
    int has_thread;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
} Progress;

double kv_now_seconds(void);
/* "12 s", "6 min 05 s", "2 h 10 min" */
void format_seconds(char *out, size_t cap, double seconds);
void progress_begin(Progress *p, const char *label);
/* done/total units; unit names what is counted ("tokens", "units"). */
void progress_update(Progress *p, long done, long total, const char *unit);
void progress_end(Progress *p);

/* The status line itself (no terminal needed), for tests: "label: 3/10 units,
 * 1.5 units/s, 4.7 s elapsed, ETA 4.7 s". */
void progress_format(char *out, unsigned long cap, const char *label, long done, long total, const char *unit,
                     double elapsed);

#endif
