/*
 * Small helpers every module uses: cleanup attributes, ownership transfer,
 * array sizes and page arithmetic. Nothing here allocates or logs.
 */
#ifndef RELIVE_COMMON_UTIL_H
#define RELIVE_COMMON_UTIL_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define __must_check __attribute__((warn_unused_result))
#define __unused __attribute__((unused))

#define PAGE_SIZE_4K 4096UL
#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((__typeof__(x))(a) - 1))
#define ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a) - 1))

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

static inline void freep(void *p)
{
	free(*(void **)p);
}

static inline void closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

static inline void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)

/* Hand ownership over: returns the value and leaves the variable empty. */
#define TAKE_PTR(p)                                                                                \
	({                                                                                         \
		__typeof__(p) _tp = (p);                                                           \
		(p) = NULL;                                                                        \
		_tp;                                                                               \
	})
#define TAKE_FD(fd)                                                                                \
	({                                                                                         \
		int _tf = (fd);                                                                    \
		(fd) = -1;                                                                         \
		_tf;                                                                               \
	})

/* Monotonic clock in microseconds. */
uint64_t util_now_us(void);

/*
 * Parse an unsigned decimal number in [min, max] from a whole string.
 * Returns 0 or -EINVAL / -ERANGE.
 */
int util_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret);

/* Full read/write loops over EINTR and short transfers. 0 or -errno (-EIO on EOF). */
int util_read_full(int fd, void *buf, size_t len);
int util_write_full(int fd, const void *buf, size_t len);

/*
 * One message of LEN bytes on the unix socket SOCK, with descriptor FD
 * attached by SCM_RIGHTS (none if FD < 0). 0, -EIO on a short send, or -errno.
 */
int util_send_fd(int sock, const void *buf, size_t len, int fd);
/*
 * One message into BUF (at most LEN bytes) with recvmsg FLAGS, the
 * descriptors that came with it in FDS (at most MAX, close-on-exec; *NR of
 * them). Returns the byte count, -EPROTO if the message or its descriptors
 * were cut (those received are closed), or -errno.
 */
ssize_t util_recv_fds(int sock, void *buf, size_t len, int flags, int *fds, int max, int *nr);

/* Read a whole small file (/proc) into a NUL-terminated malloc'ed buffer. */
int util_read_file(int dirfd, const char *path, char **ret_buf, size_t *ret_len);

#endif
