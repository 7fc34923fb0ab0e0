/*
 * Kernel feature probes ("kerndat", as CRIU calls it). kerndat_probe() runs
 * every probe once, for real where that is cheap (a UFFDIO_COPY into a
 * registered page, a clone3 with a chosen pid, a ptrace seize of a forked
 * child, io_uring round trips), and records per feature whether it works and,
 * if not, why (with the errno text). `relive check` prints the table; tests
 * and modules use kerndat_has() to skip or refuse cleanly. Probes that fork
 * reap their children on every path and bound every wait. Nothing here logs
 * above debug level: the caller decides what a missing feature means.
 */
#ifndef RELIVE_COMMON_KERNDAT_H
#define RELIVE_COMMON_KERNDAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every feature `relive check` reports, in the order it prints them. */
enum kerndat_feature {
	KD_UFFD,		/* userfaultfd(2), or /dev/userfaultfd */
	KD_UFFDIO_API,
	KD_UFFD_EVENT_FORK,
	KD_UFFD_EVENT_REMAP,
	KD_UFFD_EVENT_REMOVE,
	KD_UFFD_EVENT_UNMAP,
	KD_UFFD_THREAD_ID,
	KD_UFFD_MISSING_SHMEM,
	KD_UFFD_PAGEFAULT_FLAG_WP,
	KD_UFFD_WP_ASYNC,
	KD_UFFD_MOVE,
	KD_UFFDIO_COPY,		/* registered, copied and read back a page */
	KD_PAGEMAP_SCAN,
	KD_IO_URING,		/* setup + a NOP round trip */
	KD_URING_POLL_MULTI,
	KD_URING_READ,
	KD_URING_WRITE,
	KD_URING_SEND,
	KD_URING_RECV,
	KD_URING_SEND_ZC,
	KD_URING_PROVIDE_BUFFERS,
	KD_URING_RECV_MULTI,
	KD_URING_FIXED_BUFFERS,
	KD_CLONE3_SET_TID,
	KD_PTRACE_SEIZE,
	KD_PTRACE_RSEQ,
	KD_PROCESS_VM_READV,
	KD_VMSPLICE,
	KD_PIDFD_OPEN,
	KD_PIDFD_GETFD,
	KD_PRCTL_MM_MAP,
	KD_VDSO_LAYOUT,
	KD_NETNS,
	KD_PIPE_MAX_SIZE,
	KD_XSTATE_SIZE,
	KD__NR,
};

#define KERNDAT_WHY_LEN 192

struct kerndat_status {
	bool probed;
	bool ok;
	/* on failure: why, with errno text; on success: optional detail */
	char text[KERNDAT_WHY_LEN];
};

/* One special mapping of the vdso group, as found in /proc/self/maps. */
struct kerndat_vma {
	bool present;
	uint64_t start;
	uint64_t end;
};

struct kerndat {
	/* userfaultfd */
	bool has_uffd_syscall;
	bool has_uffd_dev;		/* /dev/userfaultfd + USERFAULTFD_IOC_NEW */
	uint64_t uffd_features;		/* supported mask: UFFDIO_API with features = 0 */
	uint64_t uffd_ioctls;		/* ioctls the API answer lists */

	/* io_uring: opcodes the kernel's probe lists, as a bitmap (op < 128) */
	uint64_t uring_ops[2];

	/* PR_SET_MM_MAP_SIZE answer (sizeof(struct prctl_mm_map) of the kernel) */
	unsigned int mm_map_size;

	/* rseq area of a forked child (glibc registers it): 0 when none */
	uint64_t rseq_abi_pointer;
	uint32_t rseq_abi_size;

	/* vdso group; adjacent: the present ones form one contiguous run */
	struct kerndat_vma vvar;
	struct kerndat_vma vvar_vclock;
	struct kerndat_vma vdso;
	bool vdso_adjacent;

	/* /proc/sys/fs/pipe-max-size */
	unsigned long pipe_max_size;

	/*
	 * NT_X86_XSTATE: CPUID 0xD.0 EBX (size for the enabled XCR0 features),
	 * ECX (all supported features), and the size PTRACE_GETREGSET returned
	 * for a child (0 when ptrace failed). xsave_size is the largest.
	 */
	uint32_t xsave_size_cpuid;
	uint32_t xsave_size_cpuid_max;
	uint32_t xsave_size_ptrace;
	uint32_t xsave_size;

	struct kerndat_status st[KD__NR];
};

/*
 * Run every probe and fill kd. Returns 0 when all features work, -ENOTSUP
 * when one or more are missing (kd still fully filled), or another -errno
 * if probing itself could not run.
 */
int kerndat_probe(struct kerndat *kd);

/* Printable name of a feature ("userfaultfd", "io_uring SEND_ZC", ...). */
const char *kerndat_feature_name(enum kerndat_feature f);

static inline bool kerndat_has(const struct kerndat *kd, enum kerndat_feature f)
{
	return f < KD__NR && kd->st[f].probed && kd->st[f].ok;
}

/* Why F is missing, or its detail when present ("" when none). */
static inline const char *kerndat_text(const struct kerndat *kd, enum kerndat_feature f)
{
	return f < KD__NR ? kd->st[f].text : "";
}

#endif
