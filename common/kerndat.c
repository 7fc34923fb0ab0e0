/*
 * kerndat core: the feature name table, the verdict recorder and the helpers
 * that fork, time-bound and reap the children of the probes. The probes
 * themselves live in kerndat-uffd.c (userfaultfd, PAGEMAP_SCAN),
 * kerndat-uring.c (io_uring), kerndat-task.c (clone3, ptrace, pidfd,
 * process_vm_readv, vmsplice) and kerndat-mm.c (PR_SET_MM_MAP, vdso layout,
 * netns, pipes, xstate).
 */
#include "kerndat-internal.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const feature_names[KD__NR] = {
	[KD_UFFD] = "userfaultfd",
	[KD_UFFDIO_API] = "UFFDIO_API",
	[KD_UFFD_EVENT_FORK] = "uffd EVENT_FORK",
	[KD_UFFD_EVENT_REMAP] = "uffd EVENT_REMAP",
	[KD_UFFD_EVENT_REMOVE] = "uffd EVENT_REMOVE",
	[KD_UFFD_EVENT_UNMAP] = "uffd EVENT_UNMAP",
	[KD_UFFD_THREAD_ID] = "uffd THREAD_ID",
	[KD_UFFD_MISSING_SHMEM] = "uffd MISSING_SHMEM",
	[KD_UFFD_PAGEFAULT_FLAG_WP] = "uffd PAGEFAULT_FLAG_WP",
	[KD_UFFD_WP_ASYNC] = "uffd WP_ASYNC",
	[KD_UFFD_MOVE] = "uffd MOVE",
	[KD_UFFDIO_COPY] = "UFFDIO_COPY",
	[KD_PAGEMAP_SCAN] = "PAGEMAP_SCAN",
	[KD_IO_URING] = "io_uring",
	[KD_URING_POLL_MULTI] = "io_uring POLL_ADD multishot",
	[KD_URING_READ] = "io_uring READ",
	[KD_URING_WRITE] = "io_uring WRITE",
	[KD_URING_SEND] = "io_uring SEND",
	[KD_URING_RECV] = "io_uring RECV",
	[KD_URING_SEND_ZC] = "io_uring SEND_ZC",
	[KD_URING_PROVIDE_BUFFERS] = "io_uring PROVIDE_BUFFERS",
	[KD_URING_RECV_MULTI] = "io_uring RECV multishot",
	[KD_URING_FIXED_BUFFERS] = "io_uring registered buffers",
	[KD_CLONE3_SET_TID] = "clone3 set_tid",
	[KD_PTRACE_SEIZE] = "ptrace seize",
	[KD_PTRACE_RSEQ] = "PTRACE_GET_RSEQ_CONFIGURATION",
	[KD_PROCESS_VM_READV] = "process_vm_readv",
	[KD_VMSPLICE] = "vmsplice",
	[KD_PIDFD_OPEN] = "pidfd_open",
	[KD_PIDFD_GETFD] = "pidfd_getfd",
	[KD_PRCTL_MM_MAP] = "PR_SET_MM_MAP",
	[KD_VDSO_LAYOUT] = "vdso/vvar layout",
	[KD_NETNS] = "network namespaces",
	[KD_PIPE_MAX_SIZE] = "pipe max size",
	[KD_XSTATE_SIZE] = "NT_X86_XSTATE size",
};

const char *kerndat_feature_name(enum kerndat_feature f)
{
	if ((unsigned int)f >= KD__NR || !feature_names[f])
		return "?";
	return feature_names[f];
}

void kd_set(struct kerndat *kd, enum kerndat_feature f, bool ok, const char *fmt, ...)
{
	struct kerndat_status *st;
	va_list ap;

	if ((unsigned int)f >= KD__NR)
		return;
	st = &kd->st[f];
	st->probed = true;
	st->ok = ok;
	va_start(ap, fmt);
	vsnprintf(st->text, sizeof(st->text), fmt, ap);
	va_end(ap);
	pr_debug("kerndat: %s: %s%s%s\n", kerndat_feature_name(f), ok ? "ok" : "missing",
		 st->text[0] ? ": " : "", st->text);
}

void kd_set_same(struct kerndat *kd, enum kerndat_feature f, enum kerndat_feature cause)
{
	kd_set(kd, f, false, "%s is missing", kerndat_feature_name(cause));
}

int kd_read_u64(const char *path, uint64_t *ret)
{
	_cleanup_free_ char *buf = NULL;
	size_t len;
	int r;

	r = util_read_file(AT_FDCWD, path, &buf, &len);
	if (r)
		return r;
	if (len && buf[len - 1] == '\n')
		buf[len - 1] = '\0';
	return util_parse_u64(buf, 0, UINT64_MAX, ret);
}

int kd_waitpid_timeout(int pid, int *ret_status, int flags, unsigned int timeout_ms)
{
	uint64_t deadline = util_now_us() + (uint64_t)timeout_ms * 1000;
	useconds_t nap = 50;
	int status, r;

	for (;;) {
		r = waitpid(pid, &status, flags | WNOHANG);
		if (r == pid) {
			if (ret_status)
				*ret_status = status;
			return 0;
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (util_now_us() >= deadline)
			return -ETIMEDOUT;
		usleep(nap);
		if (nap < 5000)
			nap *= 2;
	}
}

void kd_kill_reap(int pid)
{
	int r;

	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	r = kd_waitpid_timeout(pid, NULL, __WALL, 1000);
	if (r)
		pr_warn("kerndat: cannot reap child %d: %s\n", pid, strerror(-r));
}

/* In a probe child: die with the parent, and on our own after timeout_s. */
static void child_arm(unsigned int timeout_s)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	signal(SIGALRM, SIG_DFL);
	alarm(timeout_s);
}

int kd_spawn_sleeper(int *ret_pid)
{
	pid_t pid;

	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		child_arm(10);
		for (;;)
			pause();
	}
	*ret_pid = pid;
	return 0;
}

int kd_run_child(int (*fn)(void *arg), void *arg, unsigned int timeout_s)
{
	int status, r;
	pid_t pid;

	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		child_arm(timeout_s);
		_exit(fn(arg) & 0xff);
	}
	r = kd_waitpid_timeout(pid, &status, 0, timeout_s * 1000 + 1000);
	if (r) {
		kd_kill_reap(pid);
		return r;
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
		return -ETIMEDOUT;
	/* killed by anything else: a crash in the probe child */
	return -EFAULT;
}

int kerndat_probe(struct kerndat *kd)
{
	unsigned int i, missing = 0;

	memset(kd, 0, sizeof(*kd));
	/* children write nothing, but flush so a fork cannot duplicate buffers */
	fflush(stdout);
	fflush(stderr);

	kd_probe_uffd(kd);
	kd_probe_uring(kd);
	kd_probe_task(kd);
	kd_probe_mm(kd);

	for (i = 0; i < KD__NR; i++) {
		if (!kd->st[i].probed)
			kd_set(kd, i, false, "not probed (internal error)");
		if (!kd->st[i].ok)
			missing++;
	}
	return missing ? -ENOTSUP : 0;
}
