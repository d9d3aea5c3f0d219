/* dist.h — running a command's independent jobs across MPI ranks (a cluster
 * under mpirun or Slurm), or all in this process when MPI is not in use.
 *
 * Owns the MPI state of the process: whether it runs under mpirun, its rank
 * and the number of ranks.  MPI is used only when kvtrace was built with it
 * (meson -Dmpi) and was started by mpirun; a plain `kvtrace ...` never
 * initialises MPI.
 *
 * The job layer: a command splits its work into jobs 0..n-1 that every rank
 * can run alone (each rank reads the traces itself).  Rank 0 hands jobs out
 * one at a time (a rank asks for the next when it finishes one, so uneven
 * jobs balance) and runs jobs itself on a second thread; each job's partial
 * result comes back as bytes and rank 0 folds them in job order 0, 1, ...,
 * whichever rank ran which, so the results equal a single process's bit for
 * bit.  A failed job stops the run on every rank, with one message naming the
 * rank, the job and the cause. */
#ifndef KV_DIST_H
#define KV_DIST_H

#include <stddef.h>

#include "error.h"

/* Starts MPI when built with it and started by mpirun; refuses (one line in
 * err) to run under mpirun when built without it.  Call once, first. */
int dist_init(int *argc, char ***argv, KvError *err);
void dist_finalize(void);
int dist_active(void); /* under mpirun with MPI built in (even with one rank) */
int dist_rank(void);   /* 0 when not under MPI */
int dist_size(void);   /* 1 when not under MPI */

/* A growing byte buffer (a job's partial result) and a reader over one. */
typedef struct {
    unsigned char *data;
    size_t size, cap;
    int failed; /* out of memory: reported by dist_run */
} DistBuffer;

typedef struct {
    const unsigned char *data;
    size_t size, at;
    int failed; /* read past the end */
} DistReader;

void dist_put(DistBuffer *b, const void *p, size_t n);
void dist_put_int(DistBuffer *b, long v);
void dist_get(DistReader *r, void *p, size_t n);
long dist_get_int(DistReader *r);

typedef struct {
    int n_jobs;
    void *ctx;
    /* On rank 0, in job order as each job is handed out (NULL: nothing):
     * what job j needs from rank 0 (a random stream's state at its start). */
    void (*prepare)(void *ctx, int job, DistBuffer *input);
    /* On any rank: runs job j, appending its partial result to out. */
    int (*run)(void *ctx, int job, DistReader *input, DistBuffer *out, KvError *err);
    /* On rank 0 only, in job order: folds job j's partial result in. */
    int (*reduce)(void *ctx, int job, DistReader *in, KvError *err);
    /* What job j is, for messages ("a.h5 sequence 2 layer 3"). */
    void (*describe)(void *ctx, int job, char *out, size_t cap);
    const char *label; /* progress line: "simulate" */
} DistJobs;

/* Runs every job (on every rank: call it from all of them) and returns 0,
 * or -1 on every rank when a job failed; rank 0's err then reads
 * "rank R, job J (what): cause".  Rank 0 shows progress and ETA over all
 * ranks. */
int dist_run(const DistJobs *jobs, KvError *err);

/* Collective: -1 on every rank when rc != 0 on any of them.  Under MPI rank
 * 0's err then names the lowest failing rank and the step: "rank R, planning:
 * msg" (`step` = "planning"); without MPI it is left as it is. */
int dist_agree(int rc, const char *step, KvError *err);

/* Rank 0's text (malloc'd) on every rank: a temporary file name rank 0 chose. */
char *dist_share_text(const char *text);

/* Rank 0's status, on every rank (the exit status of workers follows rank 0's
 * writing of the results). */
int dist_share_status(int rc);

#endif
