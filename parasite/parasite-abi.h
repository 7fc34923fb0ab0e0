/*
 * The wire ABI between the injector (relive) and the parasite blob: command
 * numbers, the fixed-width request and reply structs sent over the
 * SOCK_SEQPACKET control socket, and the layout of the area the blob is
 * mapped into. Included by both sides, so it uses fixed-width types only and
 * asserts every size; no pointers cross the boundary, only u64 addresses.
 */
#ifndef RELIVE_PARASITE_ABI_H
#define RELIVE_PARASITE_ABI_H

#include <stddef.h>
#include <stdint.h>

#define PSITE_MAGIC 0x50535445u /* "PSTE" */
#define PSITE_VERSION 2u /* 2: GET_MISC reports clear_child_tid */

#define PSITE_NSIG 64

/*
 * Area mapped in the victim: [blob incl. bss][args][stack]. The args area
 * holds the iovec list of a DRAIN batch (written by relive with
 * process_vm_writev) and the socketpair result during infection.
 */
#define PSITE_ARGS_SIZE (64u * 1024)
#define PSITE_STACK_SIZE (64u * 1024)
#define PSITE_MAX_IOV (PSITE_ARGS_SIZE / sizeof(struct psite_iov))

enum psite_cmd {
	PSITE_CMD_GET_SIGACTIONS = 1,
	PSITE_CMD_GET_MISC = 2,
	PSITE_CMD_DRAIN = 3, /* carries the pipe's write end in SCM_RIGHTS */
	PSITE_CMD_FINI = 4,
	/* clone a keeper process sharing the address space; value: its pid */
	PSITE_CMD_KEEPER = 5,
	PSITE_CMD_MAX,
};

struct psite_req {
	uint32_t magic;
	uint16_t version;
	uint16_t cmd;
	uint32_t nr_iov; /* DRAIN: iovecs at the start of the args area */
	uint32_t pad;
	uint64_t pipe_size; /* DRAIN: bytes per vmsplice call at most */
};
_Static_assert(sizeof(struct psite_req) == 24, "psite_req size");

struct psite_reply_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t cmd;
	int32_t ret; /* 0 or -errno */
	uint32_t pad;
	uint64_t value; /* DRAIN: bytes spliced into the pipe */
};
_Static_assert(sizeof(struct psite_reply_hdr) == 24, "psite_reply_hdr size");

/* The kernel's struct sigaction for rt_sigaction on x86-64. */
struct psite_ksigaction {
	uint64_t handler;
	uint64_t flags;
	uint64_t restorer;
	uint64_t mask;
};
_Static_assert(sizeof(struct psite_ksigaction) == 32, "psite_ksigaction size");

struct psite_reply_sigactions {
	struct psite_reply_hdr hdr;
	struct psite_ksigaction act[PSITE_NSIG]; /* index signo - 1; SIGKILL/SIGSTOP zero */
};
_Static_assert(sizeof(struct psite_reply_sigactions) == 24 + 64 * 32, "sigactions size");

/* The kernel's stack_t and struct itimerval (x86-64 layouts). */
struct psite_kstack {
	uint64_t sp;
	int32_t flags;
	uint32_t pad;
	uint64_t size;
};
_Static_assert(sizeof(struct psite_kstack) == 24, "psite_kstack size");

struct psite_kitimer {
	int64_t interval_sec;
	int64_t interval_usec;
	int64_t value_sec;
	int64_t value_usec;
};
_Static_assert(sizeof(struct psite_kitimer) == 32, "psite_kitimer size");

struct psite_reply_misc {
	struct psite_reply_hdr hdr;
	struct psite_kstack altstack;
	struct psite_kitimer itimer[3]; /* ITIMER_REAL, _VIRTUAL, _PROF */
	int32_t tid;
	int32_t pid;
	uint64_t clear_tid; /* prctl(PR_GET_TID_ADDRESS) of the thread */
};
_Static_assert(sizeof(struct psite_reply_misc) == 24 + 24 + 96 + 8 + 8, "psite_reply_misc size");
_Static_assert(offsetof(struct psite_reply_misc, tid) == 144, "psite_reply_misc.tid offset");

/* One run of memory to drain: the kernel's struct iovec. */
struct psite_iov {
	uint64_t base;
	uint64_t len;
};
_Static_assert(sizeof(struct psite_iov) == 16, "psite_iov size");

#endif
