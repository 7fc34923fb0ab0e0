/*
 * Starting and stopping the parasite test victim from a test driver: spawn
 * it, read its report, wait for its loop to run, collect its verdict; every
 * path (including the alarm() watchdog) kills it.
 */
#ifndef RELIVE_TEST_PARASITE_VICTIM_RUN_H
#define RELIVE_TEST_PARASITE_VICTIM_RUN_H

#include <stddef.h>
#include <sys/types.h>

#include "victim.h"

struct victim {
	pid_t pid;
	struct victim_report rep;
	char result[128];
};

/* Arm alarm(SECONDS): on expiry the current victim is killed and the test fails. */
void victim_watchdog(unsigned seconds);

int victim_start(const char *exe, const char *mode, unsigned mib, struct victim *v);
/* Wait until the victim's counter advanced (its main loop runs). */
int victim_wait_running(struct victim *v);
/* Send SIGUSR2, wait for the victim to exit, read its verdict into BUF. */
int victim_verdict(struct victim *v, char *buf, size_t len);
void victim_kill(struct victim *v);
/* /proc/PID/stat state letter, or '?' */
char victim_state(pid_t pid);

#endif
