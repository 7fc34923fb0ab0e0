/*
 * `relive check`: run the kernel feature probes (common/kerndat.c) and print
 * one line per feature, "NAME: ok [(detail)]" or "NAME: missing (why)", then
 * "Looks good" (exit 0) or "Missing features: a, b, c" (exit 1). What each
 * probe does is kerndat's business; this file only prints the verdicts.
 */
#include "commands.h"
#include "kerndat.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

int cmd_check(const struct relive_opts *opts)
{
	struct kerndat kd;
	unsigned int i, missing = 0;
	int r;

	(void)opts;
	r = kerndat_probe(&kd);
	if (r && r != -ENOTSUP) {
		pr_err("kernel feature probing failed: %s\n", strerror(-r));
		return 1;
	}
	for (i = 0; i < KD__NR; i++) {
		const char *text = kerndat_text(&kd, i);

		if (kerndat_has(&kd, i)) {
			printf("%s: ok%s%s%s\n", kerndat_feature_name(i), text[0] ? " (" : "", text,
			       text[0] ? ")" : "");
		} else {
			printf("%s: missing (%s)\n", kerndat_feature_name(i),
			       text[0] ? text : "no reason recorded");
			missing++;
		}
	}
	if (!missing) {
		printf("Looks good\n");
		return 0;
	}
	printf("Missing features: ");
	for (i = 0; i < KD__NR; i++) {
		if (kerndat_has(&kd, i))
			continue;
		printf("%s%s", kerndat_feature_name(i), --missing ? ", " : "\n");
	}
	return 1;
}
