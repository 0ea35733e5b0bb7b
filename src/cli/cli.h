/* cli.h — what the subcommands of `moe` share: the entry points (one file each) and
 * small argument-parsing helpers. The CLI only uses the public API in moe.h. */
#ifndef MOE_CLI_H
#define MOE_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "moe.h"

/* Each subcommand: argv[0] is the subcommand's name. Returns the process exit status. */
typedef int (*cli_cmd_fn)(int argc, char **argv);

typedef struct {
    const char *name;
    cli_cmd_fn fn;
    const char *summary;
} cli_command;

/* Prints "moe SUB: message" to stderr and returns 1 (the usage-error exit status is 2). */
int cli_fail(const char *sub, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "moe SUB: <moe_last_error()>" and returns 1. */
int cli_fail_lib(const char *sub);
/* Usage error: message + "try 'moe SUB --help'", returns 2. */
int cli_usage(const char *sub, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Option value helpers: they print a usage error and return false on bad input.
 * `i` is advanced past the value. */
bool cli_arg_str(const char *sub, int argc, char **argv, int *i, const char **out);
bool cli_arg_int(const char *sub, int argc, char **argv, int *i, int64_t min, int64_t max, int64_t *out);
bool cli_arg_float(const char *sub, int argc, char **argv, int *i, double *out);
/* Sizes like 700M, 2G, 1.5G, 512K, 1000000 (bytes); powers of 1024. */
bool cli_parse_size(const char *s, uint64_t *out);
bool cli_arg_size(const char *sub, int argc, char **argv, int *i, uint64_t *out);
/* True if argv[i] is -h or --help. */
bool cli_is_help(const char *a);

/* JSON output helpers (stdout): strings are escaped, non-finite numbers become null. */
void cli_json_str(FILE *f, const char *s, size_t len);
void cli_json_num(FILE *f, double x);

#endif
