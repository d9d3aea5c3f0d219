#include "progress.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double kv_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void format_seconds(char *out, size_t cap, double s)
{
    if (s < 60) snprintf(out, cap, "%.0f s", s);
    else if (s < 3600) snprintf(out, cap, "%d min %02d s", (int)(s / 60), (int)s % 60);
    else snprintf(out, cap, "%d h %02d min", (int)(s / 3600), (int)(s / 60) % 60);
}

void progress_format(char *out, unsigned long cap, const char *label, long done, long total, const char *unit,
                     double elapsed)
{
    char spent[32], left[32] = "?";
    format_seconds(spent, sizeof spent, elapsed);
    if (done > 0 && total >= done) format_seconds(left, sizeof left, elapsed * (double)(total - done) / (double)done);
    double rate = elapsed > 0 ? (double)done / elapsed : 0.0;
    if (total > 0)
        snprintf(out, cap, "%s: %ld/%ld %s, %.3g %s/s, %s elapsed, ETA %s", label, done, total, unit, rate, unit,
                 spent, left);
    else
        snprintf(out, cap, "%s: starting, %s elapsed", label, spent);
}

/* Draws the line; the lock is held. */
static void draw(Progress *p, double now)
{
    char line[256];
    progress_format(line, sizeof line, p->label, p->done, p->total, p->unit, now - p->start_s);
    fprintf(stderr, "\r%s\033[K", line);
    fflush(stderr);
    p->last_draw_s = now;
}

static void *ticker(void *arg)
{
    Progress *p = arg;
    pthread_mutex_lock(&p->lock);
    while (!p->stop) {
        struct timespec until; /* wake four times a second; draw when the line is a second old */
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 250000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        if (pthread_cond_timedwait(&p->wake, &p->lock, &until) == ETIMEDOUT && !p->stop) {
            double now = kv_now_seconds();
            if (now - p->last_draw_s >= 0.95) draw(p, now);
        }
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

void progress_begin(Progress *p, const char *label)
{
    memset(p, 0, sizeof *p);
    p->enabled = isatty(STDERR_FILENO) || getenv("KVTRACE_PROGRESS"); /* the variable: for tests */
    p->start_s = kv_now_seconds();
    snprintf(p->label, sizeof p->label, "%s", label);
    snprintf(p->unit, sizeof p->unit, "steps");
    if (!p->enabled) return;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->has_thread = pthread_create(&p->thread, NULL, ticker, p) == 0;
}

void progress_update(Progress *p, long done, long total, const char *unit)
{
    if (!p->enabled) return;
    pthread_mutex_lock(&p->lock);
    p->done = done;
    p->total = total;
    snprintf(p->unit, sizeof p->unit, "%s", unit);
    double now = kv_now_seconds();
    if (now - p->last_draw_s >= 0.1 || done >= total) draw(p, now);
    pthread_mutex_unlock(&p->lock);
}

void progress_end(Progress *p)
{
    if (!p->enabled) return;
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    if (p->has_thread) pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
}
