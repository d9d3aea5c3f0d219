/* csv.h — fields of the tidy CSV files kvtrace writes (RFC 4180): text is
 * quoted when it holds a comma, a quote or a line break; a number that is
 * NaN is an empty cell, so every numeric column reads back as numbers. */
#ifndef KV_CSV_H
#define KV_CSV_H

#include <stdio.h>

/* Each writes one field and then a comma, or the line end when last. */
void csv_text(FILE *fp, const char *s, int last);
void csv_number(FILE *fp, double v, int last);
void csv_int(FILE *fp, long v, int last);
void csv_empty(FILE *fp, int last);

#endif
