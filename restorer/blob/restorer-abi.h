/*
 * The ABI between the restore helper (normal C, inside the process being
 * restored) and the restorer blob it jumps into. The helper maps one area,
 * [blob | args | stack | vdso slot | tail], in a gap of the target layout and
 * fills the args; the blob then owns the address space. Fixed-width types,
 * offsets relative to the args struct instead of pointers, asserted sizes.
 * Per-thread state (frame, fs/gs, rseq, clear_child_tid, name) is one block
 * per thread, apart from per-process state (VMAs, runs, sigactions, mm,
 * creds); the blob creates the other threads with their TIDs. In a lazy restore the args also carry the
 * userfaultfd, the handover socket and the ranges to register. Queued
 * signals are raw 128-byte siginfo, each thread's and the process's own.
 */
#ifndef RELIVE_RESTORER_ABI_H
#define RELIVE_RESTORER_ABI_H

#include <stddef.h>
#include <stdint.h>

#define RST_BLOB_MAGIC 0x52535442u /* "RSTB" */
#define RST_BLOB_VERSION 6u /* 4: queued signals, per thread and shared; 5: go_fd; 6: POSIX timers */

#define RST_STACK_SIZE (64u * 1024)
/* Highest user address + 1 with 4-level paging (the default mmap limit). */
#define RST_TASK_SIZE 0x7ffffffff000ULL
/* [vvar], [vvar_vclock], [vdso] */
#define RST_MAX_VDSO 3
#define RST_NR_ITIMERS 3
/* The blob's stack of each thread it creates (not the leader's). */
#define RST_THREAD_STACK_SIZE (16u * 1024)
#define RST_MAX_THREADS 4096u
/* Queued signals: the kernel's siginfo_t, and at most this many per queue. */
#define RST_SIGINFO_SIZE 128u
#define RST_MAX_PENDING 65536u
/* POSIX timers of one process. */
#define RST_MAX_PTIMERS 65536u

/*
 * The tail, left mapped in the restored process: [code | go | ready | frames].
 * Created threads wait in the tail code until the leader sets "go" (after
 * "ready", the number of threads still setting up, dropped to zero and the
 * area is unmapped), then each does its own rt_sigreturn.
 */
#define RST_TAIL_CODE_SIZE 192u
#define RST_TAIL_GO_OFF 192u
#define RST_TAIL_READY_OFF 196u
#define RST_TAIL_HDR_SIZE 256u

/* Status pipe protocol: one 'K' byte on success, or 'E' and a text line. */
#define RST_STATUS_OK 'K'
#define RST_STATUS_ERR 'E'
/* The release byte on the go pipe. */
#define RST_GO 'G'

/* rst_blob_args.fault: where the blob fails on purpose (tests, RELIVE_FAULT). */
#define RST_FAULT_AFTER_MM 1u
#define RST_FAULT_BEFORE_SIGRETURN 2u

struct rst_blob_vma {
	uint64_t start;
	uint64_t end;
	uint64_t pgoff; /* file offset in bytes */
	uint64_t madv; /* bit N: madvise(N); RST_VMA_MLOCK: mlock */
	uint32_t prot; /* final protection */
	uint32_t map_prot; /* protection while the pages are filled */
	uint32_t flags; /* MAP_* (without MAP_FIXED) */
	int32_t fd; /* file of a file mapping, else -1 */
};
_Static_assert(sizeof(struct rst_blob_vma) == 48, "rst_blob_vma size");
#define RST_VMA_MLOCK (1ULL << 63)

/* pread len bytes of the pages image at off straight to vaddr. */
struct rst_blob_run {
	uint64_t vaddr;
	uint64_t len;
	uint64_t off;
};
_Static_assert(sizeof(struct rst_blob_run) == 24, "rst_blob_run size");

/* A range the blob registers with the userfaultfd (lazy restore). */
struct rst_blob_range {
	uint64_t start;
	uint64_t end;
};
_Static_assert(sizeof(struct rst_blob_range) == 16, "rst_blob_range size");

/* Lazy handover: the byte the blob writes once every lazy range is registered. */
#define RST_LAZY_READY 'R'

/* One of [vvar]/[vvar_vclock]/[vdso]: current place, dumped place, length. */
struct rst_blob_move {
	uint64_t cur;
	uint64_t dst;
	uint64_t len;
};
_Static_assert(sizeof(struct rst_blob_move) == 24, "rst_blob_move size");

/* The kernel's struct sigaction for rt_sigaction(sig, act, NULL, 8). */
struct rst_blob_sigaction {
	uint64_t handler;
	uint64_t flags;
	uint64_t restorer;
	uint64_t mask;
	uint32_t signo;
	uint32_t pad;
};
_Static_assert(sizeof(struct rst_blob_sigaction) == 40, "rst_blob_sigaction size");

struct rst_blob_itimer {
	uint32_t which;
	uint32_t pad;
	uint64_t interval_us;
	uint64_t value_us;
};
_Static_assert(sizeof(struct rst_blob_itimer) == 24, "rst_blob_itimer size");

/*
 * A POSIX timer, created by the blob with its id once every thread exists
 * (a SIGEV_THREAD_ID target may be any of them), armed with the time left.
 */
struct rst_blob_ptimer {
	int32_t id;
	int32_t clock_id;
	int32_t notify; /* SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD_ID */
	int32_t signo;
	int32_t tid; /* SIGEV_THREAD_ID target */
	uint32_t pad;
	uint64_t sival;
	uint64_t interval_ns;
	uint64_t value_ns; /* 0: disarmed */
};
_Static_assert(sizeof(struct rst_blob_ptimer) == 48, "rst_blob_ptimer size");

/* Fields of struct prctl_mm_map, auxv as an offset. */
struct rst_blob_mm {
	uint64_t start_code;
	uint64_t end_code;
	uint64_t start_data;
	uint64_t end_data;
	uint64_t start_brk;
	uint64_t brk;
	uint64_t start_stack;
	uint64_t arg_start;
	uint64_t arg_end;
	uint64_t env_start;
	uint64_t env_end;
	uint64_t auxv_off;
	uint32_t auxv_size; /* bytes */
	int32_t exe_fd; /* -1: keep the current exe link */
};
_Static_assert(sizeof(struct rst_blob_mm) == 104, "rst_blob_mm size");

struct rst_blob_creds {
	uint32_t uid, gid, euid, egid, suid, sgid, fsuid, fsgid;
	uint32_t secbits;
	uint32_t nr_groups;
	uint32_t cap_last; /* highest capability number of this kernel */
	uint32_t flags; /* RST_CREDS_* */
	uint32_t dumpable; /* PR_SET_DUMPABLE value when RST_CREDS_DUMPABLE */
	uint32_t pad;
	uint64_t cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb;
	uint64_t groups_off; /* uint32_t[nr_groups], from the args struct */
};
_Static_assert(sizeof(struct rst_blob_creds) == 104, "rst_blob_creds size");
#define RST_CREDS_AMBIENT (1u << 0)
#define RST_CREDS_DUMPABLE (1u << 1)

/* Per-thread part; the leader is entry 0. */
struct rst_blob_thread {
	uint64_t fs_base;
	uint64_t gs_base;
	uint64_t rseq_ptr; /* 0: no rseq */
	uint32_t rseq_len;
	uint32_t rseq_sig;
	uint64_t frame_sp; /* rsp for rt_sigreturn: address of the frame's uc */
	uint64_t clear_tid; /* set_tid_address; 0: none */
	uint64_t stack_top; /* created threads: top of its blob stack */
	int32_t tid;
	uint32_t nr_pending; /* signals queued for this thread */
	char name[16]; /* PR_SET_NAME, NUL-terminated; "" keeps the leader's */
	uint64_t pending_off; /* RST_SIGINFO_SIZE bytes each, oldest first */
};
_Static_assert(sizeof(struct rst_blob_thread) == 88, "rst_blob_thread size");

struct rst_blob_args {
	uint32_t magic;
	uint32_t version;
	/* the whole area, and the tail left mapped for the last two syscalls */
	uint64_t area_start;
	uint64_t area_len;
	uint64_t tail_off; /* from area_start; the tail code is copied there */
	uint64_t vdso_slot_off; /* from area_start: scratch place for the vdso move */
	int32_t pages_fd;
	int32_t status_fd;
	uint32_t nr_vmas;
	uint32_t nr_runs;
	uint32_t nr_moves;
	uint32_t nr_sigacts;
	uint32_t nr_itimers;
	uint32_t nr_close_fds;
	uint64_t vmas_off; /* offsets from the args struct */
	uint64_t runs_off;
	uint64_t sigacts_off;
	uint64_t close_fds_off; /* int32_t[]: fds the blob closes once it is done */
	/*
	 * Lazy restore: the userfaultfd and the handover socket (-1 when eager),
	 * and the ranges to register (struct rst_blob_range[nr_lazy]).
	 */
	int32_t uffd;
	int32_t lazy_sock;
	uint32_t nr_lazy;
	/*
	 * The barrier of a tree: after its 'K' the blob reads one byte from
	 * this pipe, RST_GO, before it resumes the process; end of file or any
	 * other byte ends the process. -1: no barrier.
	 */
	int32_t go_fd;
	uint64_t lazy_off;
	struct rst_blob_move moves[RST_MAX_VDSO];
	struct rst_blob_itimer itimers[RST_NR_ITIMERS];
	struct rst_blob_mm mm;
	struct rst_blob_creds creds;
	uint32_t nr_threads;
	uint32_t nr_shared_pending; /* signals queued for the process */
	uint64_t threads_off; /* struct rst_blob_thread[nr_threads], the leader first */
	uint64_t shared_pending_off; /* RST_SIGINFO_SIZE bytes each, oldest first */
	uint32_t nr_ptimers;
	uint32_t fault; /* RST_FAULT_*: a test hook (RELIVE_FAULT), 0 in real use */
	uint64_t ptimers_off; /* struct rst_blob_ptimer[nr_ptimers], by increasing id */
};
_Static_assert(offsetof(struct rst_blob_args, moves) == 128, "rst_blob_args moves");
_Static_assert(sizeof(struct rst_blob_args) == 128 + 72 + 72 + 104 + 104 + 24 + 16, "args size");

#endif
