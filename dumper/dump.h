/*
 * Internal interface of the dumper: the context one dump carries through its
 * steps, and the steps themselves (one file each). Nothing outside dumper/
 * includes this.
 */
#ifndef RELIVE_DUMPER_DUMP_H
#define RELIVE_DUMPER_DUMP_H

#include <stdbool.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include "img.h"
#include "opts.h"
#include "proc.h"

struct psite_frozen;
struct psite_ctl;
struct psite_misc;

/* An fd of an earlier process of the tree: later ones may share its description. */
struct dmp_fd_ref {
	pid_t pid;
	int fd;
	dev_t dev;
	ino_t ino;
	uint32_t file_id;
};

/* One per dump: handed from process to process of the tree (dmp_tree_pass_files). */
struct dump_files {
	FileEntry **entries;
	size_t nr, cap;
	uint32_t next_id;
	struct dmp_fd_ref *refs;
	size_t nr_refs, cap_refs;
	/* file locks of the tree (dump-locks.c), written to file-locks.img */
	FileLockEntry **locks;
	size_t nr_locks;
};

/* A run of pages to dump, never crossing a VMA. */
struct page_run {
	uint64_t vaddr;
	uint32_t nr_pages;
	bool readable; /* the process can read it itself (vmsplice works) */
	bool lazy; /* served by the page server instead of written */
	bool zero; /* mapped to the zero page: nothing to copy */
};

struct run_list {
	struct page_run *runs;
	size_t nr, cap;
};

/* dump-pagemap.c: the page scan of a frozen process. */
struct dmp_scanner {
	pid_t pid;
	int fd; /* /proc/PID/pagemap */
	bool use_ioctl; /* PAGEMAP_SCAN, until the kernel says it has none */
	struct page_region *regions;
};

int dmp_scanner_open(pid_t pid, struct dmp_scanner *sc);
void dmp_scanner_close(struct dmp_scanner *sc);
/* Append the runs of pages of VMA that hold data (lazy ones in lazy mode). */
int dmp_scan_vma(struct dmp_scanner *sc, const VmaEntry *ve, bool lazy_mode,
		 struct run_list *runs);
bool dmp_vma_lazy(const VmaEntry *ve);
bool dmp_vma_has_data(const VmaEntry *ve);

/* One signal queue as PTRACE_PEEKSIGINFO gave it: raw siginfo, oldest first. */
struct dmp_sigqueue {
	siginfo_t *si;
	size_t nr;
};

struct dump_ctx {
	const struct relive_opts *opts;
	int dirfd;
	pid_t pid;
	bool zombie; /* a zombie of the tree: only its pstree entry is written */
	struct proc_stat stat;
	struct psite_frozen *frozen;
	struct psite_ctl *ctl;
	struct dump_files files;
	struct run_list runs;
	/* VMAs with VmFlags read before the freeze (see dmp_mm_prefreeze) */
	struct proc_vma *pre_vmas;
	size_t nr_pre_vmas;
	/* statistics (microseconds) */
	uint64_t t_start, t_frozen, memdump_us;
	uint64_t freeze_realtime_us;
	uint64_t pages_written, pages_lazy, pages_zero;
	/* per thread, in psite_frozen_tids() order: what only the thread knows */
	struct dmp_thread_state *thread_states;
	/* queued signals, read right after the freeze: per thread (tids order), shared */
	struct dmp_sigqueue *pending;
	size_t nr_pending;
	struct dmp_sigqueue shared_pending;
	/* POSIX timers, read before the memory (dump-timers.c), written by dmp_task */
	PosixTimerEntry **ptimers;
	size_t nr_ptimers;
};

/* dump-tree.c: the processes of the dump, parents first; procs[0] is the root. */
struct dump_tree {
	struct dump_ctx *procs;
	size_t nr, cap;
};

/* Freeze ROOT and every descendant, top-down; on error the caller unfreezes them. */
int dmp_tree_freeze(struct dump_tree *t, const struct relive_opts *opts, int dirfd, pid_t root);
void dmp_tree_unfreeze(struct dump_tree *t, bool kill);
void dmp_tree_fini(struct dump_tree *t);
int dmp_tree_write_pstree(struct dump_tree *t);

/* A thread's sigaltstack and clear_child_tid, as the thread itself reported them. */
struct dmp_thread_state {
	uint64_t altstack_sp, altstack_size;
	uint32_t altstack_flags;
	uint64_t clear_tid;
};

/* dump-files.c: the descriptor table of ctx->pid into files + fdinfo images. */
int dmp_files(struct dump_ctx *ctx);
/* Add a regular-file entry for a mapped file; returns its id in *ret_id. */
int dmp_files_add_mapped(struct dump_ctx *ctx, const char *path, uint32_t *ret_id);
int dmp_files_write(struct dump_ctx *ctx);
void dmp_files_fini(struct dump_files *files);

/* Write NR messages (generated protobuf-c structs) as the one image of KIND. */
int dmp_img_write_all(int dirfd, enum img_kind kind, void *const *msgs, size_t nr);

/* dump-locks.c: the locks held through fd (file FILE_ID) of ctx->pid into
 * ctx->files.locks; without --file-locks a lock fails the dump. */
int dmp_locks_fd(struct dump_ctx *ctx, int fd, const char *link, uint32_t file_id);
void dmp_locks_free(struct dump_files *files);

/* dump-tty.c: once every process is dumped, the pty settings and queued
 * bytes of each pair, and which terminals belong to the caller (--shell-job). */
int dmp_tty_finish(struct dump_ctx *ctx);

/* dump-timers.c: the POSIX timers of ctx->pid into ctx->ptimers (remote syscalls). */
int dmp_posix_timers(struct dump_ctx *ctx);
void dmp_posix_timers_free(struct dump_ctx *ctx);

/* dump-task.c: task-<pid>.img and core-<tid>.img for every thread. */
int dmp_task(struct dump_ctx *ctx);
/* dump-threads.c: the per-thread state only each thread can report (needs the
 * parasite in the leader); the queued signals, read at the freeze. */
int dmp_thread_states(struct dump_ctx *ctx, const struct psite_misc *leader);
int dmp_check_pending(struct dump_ctx *ctx);
void dmp_pending_free(struct dump_ctx *ctx);
int dmp_cores(struct dump_ctx *ctx);

/*
 * dump-mm.c: mm-<pid>.img and pagemap-<pid>.img, collected before the
 * parasite is in (so its own mapping is not part of the image); then the
 * pages image, drained by the parasite.
 */
int dmp_mm_prefreeze(struct dump_ctx *ctx);
int dmp_mm_collect(struct dump_ctx *ctx);
int dmp_mm_drain(struct dump_ctx *ctx);

#endif
