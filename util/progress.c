#include "progress.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double kv_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void progress_begin(Progress *p, const char *label)
{
    memset(p, 0, sizeof *p);
    p->enabled = isatty(STDERR_FILENO);
    p->start_s = kv_now_seconds();
    snprintf(p->label, sizeof p->label, "%s", label);
}

void progress_update(Progress *p, long done, long total, const char *unit)
{
    if (!p->enabled) return;
    double now = kv_now_seconds();
    if (now - p->last_draw_s < 0.1 && done < total) return;
    p->last_draw_s = now;
    double elapsed = now - p->start_s;
    double rate = elapsed > 0 ? (double)done / elapsed : 0.0;
    if (total > 0)
        fprintf(stderr, "\r%s: %ld/%ld %s, %.0f %s/s   ", p->label, done, total, unit, rate, unit);
    else
        fprintf(stderr, "\r%s: %ld %s, %.0f %s/s   ", p->label, done, unit, rate, unit);
    fflush(stderr);
}

void progress_end(Progress *p)
{
    if (!p->enabled) return;
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
}
