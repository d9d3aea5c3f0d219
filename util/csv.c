#include "csv.h"

#include <math.h>
#include <string.h>

static void end_field(FILE *fp, int last) { fputc(last ? '\n' : ',', fp); }

void csv_text(FILE *fp, const char *s, int last)
{
    if (!s) s = "";
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, fp);
    } else {
        fputc('"', fp);
        for (const char *c = s; *c; c++) {
            if (*c == '"') fputc('"', fp);
            fputc(*c, fp);
        }
        fputc('"', fp);
    }
    end_field(fp, last);
}

void csv_number(FILE *fp, double v, int last)
{
    if (!isnan(v)) fprintf(fp, "%.8g", v);
    end_field(fp, last);
}

void csv_int(FILE *fp, long v, int last)
{
    fprintf(fp, "%ld", v);
    end_field(fp, last);
}

void csv_empty(FILE *fp, int last) { end_field(fp, last); }
