/*
 * Fault injection for tests (docs/failure-modes.md "Fault injection"): the
 * environment variable RELIVE_FAULT names one site; the code at that site
 * asks fault_at("site") and, when it matches, fails as if the step had
 * failed there (-EIO), logging that it was injected. Compiled in always,
 * inert unless the variable is set. The variable is read once.
 */
#ifndef RELIVE_COMMON_FAULT_H
#define RELIVE_COMMON_FAULT_H

#include <stdbool.h>

/* True (and logged) when RELIVE_FAULT names this site. */
bool fault_at(const char *site);
/* The same without logging, for code that reports its errors another way. */
bool fault_armed(const char *site);

#endif
