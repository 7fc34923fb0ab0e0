/*
 * The relive front end: parse the command line, set up logging, and hand the
 * options to the subcommand. Subcommands live in their modules.
 */
#include "commands.h"
#include "img.h"
#include "log.h"
#include "opts.h"
#include "relive-config.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <string.h>

int main(int argc, char **argv)
{
	struct relive_opts opts;
	int r;

	log_init();
	if (argc >= 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))) {
		printf("relive %s (image format %d)\n", RELIVE_VERSION, IMG_FORMAT_VERSION);
		return 0;
	}
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		opts_usage("relive", stdout);
		return 0;
	}
	r = opts_parse(argc, argv, &opts);
	if (r < 0)
		return 2;
	if (r > 0)
		return 0;
	if (opts.verbosity >= 0)
		log_set_level(opts.verbosity);
	/* dump creates its images directory (0700: it will hold process memory). */
	if (opts.cmd == CMD_DUMP && opts.images_dir && mkdir(opts.images_dir, 0700) &&
	    errno != EEXIST) {
		fprintf(stderr, "relive: cannot create the images directory %s: %s\n",
			opts.images_dir, strerror(errno));
		return 1;
	}
	if (opts.log_file) {
		char path[4096];
		int lr;

		/* As in CRIU, a relative log file lands in the images directory. */
		if (opts.log_file[0] != '/' && opts.images_dir)
			snprintf(path, sizeof(path), "%s/%s", opts.images_dir, opts.log_file);
		else
			snprintf(path, sizeof(path), "%s", opts.log_file);
		lr = log_set_file(path);
		if (lr) {
			fprintf(stderr, "relive: cannot open log file %s: %s\n", path, strerror(-lr));
			return 1;
		}
		if (opts.verbosity < 0)
			log_set_level(LOG_INFO);
	}
	switch (opts.cmd) {
	case CMD_DUMP:
		r = cmd_dump(&opts);
		break;
	case CMD_RESTORE:
		r = cmd_restore(&opts);
		break;
	case CMD_LAZY_PAGES:
		r = cmd_lazy_pages(&opts);
		break;
	case CMD_SHOW:
		r = cmd_show(&opts);
		break;
	case CMD_CHECK:
		r = cmd_check(&opts);
		break;
	default:
		r = 2;
	}
	log_fini();
	return r;
}
