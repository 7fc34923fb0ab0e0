/*
 * The parasite injection library: freeze a process with ptrace, run remote
 * syscalls in it, inject the parasite blob, ask it for state only the process
 * can report (signal actions, altstack, itimers), drain its memory through
 * pipes, and cure it without a trace. Every call returns 0 or -errno and logs
 * its own errors naming the pid. All calls on one frozen process must come
 * from the same thread of the caller (ptrace binds the tracer thread).
 *
 * Call order: psite_freeze -> [psite_syscall ...] -> psite_infect ->
 * psite_get_* / psite_drain ... -> psite_cure -> psite_unfreeze.
 */
#ifndef RELIVE_PARASITE_PSITE_H
#define RELIVE_PARASITE_PSITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "parasite-abi.h"

struct psite_frozen;
struct psite_ctl;

/*
 * Seize and stop every thread of PID (PTRACE_SEIZE + PTRACE_INTERRUPT),
 * re-reading /proc/PID/task until no new thread shows up. Threads that exit
 * meanwhile (and a zombie leader) are left out. Signals that arrive while
 * frozen are held and re-sent on detach.
 */
int psite_freeze(pid_t pid, struct psite_frozen **ret) __attribute__((warn_unused_result));

/* Detach from every thread (the process continues, a group-stop stays in
 * effect) or, with KILL, SIGKILL it; then free F. A killed process is reaped
 * by its parent (when the caller is that parent, it must wait itself).
 * Accepts NULL. Returns 0 or the first error. */
int psite_unfreeze(struct psite_frozen *f, bool kill);

pid_t psite_frozen_pid(const struct psite_frozen *f);
/* The tids of the frozen threads; valid until psite_unfreeze. */
const pid_t *psite_frozen_tids(const struct psite_frozen *f, size_t *ret_nr);
/* True if the process was in a group-stop (SIGSTOP & co) when frozen. */
bool psite_frozen_group_stopped(const struct psite_frozen *f);

/*
 * Run one syscall in frozen thread TID (which must not be running the
 * parasite): `syscall; int3` at its current IP with orig_rax = -1, then its
 * registers and code are put back. The syscall's own result, which may be a
 * -errno of the victim, lands in *RET_VAL; the return value is about ptrace.
 */
int psite_syscall(struct psite_frozen *f, pid_t tid, long *ret_val, long nr, long a1, long a2,
		  long a3, long a4, long a5, long a6) __attribute__((warn_unused_result));

/*
 * Map the parasite into the victim, on thread TID, and start it. On failure
 * everything done so far is undone and the process stays frozen.
 */
int psite_infect(struct psite_frozen *f, pid_t tid, struct psite_ctl **ret)
	__attribute__((warn_unused_result));

/* Stop the parasite, unmap it, put back the thread's registers, FPU state
 * and signal mask, free CTL. The process stays frozen. Accepts NULL. Tries
 * every step even after a failure; returns the first error. */
int psite_cure(struct psite_ctl *ctl);

/* The kernel's struct sigaction, as rt_sigaction returns it. */
struct psite_sigaction {
	uint64_t handler;
	uint64_t flags;
	uint64_t restorer;
	uint64_t mask;
};

struct psite_itimer {
	uint64_t interval_us;
	uint64_t value_us;
};

struct psite_misc {
	uint64_t altstack_sp;
	uint64_t altstack_size;
	int altstack_flags;
	struct psite_itimer itimers[3]; /* ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF */
	pid_t tid; /* as seen by the parasite: sanity checks */
	pid_t pid;
	uint64_t clear_tid; /* the thread's clear_child_tid (set_tid_address) */
};

/*
 * Per-thread state of a thread that does not run the parasite, read with two
 * remote syscalls in TID (sigaltstack, PR_GET_TID_ADDRESS) that use CTL's
 * args area as scratch: call between commands, never during one.
 */
struct psite_thread_state {
	uint64_t altstack_sp;
	uint64_t altstack_size;
	int altstack_flags;
	uint64_t clear_tid;
};
int psite_thread_state(struct psite_ctl *ctl, pid_t tid, struct psite_thread_state *out)
	__attribute__((warn_unused_result));

/* OUT is indexed by signo - 1; SIGKILL and SIGSTOP entries are zero. */
int psite_get_sigactions(struct psite_ctl *ctl, struct psite_sigaction out[PSITE_NSIG])
	__attribute__((warn_unused_result));
int psite_get_misc(struct psite_ctl *ctl, struct psite_misc *out)
	__attribute__((warn_unused_result));

/*
 * Append the bytes of every run, in order, to OUT_FD at its current position
 * (a regular file, not O_APPEND): the parasite vmsplices them into a pipe,
 * relive splices the pipe into OUT_FD. *RET_BYTES gets what was written,
 * also on failure.
 */
int psite_drain(struct psite_ctl *ctl, const struct iovec *runs, size_t nr, int out_fd,
		uint64_t *ret_bytes) __attribute__((warn_unused_result));

/*
 * Lazy dumps: have the parasite clone a keeper, a process that shares the
 * victim's address space (CLONE_VM, not a thread) and sleeps in pause() with
 * no descriptors, so the memory stays readable (process_vm_readv on the
 * keeper's pid) after the victim is killed. The calling thread becomes its
 * tracer with PTRACE_O_EXITKILL: if relive dies, the kernel kills the keeper.
 * On error *RET_PID may still name a keeper to kill.
 */
int psite_keeper(struct psite_ctl *ctl, pid_t *ret_pid) __attribute__((warn_unused_result));
/* SIGKILL the keeper through PIDFD, wait for its death; with F (the victim,
 * still frozen, its parent) reap it there with a remote wait4. */
int psite_keeper_kill(struct psite_frozen *f, pid_t pid, int pidfd);

#endif
