/*
 * State shared by the files of the injection library (freeze.c, rsys.c,
 * infect.c, rpc.c). Not part of the public API.
 */
#ifndef RELIVE_PARASITE_INTERNAL_H
#define RELIVE_PARASITE_INTERNAL_H

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>
#include <sys/user.h>

#include "psite.h"

#define PSITE_MAX_HELD_SIGS 16

struct psite_thread {
	pid_t tid;
	bool group_stop; /* stopped by a group-stop when frozen */
	int nr_held;
	siginfo_t held[PSITE_MAX_HELD_SIGS]; /* suppressed signal-delivery-stops */
};

struct psite_frozen {
	pid_t pid;
	size_t nr, cap;
	struct psite_thread *threads;
	pid_t *tids; /* mirror of threads[].tid for psite_frozen_tids() */
};

struct psite_ctl {
	struct psite_frozen *f;
	pid_t tid;
	struct user_regs_struct regs; /* as frozen */
	bool regs_saved, xstate_saved;
	void *xstate;
	size_t xstate_len;
	uint64_t sigmask;
	bool sigmask_set; /* the all-blocked mask is in place */
	uint64_t base, size, args, stack_top;
	int victim_sock; /* the parasite's socket fd in the victim, -1 if none */
	int sock; /* relive's end */
	bool running; /* the blob runs: the thread is not in a ptrace stop */
	int pipe_r, pipe_w;
	uint64_t pipe_size;
};

struct psite_thread *psite_thread_find(struct psite_frozen *f, pid_t tid);

/* Remember a suppressed signal of TH (from PTRACE_GETSIGINFO) for detach. */
void psite_hold_signal(struct psite_thread *th, int sig);

/*
 * Handle one wait status of a tracee that should end in a SIGTRAP at
 * EXPECT_IP (0: any SIGTRAP with si_code SI_KERNEL). Signal-delivery-stops of
 * other signals are held and the tracee continued: returns 1 (keep waiting).
 * Returns 0 on the expected trap, -errno otherwise.
 */
int psite_handle_status(struct psite_thread *th, int status, uint64_t expect_ip);

/* Resume TH with PTRACE_CONT and wait for its int3 at EXPECT_IP. */
int psite_run_to_trap(struct psite_thread *th, uint64_t expect_ip);

/* rpc.c: one request to the running parasite (PASS_FD >= 0 goes along in
 * SCM_RIGHTS) and its reply of exactly LEN bytes; the thread is watched
 * meanwhile, a crashed or vanished parasite gives -ECONNRESET. */
int psite_rpc_send(struct psite_ctl *ctl, uint16_t cmd, uint32_t nr_iov, uint64_t pipe_size,
		   int pass_fd);
int psite_rpc_recv(struct psite_ctl *ctl, uint16_t cmd, void *buf, size_t len);
/* poll() FDS while watching the parasite's thread: poll's count or -errno. */
struct pollfd;
int psite_rpc_poll(struct psite_ctl *ctl, struct pollfd *fds, int nr);

/* infect.c: write into the victim's memory (process_vm_writev). */
int psite_write_victim(struct psite_ctl *ctl, uint64_t addr, const void *buf, size_t len);

#endif
