/*
 * The keeper of a lazy dump, injector side: ask the parasite to clone a
 * process that shares the victim's address space (blob/main.c, KEEPER), make
 * sure it sits in pause() with no descriptors before the blob may be
 * unmapped under it, and check with kcmp that it really shares the victim's
 * mm. Ending it: SIGKILL through its pidfd, and when the victim lives on
 * (a failed dump) a wait4 run inside the still frozen victim reaps it, so no
 * zombie is left behind in the victim's children.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "psite-internal.h"
#include "util.h"

#define KEEPER_SETTLE_MS 2000

/* The keeper is blocked in pause() (number 34 on x86-64) and holds no fd. */
static int keeper_settled(pid_t pid)
{
	char path[64], buf[128];
	_cleanup_close_ int fd = -1;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return n < 0 ? -errno : 0;
	buf[n] = '\0';
	return strncmp(buf, "34 ", 3) == 0;
}

static int keeper_fds(pid_t pid)
{
	char path[64];
	int n = 0;
	DIR *d;
	struct dirent *de;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Last value of the NSpid line of /proc/PID/status (its pid in its own namespace). */
static pid_t ns_pid(pid_t pid)
{
	char path[64], line[256];
	pid_t last = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *p = line + 6, *end;

		if (strncmp(line, "NSpid:", 6))
			continue;
		for (long v; (v = strtol(p, &end, 10)), end != p; p = end)
			last = (pid_t)v;
	}
	fclose(f);
	return last;
}

/*
 * The parasite reports the keeper's pid as the victim sees it: in a pid
 * namespace of the victim's own, find the host pid among its children.
 */
static pid_t keeper_host_pid(pid_t victim, pid_t pid)
{
	char path[320], buf[4096];
	struct dirent *de;
	pid_t found = -1;
	DIR *d;

	if (ns_pid(victim) == victim)
		return pid;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)victim);
	d = opendir(path);
	if (!d)
		return -1;
	while (found < 0 && (de = readdir(d))) {
		_cleanup_close_ int fd = -1;
		ssize_t n;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/children", (int)victim,
			 de->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
		if (n <= 0)
			continue;
		buf[n] = 0;
		for (char *p = buf, *end; found < 0; p = end) {
			long c = strtol(p, &end, 10);

			if (end == p)
				break;
			if (ns_pid((pid_t)c) == pid)
				found = (pid_t)c;
		}
	}
	closedir(d);
	return found;
}

int psite_keeper(struct psite_ctl *ctl, pid_t *ret_pid)
{
	struct psite_reply_hdr rep;
	pid_t pid, host, victim = ctl->f->pid;
	int r, i;

	r = psite_rpc_send(ctl, PSITE_CMD_KEEPER, 0, 0, -1);
	if (!r)
		r = psite_rpc_recv(ctl, PSITE_CMD_KEEPER, &rep, sizeof(rep));
	if (r) {
		pr_err("pid %d: cannot create the keeper of its memory: %s\n", (int)victim,
		       strerror(-r));
		return r;
	}
	pid = (pid_t)rep.value;
	if (pid <= 0) {
		pr_err("pid %d: the parasite reported keeper pid %d\n", (int)victim, (int)pid);
		return -EPROTO;
	}
	host = keeper_host_pid(victim, pid);
	if (host <= 0) {
		pr_err("pid %d: keeper %d (its pid in the victim's namespace) is not among its "
		       "children\n",
		       (int)victim, (int)pid);
		return -ESRCH;
	}
	pid = host;
	*ret_pid = pid;
	pr_debug("pid %d: keeper %d cloned\n", (int)victim, (int)pid);
	for (i = 0; i < KEEPER_SETTLE_MS; i++) {
		r = keeper_settled(pid);
		if (r < 0) {
			pr_err("pid %d: keeper %d: cannot read its state: %s\n", (int)victim,
			       (int)pid, strerror(-r));
			return r;
		}
		if (r)
			break;
		usleep(1000);
	}
	if (i == KEEPER_SETTLE_MS) {
		pr_err("pid %d: keeper %d did not reach pause() in %d ms\n", (int)victim, (int)pid,
		       KEEPER_SETTLE_MS);
		return -ETIMEDOUT;
	}
	pr_debug("pid %d: keeper %d in pause() after %d polls\n", (int)victim, (int)pid, i);
	r = keeper_fds(pid);
	if (r != 0) {
		pr_err("pid %d: keeper %d still holds %d descriptors\n", (int)victim, (int)pid, r);
		return r < 0 ? r : -EBADF;
	}
	r = (int)syscall(SYS_kcmp, victim, pid, KCMP_VM, 0, 0);
	if (r != 0) {
		if (r < 0)
			pr_perror("pid %d: kcmp with keeper %d", (int)victim, (int)pid);
		else
			pr_err("pid %d: keeper %d does not share its address space\n", (int)victim,
			       (int)pid);
		return r < 0 ? -errno : -EINVAL;
	}
	/* Whatever way relive ends, the kernel then kills the keeper. */
	if (ptrace(PTRACE_SEIZE, pid, NULL, (void *)(long)PTRACE_O_EXITKILL)) {
		r = -errno;
		pr_perror("pid %d: cannot seize keeper %d", (int)victim, (int)pid);
		return r;
	}
	pr_info("pid %d: keeper %d holds its memory\n", (int)victim, (int)pid);
	return 0;
}

int psite_keeper_kill(struct psite_frozen *f, pid_t pid, int pidfd)
{
	struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
	int r = 0, n;
	long ret;

	if (pid <= 0)
		return 0;
	if (pidfd < 0 && f && kill(pid, SIGKILL) && errno != ESRCH) {
		/* No pidfd: the pid is safe while its parent, the frozen victim, has not reaped it. */
		r = -errno;
		pr_perror("cannot kill keeper %d", (int)pid);
		return r;
	}
	if (pidfd >= 0) {
		if (syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) && errno != ESRCH) {
			r = -errno;
			pr_perror("cannot kill keeper %d", (int)pid);
			return r;
		}
		do
			n = poll(&pfd, 1, 5000);
		while (n < 0 && errno == EINTR);
		if (n == 0) {
			pr_err("keeper %d did not die within 5 s of SIGKILL\n", (int)pid);
			return -ETIMEDOUT;
		}
	}
	/* As its tracer, collect it first: only then can its parent reap it. */
	while (waitpid(pid, &n, __WALL) < 0 && errno == EINTR)
		;
	if (!f)
		return 0;
	/* The keeper is the frozen victim's child: reap it there. */
	r = psite_syscall(f, f->pid, &ret, __NR_wait4, pid, 0, __WALL, 0, 0, 0);
	if (!r && ret != pid) {
		pr_warn("pid %d: reaping keeper %d: %s\n", (int)f->pid, (int)pid,
			ret < 0 ? strerror((int)-ret) : "another child");
		r = ret < 0 ? (int)ret : -ECHILD;
	}
	return r;
}
