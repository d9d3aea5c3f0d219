/* memory.h — the process's resident memory (VmRSS and its peak VmHWM from
 * /proc/self/status), for reports and benchmarks, and the memory the
 * machine has available (MemAvailable, /proc/meminfo), for refusing a run
 * that cannot fit before it starts. */
#ifndef KV_MEMORY_H
#define KV_MEMORY_H

/* Returns 0 and the figures in MiB, or -1 where /proc is not available. */
int memory_resident(double *current_mib, double *peak_mib);
/* Returns 0 and MemAvailable in bytes, or -1 where /proc is not available. */
int memory_available(double *bytes);

#endif
