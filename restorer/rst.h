/*
 * Internal interface of the restorer module: the restore plan (images read
 * and validated before anything is created), the pure layout and signal
 * frame logic, and the per-task helper that becomes the restored process.
 * Everything is per task and per thread; nothing here is "the process".
 */
#ifndef RELIVE_RESTORER_RST_H
#define RELIVE_RESTORER_RST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include "img.h"
#include "opts.h"
#include "restorer-abi.h"

/* Where the restorer area goes: above this, below RST_TASK_SIZE. */
#define RST_AREA_LOW 0x40000000ULL
/* Space kept free around every busy range when placing the area. */
#define RST_AREA_GUARD (1ULL << 20)
/* How long a PID held by an unreaped zombie is waited for. */
#define RST_ZOMBIE_WAIT_MS 5000
/* Processes of one tree. */
#define RST_MAX_TASKS 1024u

struct rst_range {
	uint64_t start;
	uint64_t end;
};

/* A VMA of the image, in plain form. */
struct rst_vma {
	uint64_t start;
	uint64_t end;
	uint64_t pgoff;
	uint64_t madv; /* VMA_MADV_* */
	uint32_t prot;
	uint32_t flags;
	uint32_t kind; /* VmaKind */
	uint32_t file_id;
	bool has_file;
	uint64_t shmid; /* shared anonymous memory: the object's id (inode), 0: none */
};

/* A pagemap run of the image. */
struct rst_run {
	uint64_t vaddr;
	uint64_t nr_pages;
	uint32_t flags; /* PE_* */
};

struct rst_thread {
	uint32_t tid;
	CoreEntry *core;
};

struct rst_fd {
	uint32_t fd;
	bool cloexec;
	const FileEntry *file;
};

struct rst_task {
	uint32_t pid, ppid, pgid, sid;
	int parent; /* index in the plan; -1 for the root */
	bool zombie; /* recreated only to exit with exit_status (a wait status) */
	int32_t exit_status;
	uint32_t order; /* creation order: depth first, children in plan order */
	TaskEntry *task;
	MmEntry *mm;
	struct rst_thread *threads;
	size_t nr_threads;
	struct rst_fd *fds;
	size_t nr_fds;
	struct rst_vma *vmas;
	size_t nr_vmas;
	struct rst_run *runs;
	size_t nr_runs;
	uint32_t pages_id;
	uint64_t nr_present; /* pages read from the pages image */
	uint64_t nr_lazy; /* pages left to the lazy-pages daemon */
	/* vdso/vvar moves, checked against this kernel's layout */
	struct rst_blob_move moves[RST_MAX_VDSO];
	uint32_t nr_moves;
	/* what the helper does about the session and group (restore-cmd.c decides) */
	bool do_setsid;
	bool do_setpgid;
};

/* Shared anonymous memory mapped by several processes of the tree: one object. */
struct rst_shm {
	uint64_t shmid;
	uint64_t size; /* the highest offset mapped, page-aligned */
};

struct rst_plan {
	bool lazy; /* --lazy-pages: LAZY runs go to the daemon through a userfaultfd */
	InventoryEntry *inv;
	FileEntry **files;
	size_t nr_files;
	struct rst_task *tasks;
	size_t nr_tasks;
	struct rst_shm *shms;
	size_t nr_shms;
	/* per files[]: a description the root helper creates for several processes */
	bool *file_shared;
	size_t nr_shared;
	int shared_base; /* above every fd number of the tree: where the root holds them */
	/* file-locks.img (rst-locks.c) */
	FileLockEntry **locks;
	size_t nr_locks;
};

/* rst-plan.c: read every image of DIRFD and validate it; logs the error. */
int rst_plan_load(int dirfd, const struct relive_opts *opts, struct rst_plan *ret);
void rst_plan_free(struct rst_plan *p);
const FileEntry *rst_plan_file(const struct rst_plan *p, uint32_t id);

/* rst-layout.c: pure checks and computations (unit-tested). */
int rst_check_layout(const struct rst_vma *v, size_t nv, const struct rst_run *r, size_t nr,
		     bool lazy_ok, uint64_t *ret_present, char *err, size_t errlen);
int rst_find_gap(struct rst_range *busy, size_t n, uint64_t size, uint64_t guard, uint64_t lo,
		 uint64_t hi, uint64_t *ret);
struct rst_maps {
	struct rst_range *ranges; /* every mapping below RST_TASK_SIZE */
	size_t nr;
	struct rst_range vdso[RST_MAX_VDSO]; /* current [vvar], [vvar_vclock], [vdso] */
	uint32_t vdso_kind[RST_MAX_VDSO]; /* VmaKind of each */
	uint32_t nr_vdso;
};
int rst_parse_maps(const char *text, struct rst_maps *ret);
void rst_maps_fini(struct rst_maps *m);
int rst_plan_vdso(const struct rst_vma *v, size_t nv, const struct rst_maps *cur,
		  struct rst_blob_move *moves, uint32_t *ret_n, char *err, size_t errlen);
uint64_t rst_madv_bits(uint64_t vma_madv);
/*
 * Lazy restore: the VMAs to register with the userfaultfd, whole, in order:
 * every VMA holding at least one page of a LAZY run. out needs nv entries.
 */
size_t rst_lazy_ranges(const struct rst_vma *v, size_t nv, const struct rst_run *r, size_t nr,
		       struct rst_blob_range *out);
/* Merge the PRESENT runs into pread runs; filled[i] says VMA i gets pages. */
size_t rst_build_runs(const struct rst_vma *v, size_t nv, const struct rst_run *r, size_t nr,
		      struct rst_blob_run *out, bool *filled);

/* rst-sigframe.c: pure (unit-tested). */
bool rst_restart_fixup(struct user_regs_struct *regs);
struct rst_frame_in {
	struct user_regs_struct regs;
	const uint8_t *xsave;
	size_t xsave_len;
	uint64_t blocked;
	uint64_t ss_sp;
	uint64_t ss_size;
	int32_t ss_flags;
	/* end offset of each xsave component in the standard format, 0 if unknown */
	const uint32_t *xcomp_end;
};
size_t rst_sigframe_size(size_t xsave_len);
/* Fill end[64] from CPUID leaf 0xD (standard-format offset + size of each component). */
void rst_xstate_layout(uint32_t end[64]);
int rst_sigframe_build(void *buf, uint64_t addr, size_t len, const struct rst_frame_in *in,
		       uint64_t *ret_sp, char *err, size_t errlen);

/* rst-pid.c */
int rst_pid_wait_free(pid_t pid, unsigned int timeout_ms);
pid_t rst_clone_with_pid(pid_t pid);

/*
 * rst-pidns.c: restore --pidns. rst_pidns_clone() returns the host pid of
 * the namespace's init (relive's child) in relive, 0 in the process that
 * must become the root helper, -errno on failure (logged). After the tree
 * is released, rst_pidns_release() lets the init outlive relive.
 */
struct rst_pidns {
	pid_t init; /* host pid of pid 1 of the namespace */
	bool root_is_init; /* the root was pid 1 when dumped: it is the init */
	int ctl_wr, ack_rd; /* relive's ends of the release pipes */
	int ctl_rd, ack_wr; /* the init's */
};
pid_t rst_pidns_clone(const struct rst_plan *p, struct rst_pidns *ns, int status_fd);
int rst_pidns_release(struct rst_pidns *ns);
void rst_pidns_close(struct rst_pidns *ns);
/* Host pid of the tree's root (the init itself, or its child). */
pid_t rst_pidns_root(const struct rst_pidns *ns);

/* rst-creds.c */
int rst_creds_check(const struct rst_task *t);
void rst_creds_fill(const CredsEntry *c, struct rst_blob_creds *ret);

/* The helper: the child that becomes the restored process (rst-helper.c). */
struct rst_child {
	const struct rst_plan *plan;
	const struct rst_task *task;
	pid_t parent; /* relive restore: the helper dies with it until the blob is done */
	/* the status pipe of every task of the plan (write ends), by index */
	const int *status_fds;
	int go_fd; /* read end: one byte releases the blob once every task is ready */
	int built_fd; /* children: tells the parent helper the subtree exists, else -1 */
	int *shm_fds; /* per plan->shms, created by the root helper, inherited down */
	int *shared_fds; /* per plan->files, -1 unless shared (rst-shared.c), inherited down */
	const char *images_dir; /* for messages */
	int dirfd;
	int status_fd;
	/* fds the helper keeps for the blob (pages image, mapped files, exe) */
	int pages_fd;
	int exe_fd;
	int *map_fds; /* per VMA, -1 when not a file mapping */
	int fd_base; /* kept fds live at or above this: no task fd goes there */
	/* lazy restore: the userfaultfd and the handover socket, else -1 */
	int uffd;
	int lazy_sock;
	/* the restorer area, once prepared */
	uint8_t *area;
	uint64_t area_len;
	struct rst_blob_args *args;
	char err[1024];
};
/* Runs in the child; returns only on failure, with c->err set. */
int rst_helper_run(struct rst_child *c);
/* The whole life of a helper: runs it, reports a failure on its status pipe, exits. */
__attribute__((noreturn)) void rst_helper_main(struct rst_child *c);
void rst_child_fail(struct rst_child *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* rst-shm.c: the shared objects, created by the root helper before any fork. */
int rst_shm_plan(struct rst_plan *p);
int rst_shm_create(struct rst_child *c);
int rst_shm_fd(const struct rst_child *c, const struct rst_vma *v);

/*
 * rst-shared.c: descriptions shared by several processes of the tree. The
 * plan marks them; the root helper creates each (rst_file_open) before any
 * fork and holds it at plan->shared_base or above; every helper dup3()s
 * its fds on them from the inherited holder (rst_shared_fd, -1: not shared).
 */
int rst_shared_plan(struct rst_plan *p);
int rst_shared_create(struct rst_child *c);
int rst_shared_fd(const struct rst_child *c, const FileEntry *f);

/* rst-timers.c: POSIX timers of the task image, checked by the plan, into the args at OFF. */
int rst_ptimers_check(const struct rst_task *t);
void rst_ptimers_fill(const TaskEntry *te, struct rst_blob_args *a, uint64_t off);

/*
 * rst-locks.c: file-locks.img read and checked into the plan; the helper
 * takes its process's locks once its fds are in place and the rest closed.
 */
int rst_locks_load(int dirfd, struct rst_plan *p);
void rst_locks_free(struct rst_plan *p);
int rst_locks_take(struct rst_child *c);

/* rst-files.c (helper side) */
int rst_files_open_kept(struct rst_child *c);
int rst_files_install(struct rst_child *c);
/* A new description (close-on-exec) of FD's file, of any kind, or -errno (c->err set). */
int rst_file_open(struct rst_child *c, const struct rst_fd *fd);
/* rst-files.c (parent side preflight) */
int rst_files_check(const struct rst_plan *p);

/*
 * rst-lazy.c: the handover to the lazy-pages daemon (docs/protocol.md). The
 * parent checks that a daemon socket is there and that userfaultfd works
 * before anything is created; the helper opens the uffd, sends it with its
 * pid and waits for the daemon's 'A'. The blob does the rest.
 */
#define RST_LAZY_SOCK "lazy-pages.sock"
#define RST_LAZY_MAGIC 0x504c4c52u /* "RLLP" */
#define RST_LAZY_VERSION 1u
#define RST_LAZY_ACK 'A'
#define RST_LAZY_ACK_TIMEOUT_MS 10000
struct rst_lazy_hello {
	uint32_t magic;
	uint32_t version;
	uint32_t pid;
	uint32_t reserved;
};
/* The uffd features asked for: the wanted ones this kernel has. */
uint64_t rst_lazy_features(uint64_t supported);
int rst_lazy_preflight(const struct rst_plan *p, int dirfd, const char *dir);
int rst_lazy_handover(struct rst_child *c);
void rst_lazy_close(struct rst_child *c);

/*
 * rst-blob-args.c (helper side): map the restorer area in a gap of both
 * layouts and fill its args and tail (needs /proc: call before chroot), then
 * jump into it (returns only on failure).
 */
int rst_blob_prepare(struct rst_child *c);
int rst_blob_enter(struct rst_child *c);

#endif
