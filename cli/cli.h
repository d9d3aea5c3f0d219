/* cli.h — the kvtrace command line: one function per subcommand and the
 * small argument helpers they share.  Subcommands print results on stdout,
 * the one-line error on stderr, and return the process exit status. */
#ifndef KV_CLI_H
#define KV_CLI_H

#include <stddef.h>

#include "../sim/simulate.h"
#include "../util/output.h"

int cmd_record(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_simulate(int argc, char **argv);
int cmd_analyze(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);

/* Prints "kvtrace <cmd>: <msg>" and returns 1 (or 2 for usage errors). */
int cli_error(const char *cmd, const char *msg);
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Strict number parsing: the whole string must be a number in range. */
int parse_int(const char *s, long min, long max, long *out);
int parse_double(const char *s, double min, double max, double *out);
/* "1,2,3" -> malloc'd ints */
int parse_int_list(const char *s, int **out, int *n);
/* Non-empty lines of a text file (UTF-8), malloc'd. */
int read_lines(const char *path, char ***lines, int *n);
void free_lines(char **lines, int n);
/* Appends a parsed "name[:k=v,...]" to a growing policy list. */
int cli_add_policy(PolicySpec **list, int *n, const char *text, KvError *err);
/* Appends the budgets of "20%,0.4,64" (--budget is repeatable, like --policy). */
int cli_add_budgets(BudgetSpec **list, int *n, const char *text, KvError *err);
/* Appends a parsed allocation ("pyramid:beta=20"; --allocation is repeatable). */
int cli_add_allocation(AllocSpec **list, int *n, const char *text, KvError *err);
/* "kvtrace <argv...>" with every argument shell-quoted where needed, so the
 * provenance attribute of an output can be pasted back into a shell
 * (malloc'd; argv is the subcommand's, argv[0] its name). */
char *cli_command_line(int argc, char **argv);
int file_exists(const char *path);
/* Under mpirun, on rank 0: opens every trace with the damaged-file check
 * before any other rank opens them (they skip it: h5_trust_inputs). */
int cli_check_traces(const char *const *paths, int n, KvError *err);

#endif
