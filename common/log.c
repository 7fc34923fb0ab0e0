/*
 * The log sink: level filter, optional log file, timestamp and pid prefix.
 * This is the one piece of process-wide state in common/, set once by the
 * command line front end before any work starts.
 */
#include "log.h"
#include "util.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int log_level = LOG_DEFAULT_LEVEL;
static int log_fd = STDERR_FILENO;
static uint64_t log_start_us;

void log_init(void)
{
	log_start_us = util_now_us();
}

void log_set_level(int level)
{
	log_level = level;
}

int log_get_level(void)
{
	return log_level;
}

int log_set_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

	if (fd < 0)
		return -errno;
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = fd;
	return 0;
}

void log_fini(void)
{
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = STDERR_FILENO;
}

void log_printf(int level, const char *fmt, ...)
{
	char buf[4096];
	int saved = errno, off, n;
	uint64_t t;
	va_list ap;

	if (level > log_level)
		return;
	t = util_now_us() - log_start_us;
	off = 0;
	if (level != LOG_MSG)
		off = snprintf(buf, sizeof(buf), "(%02llu.%06llu) %5d: ",
			       (unsigned long long)(t / 1000000), (unsigned long long)(t % 1000000),
			       (int)getpid());
	va_start(ap, fmt);
	n = vsnprintf(buf + off, sizeof(buf) - off, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	off += n;
	if (off >= (int)sizeof(buf))
		off = sizeof(buf) - 1;
	/* Errors and plain messages reach the user even when the log goes to a file. */
	if (util_write_full(log_fd, buf, off) < 0 || (log_fd != STDERR_FILENO && level <= LOG_ERROR))
		(void)!util_write_full(STDERR_FILENO, buf, off);
	errno = saved;
}
