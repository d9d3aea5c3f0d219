#include "memory.h"

#include <stdio.h>
#include <string.h>

int memory_resident(double *current_mib, double *peak_mib)
{
    FILE *fp = fopen("/proc/self/status", "r");
    if (!fp) return -1;
    char line[256];
    long rss = -1, hwm = -1;
    while (fgets(line, sizeof line, fp)) {
        if (!strncmp(line, "VmRSS:", 6)) sscanf(line + 6, "%ld", &rss);
        if (!strncmp(line, "VmHWM:", 6)) sscanf(line + 6, "%ld", &hwm);
    }
    fclose(fp);
    if (rss < 0 || hwm < 0) return -1;
    *current_mib = rss / 1024.0;
    *peak_mib = hwm / 1024.0;
    return 0;
}

int memory_available(double *bytes)
{
    FILE *fp = fopen("/proc/meminfo", "r");
    if (!fp) return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, fp))
        if (!strncmp(line, "MemAvailable:", 13)) sscanf(line + 13, "%ld", &kib);
    fclose(fp);
    if (kib < 0) return -1;
    *bytes = kib * 1024.0;
    return 0;
}
