/*
 * PIDs of the restored tree: whether a dumped PID is free (waiting, bounded,
 * for an unreaped zombie of the dumped process to go away; a live process
 * holding it is an error naming its program), and creating a process with a
 * given PID through clone3 set_tid.
 */
#include "rst.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* State letter of /proc/PID/stat: 0 when the PID does not exist. */
static char pid_state(pid_t pid, char *comm, size_t comm_len)
{
	_cleanup_free_ char *buf = NULL;
	char path[64];
	char *rp;
	size_t len;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (util_read_file(AT_FDCWD, path, &buf, &len))
		return 0;
	rp = strrchr(buf, ')');
	if (!rp || rp[1] != ' ')
		return '?';
	if (comm) {
		char *lp = strchr(buf, '(');
		size_t n = lp ? (size_t)(rp - lp - 1) : 0;

		if (n >= comm_len)
			n = comm_len - 1;
		memcpy(comm, lp ? lp + 1 : "", n);
		comm[n] = 0;
	}
	return rp[2];
}

int rst_pid_wait_free(pid_t pid, unsigned int timeout_ms)
{
	uint64_t deadline = util_now_us() + (uint64_t)timeout_ms * 1000;
	char comm[64] = "";

	for (;;) {
		char st = pid_state(pid, comm, sizeof(comm));
		char exe[4096], path[64];
		ssize_t n;

		if (!st)
			return 0;
		if (st != 'Z') {
			snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
			n = readlink(path, exe, sizeof(exe) - 1);
			if (n < 0)
				snprintf(exe, sizeof(exe), "%s", comm);
			else
				exe[n] = 0;
			pr_err("pid %d is in use by %s\n", (int)pid, exe);
			return -EBUSY;
		}
		if (util_now_us() >= deadline) {
			pr_err("pid %d is still held by an unreaped zombie (%s) after %u ms\n",
			       (int)pid, comm, timeout_ms);
			return -EBUSY;
		}
		/* The dumped process's zombie: its reaper has not got to it yet. */
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	}
}

pid_t rst_clone_with_pid(pid_t pid)
{
	uint64_t deadline = util_now_us() + RST_ZOMBIE_WAIT_MS * 1000ULL;
	pid_t tid = pid;
	struct clone_args args = {
		.exit_signal = SIGCHLD,
		.set_tid = (uint64_t)(uintptr_t)&tid,
		.set_tid_size = 1,
	};

	for (;;) {
		long r = syscall(SYS_clone3, &args, sizeof(args));
		int err = errno;

		if (r >= 0)
			return (pid_t)r;
		/*
		 * The number of a just-reaped zombie can stay allocated for a
		 * moment after /proc stopped showing it: retry, bounded, as long
		 * as no process is seen with it.
		 */
		if (err != EEXIST || pid_state(pid, NULL, 0) || util_now_us() >= deadline)
			return -err;
		nanosleep(&(struct timespec){ .tv_nsec = 5 * 1000 * 1000 }, NULL);
	}
}
