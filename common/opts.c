/*
 * Parsing of the relive command line. Each subcommand names the options it
 * accepts and the ones it requires; anything else is a usage error (exit 2).
 */
#include "log.h"
#include "opts.h"
#include "util.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

enum opt_id {
	OPT_TREE = 't',
	OPT_DIR = 'D',
	OPT_LOG = 'o',
	OPT_VERB = 'v',
	OPT_DETACHED = 'd',
	OPT_HELP = 'h',
	OPT_ADDRESS = 1000,
	OPT_PORT,
	OPT_LEAVE_RUNNING,
	OPT_LAZY_PAGES,
	OPT_PIDFILE,
	OPT_SHELL_JOB,
	OPT_STATUS_FD,
	OPT_LAZY_TIMEOUT,
	OPT_STATS_JSON,
	OPT_EXT_UNIX_SK,
	OPT_TCP_ESTABLISHED,
	OPT_FILE_LOCKS,
	OPT_PIDNS,
	OPT_PAGE_SERVER,
};

/* Short options are folded into slots 0..5 so every option has its own bit. */
#define OPT_SLOT(o)                                                                                \
	((o) == OPT_TREE ? 0 : (o) == OPT_DIR ? 1 : (o) == OPT_LOG ? 2 : (o) == OPT_VERB ? 3 :     \
	 (o) == OPT_DETACHED ? 4 : (o) == OPT_HELP ? 5 : (o)-OPT_ADDRESS + 6)
#define BIT(o) (1ULL << OPT_SLOT(o))

static const struct option long_opts[] = {
	{ "tree", required_argument, NULL, OPT_TREE },
	{ "images-dir", required_argument, NULL, OPT_DIR },
	{ "log-file", required_argument, NULL, OPT_LOG },
	{ "verbosity", optional_argument, NULL, OPT_VERB },
	{ "restore-detached", no_argument, NULL, OPT_DETACHED },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "address", required_argument, NULL, OPT_ADDRESS },
	{ "port", required_argument, NULL, OPT_PORT },
	{ "leave-running", no_argument, NULL, OPT_LEAVE_RUNNING },
	{ "lazy-pages", no_argument, NULL, OPT_LAZY_PAGES },
	{ "pidfile", required_argument, NULL, OPT_PIDFILE },
	{ "shell-job", no_argument, NULL, OPT_SHELL_JOB },
	{ "status-fd", required_argument, NULL, OPT_STATUS_FD },
	{ "lazy-timeout", required_argument, NULL, OPT_LAZY_TIMEOUT },
	{ "stats-json", required_argument, NULL, OPT_STATS_JSON },
	{ "ext-unix-sk", no_argument, NULL, OPT_EXT_UNIX_SK },
	{ "tcp-established", no_argument, NULL, OPT_TCP_ESTABLISHED },
	{ "file-locks", no_argument, NULL, OPT_FILE_LOCKS },
	{ "pidns", no_argument, NULL, OPT_PIDNS },
	{ "page-server", no_argument, NULL, OPT_PAGE_SERVER },
	{ NULL, 0, NULL, 0 },
};

struct cmd_desc {
	const char *name;
	enum relive_cmd cmd;
	const char *synopsis;
	unsigned long long allowed; /* BIT() of accepted options */
	unsigned long long required;
	int min_args, max_args;
};

#define COMMON_BITS (BIT(OPT_LOG) | BIT(OPT_VERB) | BIT(OPT_HELP))

static const struct cmd_desc cmds[] = {
	{ "dump", CMD_DUMP,
	  "dump -t PID -D DIR [--leave-running] [--lazy-pages --address ADDR --port PORT "
	  "[--status-fd FD] [--lazy-timeout SEC]] [--shell-job] [--ext-unix-sk] "
	  "[--tcp-established] [--file-locks] [-o LOG] [-vN]",
	  COMMON_BITS | BIT(OPT_TREE) | BIT(OPT_DIR) | BIT(OPT_LEAVE_RUNNING) |
		  BIT(OPT_LAZY_PAGES) | BIT(OPT_ADDRESS) | BIT(OPT_PORT) | BIT(OPT_STATUS_FD) |
		  BIT(OPT_LAZY_TIMEOUT) | BIT(OPT_SHELL_JOB) | BIT(OPT_EXT_UNIX_SK) |
		  BIT(OPT_TCP_ESTABLISHED) | BIT(OPT_FILE_LOCKS),
	  BIT(OPT_TREE) | BIT(OPT_DIR), 0, 0 },
	{ "restore", CMD_RESTORE,
	  "restore -D DIR [-d] [--pidfile FILE] [--lazy-pages] [--shell-job] [--pidns] "
	  "[--ext-unix-sk] [--tcp-established] [--file-locks] [-o LOG] [-vN]",
	  COMMON_BITS | BIT(OPT_DIR) | BIT(OPT_DETACHED) | BIT(OPT_PIDFILE) |
		  BIT(OPT_LAZY_PAGES) | BIT(OPT_SHELL_JOB) | BIT(OPT_STATUS_FD) | BIT(OPT_PIDNS) |
		  BIT(OPT_EXT_UNIX_SK) | BIT(OPT_TCP_ESTABLISHED) | BIT(OPT_FILE_LOCKS),
	  BIT(OPT_DIR), 0, 0 },
	{ "lazy-pages", CMD_LAZY_PAGES,
	  "lazy-pages [--page-server] --address SRC --port PORT -D DIR [--status-fd FD] "
	  "[--stats-json FILE] [--lazy-timeout SEC]",
	  COMMON_BITS | BIT(OPT_DIR) | BIT(OPT_ADDRESS) | BIT(OPT_PORT) | BIT(OPT_STATUS_FD) |
		  BIT(OPT_STATS_JSON) | BIT(OPT_LAZY_TIMEOUT) | BIT(OPT_PAGE_SERVER),
	  BIT(OPT_DIR), 0, 0 },
	{ "show", CMD_SHOW, "show FILE... | show -D DIR", COMMON_BITS | BIT(OPT_DIR), 0, 0, 64 },
	{ "check", CMD_CHECK, "check", COMMON_BITS, 0, 0, 0 },
};

void opts_usage(const char *prog, void *file)
{
	FILE *f = file;

	fprintf(f, "Usage: %s COMMAND [OPTIONS]\n\nCommands:\n", prog);
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
		fprintf(f, "  %s %s\n", prog, cmds[i].synopsis);
	fprintf(f, "\n  %s --version\n  %s --help\n", prog, prog);
}

static int usage_error(const char *prog, const struct cmd_desc *cd, const char *fmt,
		       const char *arg)
{
	fprintf(stderr, "%s: ", prog);
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	if (cd)
		fprintf(stderr, "Usage: %s %s\n", prog, cd->synopsis);
	else
		fprintf(stderr, "Usage: %s COMMAND [OPTIONS] (see %s --help)\n", prog, prog);
	return -EINVAL;
}

static const char *opt_name(int id)
{
	for (const struct option *o = long_opts; o->name; o++)
		if (o->val == id)
			return o->name;
	return "?";
}

static int parse_num(const char *prog, const struct cmd_desc *cd, const char *what,
		     const char *arg, uint64_t min, uint64_t max, uint64_t *ret)
{
	char msg[128];

	if (util_parse_u64(arg, min, max, ret) == 0)
		return 0;
	snprintf(msg, sizeof(msg), "bad %s '%%s' (expected %llu..%llu)", what,
		 (unsigned long long)min, (unsigned long long)max);
	return usage_error(prog, cd, msg, arg);
}

static int apply_opt(const char *prog, const struct cmd_desc *cd, int c, const char *arg,
		     struct relive_opts *o)
{
	uint64_t v;

	switch (c) {
	case OPT_TREE:
		if (parse_num(prog, cd, "pid", arg, 1, INT_MAX, &v))
			return -EINVAL;
		o->tree = (pid_t)v;
		break;
	case OPT_DIR:
		o->images_dir = arg;
		break;
	case OPT_LOG:
		o->log_file = arg;
		break;
	case OPT_VERB:
		/* -v[v...] counts up from the default level, as in CRIU (not from "unset"). */
		if (o->verbosity < 0 && (!arg || arg[strspn(arg, "v")] == '\0'))
			o->verbosity = LOG_DEFAULT_LEVEL;
		if (!arg)
			o->verbosity++;
		else if (arg[strspn(arg, "v")] == '\0')
			o->verbosity += 1 + (int)strlen(arg); /* -vvv */
		else if (parse_num(prog, cd, "verbosity", arg, 0, 4, &v))
			return -EINVAL;
		else
			o->verbosity = (int)v;
		if (o->verbosity > 4)
			o->verbosity = 4;
		break;
	case OPT_DETACHED:
		o->restore_detached = true;
		break;
	case OPT_ADDRESS:
		o->address = arg;
		break;
	case OPT_PORT:
		if (parse_num(prog, cd, "port", arg, 1, 65535, &v))
			return -EINVAL;
		o->port = (uint16_t)v;
		o->port_set = true;
		break;
	case OPT_LEAVE_RUNNING:
		o->leave_running = true;
		break;
	case OPT_LAZY_PAGES:
		o->lazy_pages = true;
		break;
	case OPT_PIDFILE:
		o->pidfile = arg;
		break;
	case OPT_SHELL_JOB:
		o->shell_job = true;
		break;
	case OPT_STATUS_FD:
		if (parse_num(prog, cd, "status fd", arg, 0, INT_MAX, &v))
			return -EINVAL;
		o->status_fd = (int)v;
		break;
	case OPT_LAZY_TIMEOUT:
		if (parse_num(prog, cd, "lazy timeout", arg, 1, 86400, &v))
			return -EINVAL;
		o->lazy_timeout = (unsigned int)v;
		break;
	case OPT_STATS_JSON:
		o->stats_json = arg;
		break;
	case OPT_EXT_UNIX_SK:
		o->ext_unix_sk = true;
		break;
	case OPT_TCP_ESTABLISHED:
		o->tcp_established = true;
		break;
	case OPT_FILE_LOCKS:
		o->file_locks = true;
		break;
	case OPT_PIDNS:
		o->pidns = true;
		break;
	case OPT_PAGE_SERVER:
		/*
		 * CRIU's "lazy-pages --page-server" says the pages come from a
		 * remote page server; relive's daemon always fetches them so.
		 */
		break;
	}
	return 0;
}

static const struct cmd_desc *find_cmd(const char *name)
{
	/* CRIU spells the lazy-pages daemon "page-server" in places; accept both. */
	if (!strcmp(name, "page-server"))
		name = "lazy-pages";
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
		if (!strcmp(cmds[i].name, name))
			return &cmds[i];
	return NULL;
}

int opts_parse(int argc, char **argv, struct relive_opts *o)
{
	const char *prog = "relive";
	const struct cmd_desc *cd;
	unsigned long long seen = 0;
	int c;

	memset(o, 0, sizeof(*o));
	o->verbosity = -1;
	o->status_fd = -1;
	o->port = OPTS_DEFAULT_PORT;
	o->lazy_timeout = OPTS_DEFAULT_LAZY_TIMEOUT;

	if (argc < 2)
		return usage_error(prog, NULL, "%s", "missing command");
	cd = find_cmd(argv[1]);
	if (!cd)
		return usage_error(prog, NULL, "unknown command '%s'", argv[1]);
	o->cmd = cd->cmd;
	o->cmd_name = cd->name;

	optind = 1;
	opterr = 0;
	argc--;
	argv++;
	while ((c = getopt_long(argc, argv, "+:t:D:o:v::dh", long_opts, NULL)) != -1) {
		if (c == '?')
			return usage_error(prog, cd, "unknown option '%s'", argv[optind - 1]);
		if (c == ':')
			return usage_error(prog, cd, "option '%s' needs an argument",
					   argv[optind - 1]);
		if (c == OPT_HELP) {
			printf("Usage: %s %s\n", prog, cd->synopsis);
			return 1;
		}
		if (!(cd->allowed & BIT(c))) {
			char name[64];

			snprintf(name, sizeof(name), "--%s", opt_name(c));
			return usage_error(prog, cd, "option '%s' is not valid here", name);
		}
		if (apply_opt(prog, cd, c, optarg, o))
			return -EINVAL;
		seen |= BIT(c);
	}
	for (const struct option *lo = long_opts; lo->name; lo++) {
		if ((cd->required & BIT(lo->val)) && !(seen & BIT(lo->val))) {
			char name[64];

			snprintf(name, sizeof(name), "--%s", lo->name);
			return usage_error(prog, cd, "missing required option '%s'", name);
		}
	}
	o->args = argv + optind;
	o->nr_args = argc - optind;
	if (o->nr_args < cd->min_args || o->nr_args > cd->max_args)
		return usage_error(prog, cd, "unexpected argument '%s'",
				   o->nr_args ? o->args[0] : "(none)");
	if (o->cmd == CMD_SHOW && !o->images_dir && o->nr_args == 0)
		return usage_error(prog, cd, "%s", "show needs FILE... or -D DIR");
	if (o->lazy_pages && o->cmd == CMD_DUMP && !o->address)
		return usage_error(prog, cd, "%s", "--lazy-pages needs --address");
	if (o->cmd == CMD_LAZY_PAGES && !o->address)
		return usage_error(prog, cd, "%s", "missing required option '--address'");
	return 0;
}
