/*
 * Command line options shared by every subcommand, spelled as CRIU spells
 * them where the two overlap. opts_parse() only parses and validates; the
 * subcommands act on the result. The struct is passed down explicitly: there
 * is no global copy.
 */
#ifndef RELIVE_COMMON_OPTS_H
#define RELIVE_COMMON_OPTS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum relive_cmd {
	CMD_NONE = 0,
	CMD_DUMP,
	CMD_RESTORE,
	CMD_LAZY_PAGES,
	CMD_SHOW,
	CMD_CHECK,
};

struct relive_opts {
	enum relive_cmd cmd;
	const char *cmd_name;
	pid_t tree;
	const char *images_dir;
	const char *log_file;
	int verbosity;
	const char *address;
	uint16_t port;
	bool port_set;
	bool restore_detached;
	bool leave_running;
	bool lazy_pages;
	bool shell_job;
	const char *pidfile;
	int status_fd;
	unsigned int lazy_timeout;
	const char *stats_json;
	/* leave unix sockets whose peer is outside the tree (dump), or expect them (restore) */
	bool ext_unix_sk;
	/* dump and restore established TCP connections (TCP_REPAIR) */
	bool tcp_established;
	/* dump and restore flock/POSIX locks */
	bool file_locks;
	/* restore into a new pid namespace */
	bool pidns;
	/* positional arguments after the options (show FILE ...) */
	char **args;
	int nr_args;
};

#define OPTS_DEFAULT_PORT 27000
#define OPTS_DEFAULT_LAZY_TIMEOUT 300

/* Print the usage text (all working subcommands) to F. */
void opts_usage(const char *prog, void *file);

/*
 * Parse argv into ret. Returns 0, 1 when --help/--version was handled (exit 0),
 * or -EINVAL after printing one error line and the usage line to stderr
 * (the caller exits 2).
 */
int opts_parse(int argc, char **argv, struct relive_opts *ret);

#endif
