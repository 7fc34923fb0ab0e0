/*
 * Helpers shared by the parasite test drivers to run the victim (see
 * victim-run.h). Plain libc, no relive code.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "victim-run.h"

static volatile pid_t current_victim;

static void on_alarm(int sig)
{
	static const char msg[] = "FAIL: test timed out, victim killed\n";

	if (current_victim > 0)
		kill(current_victim, SIGKILL);
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(1);
	_exit(1);
}

void victim_watchdog(unsigned seconds)
{
	signal(SIGALRM, on_alarm);
	alarm(seconds);
}

int victim_start(const char *exe, const char *mode, unsigned mib, struct victim *v)
{
	char fdstr[16], mibstr[16];
	struct pollfd pfd;
	size_t got = 0;
	int p[2];

	memset(v, 0, sizeof(*v));
	snprintf(v->result, sizeof(v->result), "/tmp/relive-psite-victim-%d-%ld", (int)getpid(),
		 (long)random());
	if (pipe(p))
		return -errno;
	v->pid = fork();
	if (v->pid < 0)
		return -errno;
	if (v->pid == 0) {
		close(p[0]);
		snprintf(fdstr, sizeof(fdstr), "%d", p[1]);
		snprintf(mibstr, sizeof(mibstr), "%u", mib);
		execl(exe, exe, v->result, fdstr, mibstr, mode, (char *)NULL);
		_exit(127);
	}
	current_victim = v->pid;
	close(p[1]);
	pfd.fd = p[0];
	pfd.events = POLLIN;
	while (got < sizeof(v->rep)) {
		ssize_t n;

		if (poll(&pfd, 1, 60000) != 1)
			break;
		n = read(p[0], (char *)&v->rep + got, sizeof(v->rep) - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(p[0]);
	if (got != sizeof(v->rep) || v->rep.magic != VICTIM_MAGIC) {
		fprintf(stderr, "victim %d did not report (%zu bytes)\n", (int)v->pid, got);
		victim_kill(v);
		return -EIO;
	}
	return 0;
}

static int read_counter(struct victim *v, uint64_t *c)
{
	struct iovec l = { c, sizeof(*c) }, r = { (void *)v->rep.counter_addr, sizeof(*c) };

	return process_vm_readv(v->pid, &l, 1, &r, 1, 0) == sizeof(*c) ? 0 : -errno;
}

int victim_wait_running(struct victim *v)
{
	uint64_t c0, c;

	if (read_counter(v, &c0))
		return -EIO;
	for (int i = 0; i < 5000; i++) {
		usleep(1000);
		if (read_counter(v, &c))
			return -EIO;
		if (c > c0 + 1000)
			return 0;
	}
	fprintf(stderr, "victim %d: counter does not advance\n", (int)v->pid);
	return -ETIMEDOUT;
}

int victim_verdict(struct victim *v, char *buf, size_t len)
{
	int status, fd;
	ssize_t n;

	if (kill(v->pid, SIGUSR2))
		return -errno;
	if (waitpid(v->pid, &status, 0) != v->pid)
		return -errno;
	v->pid = 0;
	current_victim = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		snprintf(buf, len, "victim ended with status 0x%x", status);
		unlink(v->result);
		return -EIO;
	}
	fd = open(v->result, O_RDONLY);
	n = fd < 0 ? -1 : read(fd, buf, len - 1);
	if (fd >= 0)
		close(fd);
	unlink(v->result);
	if (n <= 0) {
		snprintf(buf, len, "no verdict in %s", v->result);
		return -EIO;
	}
	buf[n] = 0;
	if (n > 0 && buf[n - 1] == '\n')
		buf[n - 1] = 0;
	return 0;
}

void victim_kill(struct victim *v)
{
	if (v->pid > 0) {
		kill(v->pid, SIGKILL);
		waitpid(v->pid, NULL, 0);
	}
	if (v->result[0])
		unlink(v->result);
	v->pid = 0;
	current_victim = 0;
}

char victim_state(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return '?';
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return '?';
	buf[n] = 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : '?';
}
