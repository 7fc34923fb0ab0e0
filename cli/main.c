/*
 * The relive front end: parse the command line, set up logging, and hand the
 * options to the subcommand. Subcommands live in their modules.
 */
#include "img.h"
#include "log.h"
#include "opts.h"
#include "relive-config.h"

#include <stdio.h>
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
	return 1;
}
