/*
 * The test hook of fault.h: RELIVE_FAULT, read once, compared by name.
 * Nothing else: the callers decide how a step fails.
 */
#include "fault.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

bool fault_armed(const char *site)
{
	static const char *want;
	static bool read;

	if (!read) {
		want = getenv("RELIVE_FAULT");
		read = true;
	}
	return want && !strcmp(want, site);
}

bool fault_at(const char *site)
{
	if (!fault_armed(site))
		return false;
	pr_err("fault injected at %s (RELIVE_FAULT)\n", site);
	return true;
}
