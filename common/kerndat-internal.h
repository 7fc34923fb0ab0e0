/*
 * Helpers shared by the kerndat-*.c probe files; not for other modules.
 * kd_set() records one feature's verdict; the child helpers fork, bound and
 * reap the short-lived processes several probes need.
 */
#ifndef RELIVE_COMMON_KERNDAT_INTERNAL_H
#define RELIVE_COMMON_KERNDAT_INTERNAL_H

#include "kerndat.h"

void kd_set(struct kerndat *kd, enum kerndat_feature f, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Read a file holding one unsigned decimal number (/proc/sys/...): 0 or -errno. */
int kd_read_u64(const char *path, uint64_t *ret);

/* Mark F missing with the text of an earlier failure that prevents testing it. */
void kd_set_same(struct kerndat *kd, enum kerndat_feature f, enum kerndat_feature cause);

/*
 * Fork a child that runs fn(arg) and _exit()s with its return value (an errno
 * number, 0 on success). The child dies with the parent and after
 * timeout_s seconds. Returns the child's exit code (>= 0), or -errno when the
 * fork or wait failed (-ETIMEDOUT if it had to be killed).
 */
int kd_run_child(int (*fn)(void *arg), void *arg, unsigned int timeout_s);
/* Fork a child that only sleeps (for ptrace, pidfd, process_vm_readv). */
int kd_spawn_sleeper(int *ret_pid);
/* Kill (SIGKILL) and reap PID; never blocks longer than a second. */
void kd_kill_reap(int pid);
/* waitpid with a timeout in milliseconds: 0, -ETIMEDOUT or -errno. */
int kd_waitpid_timeout(int pid, int *ret_status, int flags, unsigned int timeout_ms);

void kd_probe_uffd(struct kerndat *kd);
void kd_probe_uring(struct kerndat *kd);
void kd_probe_task(struct kerndat *kd);	/* clone3, ptrace, pidfd, vm access */
void kd_probe_mm(struct kerndat *kd);	/* PR_SET_MM_MAP, vdso, netns, pipes, xstate */

#endif
