/*
 * Process probes, all on real children: clone3 with set_tid (a child created
 * at a chosen free pid), and one sleeping child that we open a pidfd on,
 * take a file descriptor from (pidfd_getfd), read memory from
 * (process_vm_readv), then PTRACE_SEIZE + INTERRUPT into an event stop, ask
 * for its rseq registration and its NT_X86_XSTATE regset size, detach and
 * kill. vmsplice is tested on our own memory. Children are reaped on every
 * path and no wait is unbounded.
 */
#include "compat.h"
#include "kerndat-internal.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define PATTERN "relive-kerndat-remote-memory"

/* A pid that looks free: above the last one handed out, below pid_max. */
static pid_t pick_free_pid(unsigned int attempt)
{
	uint64_t last = 300, max = 32768, pid;

	if (kd_read_u64("/proc/sys/kernel/ns_last_pid", &last) || last > INT32_MAX)
		last = 300;
	if (kd_read_u64("/proc/sys/kernel/pid_max", &max) || max < 1024 || max > INT32_MAX)
		max = 32768;
	pid = last + 50 + attempt * 37;
	if (pid >= max)
		pid = 300 + attempt * 37;
	return pid;
}

static void probe_clone3(struct kerndat *kd)
{
	struct clone_args args;
	int e = EEXIST, status, r;
	pid_t want = 0, pid = -1;
	unsigned int i;

	for (i = 0; i < 8; i++) {
		want = pick_free_pid(i);
		if (kill(want, 0) == 0 || errno != ESRCH)
			continue;
		memset(&args, 0, sizeof(args));
		args.exit_signal = SIGCHLD;
		args.set_tid = (uintptr_t)&want;
		args.set_tid_size = 1;
		pid = syscall(SYS_clone3, &args, sizeof(args));
		if (pid == 0)
			_exit(getpid() == want ? 0 : 1);
		e = errno;
		if (pid > 0)
			break;
		if (e != EEXIST)
			break;
	}
	if (pid < 0) {
		kd_set(kd, KD_CLONE3_SET_TID, false, "clone3 with set_tid [%d]: %s", want,
		       strerror(e));
		return;
	}
	r = kd_waitpid_timeout(pid, &status, 0, 2000);
	if (r) {
		kd_kill_reap(pid);
		kd_set(kd, KD_CLONE3_SET_TID, false, "waiting for the clone3 child %d: %s", pid,
		       strerror(-r));
		return;
	}
	if (pid != want || !WIFEXITED(status) || WEXITSTATUS(status))
		kd_set(kd, KD_CLONE3_SET_TID, false,
		       "asked for pid %d, got %d (the child saw %s its pid)", want, pid,
		       WIFEXITED(status) && !WEXITSTATUS(status) ? "it as" : "another as");
	else
		kd_set(kd, KD_CLONE3_SET_TID, true, "child created as pid %d", want);
}

static void probe_vmsplice(struct kerndat *kd)
{
	_cleanup_close_ int rfd = -1, wfd = -1;
	static const char msg[] = PATTERN;
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = sizeof(msg) };
	char buf[sizeof(msg)];
	ssize_t n;
	int p[2];

	if (pipe2(p, O_CLOEXEC)) {
		kd_set(kd, KD_VMSPLICE, false, "pipe: %s", strerror(errno));
		return;
	}
	rfd = p[0];
	wfd = p[1];
	n = vmsplice(wfd, &iov, 1, 0);
	if (n != sizeof(msg)) {
		kd_set(kd, KD_VMSPLICE, false, "vmsplice of %zu bytes into a pipe: %s", sizeof(msg),
		       n < 0 ? strerror(errno) : "short");
		return;
	}
	if (read(rfd, buf, sizeof(buf)) != sizeof(buf) || memcmp(buf, msg, sizeof(msg)))
		kd_set(kd, KD_VMSPLICE, false, "the pipe did not return the vmspliced bytes");
	else
		kd_set(kd, KD_VMSPLICE, true, "%s", "");
}

/* Does /proc/self/fdinfo/FD name PID as the pidfd's process? */
static bool pidfd_names(int fd, pid_t pid)
{
	_cleanup_free_ char *info = NULL;
	char path[64], want[32];

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	snprintf(want, sizeof(want), "\nPid:\t%d\n", pid);
	return !util_read_file(AT_FDCWD, path, &info, NULL) && strstr(info, want);
}

static void probe_pidfd(struct kerndat *kd, pid_t pid, int child_fd, ino_t child_ino)
{
	_cleanup_close_ int pidfd = -1, got = -1;
	struct stat st;

	pidfd = pidfd_open(pid, 0);
	if (pidfd < 0) {
		kd_set(kd, KD_PIDFD_OPEN, false, "pidfd_open(%d): %s", pid, strerror(errno));
		kd_set_same(kd, KD_PIDFD_GETFD, KD_PIDFD_OPEN);
		return;
	}
	if (!pidfd_names(pidfd, pid))
		kd_set(kd, KD_PIDFD_OPEN, false, "fdinfo of the pidfd does not name pid %d", pid);
	else
		kd_set(kd, KD_PIDFD_OPEN, true, "%s", "");

	got = pidfd_getfd(pidfd, child_fd, 0);
	if (got < 0)
		kd_set(kd, KD_PIDFD_GETFD, false, "pidfd_getfd(pid %d, fd %d): %s", pid, child_fd,
		       strerror(errno));
	else if (fstat(got, &st) || st.st_ino != child_ino)
		kd_set(kd, KD_PIDFD_GETFD, false, "fd %d taken from pid %d is not its pipe",
		       child_fd, pid);
	else
		kd_set(kd, KD_PIDFD_GETFD, true, "%s", "");
}

static void probe_vm_readv(struct kerndat *kd, pid_t pid, char *remote, size_t len)
{
	char buf[64];
	struct iovec local = { .iov_base = buf, .iov_len = len };
	struct iovec rem = { .iov_base = remote, .iov_len = len };
	ssize_t n;

	n = process_vm_readv(pid, &local, 1, &rem, 1, 0);
	if (n != (ssize_t)len)
		kd_set(kd, KD_PROCESS_VM_READV, false, "process_vm_readv(pid %d, %p, %zu): %s", pid,
		       remote, len, n < 0 ? strerror(errno) : "short read");
	else if (memcmp(buf, PATTERN, len))
		kd_set(kd, KD_PROCESS_VM_READV, false, "memory read from pid %d at %p differs", pid,
		       remote);
	else
		kd_set(kd, KD_PROCESS_VM_READV, true, "%s", "");
}

/* NT_X86_XSTATE of a stopped tracee: the size the kernel fills in. */
static uint32_t xstate_regset_size(pid_t pid)
{
	size_t cap = 64 * 1024;
	_cleanup_free_ void *buf = NULL;
	struct iovec iov;

	if (posix_memalign(&buf, 64, cap))
		return 0;
	iov.iov_base = buf;
	iov.iov_len = cap;
	if (ptrace(PTRACE_GETREGSET, pid, NT_X86_XSTATE, &iov))
		return 0;
	return iov.iov_len;
}

static void probe_ptrace(struct kerndat *kd, pid_t pid)
{
	struct __ptrace_rseq_configuration rc = { 0 };
	int status, r;
	long n;

	if (ptrace(PTRACE_SEIZE, pid, 0, PTRACE_O_EXITKILL)) {
		kd_set(kd, KD_PTRACE_SEIZE, false, "PTRACE_SEIZE of pid %d: %s", pid,
		       strerror(errno));
		kd_set_same(kd, KD_PTRACE_RSEQ, KD_PTRACE_SEIZE);
		return;
	}
	if (ptrace(PTRACE_INTERRUPT, pid, 0, 0)) {
		kd_set(kd, KD_PTRACE_SEIZE, false, "PTRACE_INTERRUPT of pid %d: %s", pid,
		       strerror(errno));
		kd_set_same(kd, KD_PTRACE_RSEQ, KD_PTRACE_SEIZE);
		return;
	}
	r = kd_waitpid_timeout(pid, &status, __WALL, 2000);
	if (r || !WIFSTOPPED(status) || (status >> 16) != PTRACE_EVENT_STOP) {
		kd_set(kd, KD_PTRACE_SEIZE, false,
		       "pid %d did not enter an event stop after PTRACE_INTERRUPT: %s", pid,
		       r ? strerror(-r) : "wrong wait status");
		kd_set_same(kd, KD_PTRACE_RSEQ, KD_PTRACE_SEIZE);
		return;
	}
	kd_set(kd, KD_PTRACE_SEIZE, true, "%s", "");

	n = ptrace(PTRACE_GET_RSEQ_CONFIGURATION, pid, sizeof(rc), &rc);
	if (n <= 0) {
		kd_set(kd, KD_PTRACE_RSEQ, false, "PTRACE_GET_RSEQ_CONFIGURATION of pid %d: %s", pid,
		       n < 0 ? strerror(errno) : "empty answer");
	} else {
		kd->rseq_abi_pointer = rc.rseq_abi_pointer;
		kd->rseq_abi_size = rc.rseq_abi_size;
		if (rc.rseq_abi_pointer)
			kd_set(kd, KD_PTRACE_RSEQ, true, "child's rseq at 0x%llx, %u bytes",
			       (unsigned long long)rc.rseq_abi_pointer, rc.rseq_abi_size);
		else
			kd_set(kd, KD_PTRACE_RSEQ, true, "child has no rseq registered");
	}
	kd->xsave_size_ptrace = xstate_regset_size(pid);
	ptrace(PTRACE_DETACH, pid, 0, 0);
}

void kd_probe_task(struct kerndat *kd)
{
	char remote[sizeof(PATTERN)];
	_cleanup_close_ int rfd = -1, wfd = -1;
	struct stat st;
	pid_t pid;
	int p[2], r;

	probe_clone3(kd);
	probe_vmsplice(kd);

	/* the child inherits the pipe and this buffer at the same address */
	memcpy(remote, PATTERN, sizeof(remote));
	if (pipe2(p, O_CLOEXEC) || fstat(p[0], &st)) {
		r = -errno;
		goto fail;
	}
	rfd = p[0];
	wfd = p[1];
	r = kd_spawn_sleeper(&pid);
	if (r)
		goto fail;
	/* now only the child holds the read end */
	close(TAKE_FD(rfd));
	memset(remote, 0, sizeof(remote));

	probe_pidfd(kd, pid, p[0], st.st_ino);
	probe_vm_readv(kd, pid, remote, sizeof(remote));
	probe_ptrace(kd, pid);
	kd_kill_reap(pid);
	return;

fail:
	kd_set(kd, KD_PIDFD_OPEN, false, "cannot start a child: %s", strerror(-r));
	kd_set(kd, KD_PIDFD_GETFD, false, "cannot start a child: %s", strerror(-r));
	kd_set(kd, KD_PROCESS_VM_READV, false, "cannot start a child: %s", strerror(-r));
	kd_set(kd, KD_PTRACE_SEIZE, false, "cannot start a child: %s", strerror(-r));
	kd_set(kd, KD_PTRACE_RSEQ, false, "cannot start a child: %s", strerror(-r));
}
