/*
 * Logging for every module. Levels follow CRIU's -vN: 0 nothing but fatal,
 * 1 errors, 2 warnings (default), 3 info, 4 debug. Each line carries the
 * microseconds since log_init() and the pid of the writer, so logs of forked
 * helpers interleave readably.
 */
#ifndef RELIVE_COMMON_LOG_H
#define RELIVE_COMMON_LOG_H

#include <errno.h>

enum log_level {
	LOG_MSG = 0, /* always printed (user-facing output on stderr) */
	LOG_ERROR = 1,
	LOG_WARN = 2,
	LOG_INFO = 3,
	LOG_DEBUG = 4,
};

#define LOG_DEFAULT_LEVEL LOG_WARN

void log_init(void);
void log_set_level(int level);
int log_get_level(void);
/* Send the log to PATH (appending); 0 or -errno. Stderr stays for LOG_MSG. */
int log_set_file(const char *path);
void log_fini(void);

void log_printf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define pr_msg(fmt, ...) log_printf(LOG_MSG, fmt, ##__VA_ARGS__)
#define pr_err(fmt, ...) log_printf(LOG_ERROR, "Error (%s:%d): " fmt, __FILE__, __LINE__, ##__VA_ARGS__)
#define pr_warn(fmt, ...) log_printf(LOG_WARN, "Warn (%s:%d): " fmt, __FILE__, __LINE__, ##__VA_ARGS__)
#define pr_info(fmt, ...) log_printf(LOG_INFO, fmt, ##__VA_ARGS__)
#define pr_debug(fmt, ...) log_printf(LOG_DEBUG, fmt, ##__VA_ARGS__)
/* Like pr_err, with the text of the current errno appended. */
#define pr_perror(fmt, ...)                                                                        \
	do {                                                                                       \
		int _e = errno;                                                                    \
		log_printf(LOG_ERROR, "Error (%s:%d): " fmt ": %s\n", __FILE__, __LINE__,          \
			   ##__VA_ARGS__, strerror(_e));                                           \
		errno = _e;                                                                        \
	} while (0)

#include <string.h>

#endif
