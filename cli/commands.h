/*
 * Entry points of the subcommands. Each returns the process exit code:
 * 0 on success, 1 on failure (the error already logged), 2 on a usage error.
 */
#ifndef RELIVE_CLI_COMMANDS_H
#define RELIVE_CLI_COMMANDS_H

#include "opts.h"

int cmd_dump(const struct relive_opts *opts);
int cmd_restore(const struct relive_opts *opts);
int cmd_lazy_pages(const struct relive_opts *opts);
int cmd_show(const struct relive_opts *opts);
int cmd_check(const struct relive_opts *opts);

#endif
