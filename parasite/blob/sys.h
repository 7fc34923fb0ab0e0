/*
 * Raw x86-64 syscalls for the parasite blob (no libc), and the few kernel
 * structs it passes to them. Only the blob includes this file.
 */
#ifndef RELIVE_PARASITE_BLOB_SYS_H
#define RELIVE_PARASITE_BLOB_SYS_H

#include <asm/unistd_64.h>
#include <stdint.h>

#include "blob-syscall.h"

#define sys_call3(nr, a, b, c) blob_syscall6(nr, (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys_call4(nr, a, b, c, d) blob_syscall6(nr, (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

struct blob_iovec {
	uint64_t base;
	uint64_t len;
};

struct blob_msghdr {
	uint64_t name;
	uint32_t namelen;
	uint32_t pad0;
	uint64_t iov;
	uint64_t iovlen;
	uint64_t control;
	uint64_t controllen;
	int32_t flags;
	uint32_t pad1;
};

struct blob_cmsg_fd {
	uint64_t len;
	int32_t level;
	int32_t type;
	int32_t fd;
	uint32_t pad;
};

#define BLOB_SOL_SOCKET 1
#define BLOB_SCM_RIGHTS 1
#define BLOB_MSG_CMSG_CLOEXEC 0x40000000
#define BLOB_MSG_NOSIGNAL 0x4000
#define BLOB_CMSG_FD_LEN 20 /* CMSG_LEN(sizeof(int)) */

static inline long sys_recvmsg(int fd, struct blob_msghdr *msg, int flags)
{
	return sys_call3(__NR_recvmsg, fd, msg, flags);
}

static inline long sys_sendmsg(int fd, const struct blob_msghdr *msg, int flags)
{
	return sys_call3(__NR_sendmsg, fd, msg, flags);
}

static inline long sys_close(int fd)
{
	return sys_call3(__NR_close, fd, 0, 0);
}

static inline long sys_rt_sigaction(int sig, const void *act, void *old, unsigned long setsize)
{
	return sys_call4(__NR_rt_sigaction, sig, act, old, setsize);
}

static inline long sys_sigaltstack(const void *ss, void *old)
{
	return sys_call3(__NR_sigaltstack, ss, old, 0);
}

static inline long sys_getitimer(int which, void *val)
{
	return sys_call3(__NR_getitimer, which, val, 0);
}

static inline long sys_gettid(void)
{
	return sys_call3(__NR_gettid, 0, 0, 0);
}

static inline long sys_getpid(void)
{
	return sys_call3(__NR_getpid, 0, 0, 0);
}

static inline long sys_vmsplice(int fd, const struct blob_iovec *iov, unsigned long nr, unsigned flags)
{
	return sys_call4(__NR_vmsplice, fd, iov, nr, flags);
}

#endif
