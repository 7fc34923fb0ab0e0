/*
 * Live tests of the injection library against a real victim (victim.c):
 * freeze, infect, query signal state, drain memory into a file and compare,
 * cure and let the victim go; it then checks itself and reports PASS/FAIL.
 * Also: infecting a thread blocked in read(), a group-stopped victim, an
 * infection that fails half-way (no fd left in the victim), a victim whose
 * threads come and go under a storm of signals while it is frozen, and kill.
 *   usage: test-parasite-live PATH-TO-VICTIM
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "psite.h"
#include "util.h"
#include "victim-run.h"

static const char *victim_exe;
static int failures;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "FAIL %s:%d: %s: ", __func__, __LINE__, #cond);            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fprintf(stderr, "\n");                                                     \
			failures++;                                                                \
			goto out;                                                                  \
		}                                                                                  \
	} while (0)

static char *read_maps(pid_t pid)
{
	char path[64], *buf = NULL;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	if (util_read_file(AT_FDCWD, path, &buf, NULL))
		return NULL;
	return buf;
}

static int check_sigactions(struct psite_ctl *ctl, const struct victim *v)
{
	struct psite_sigaction act[PSITE_NSIG];
	int r = psite_get_sigactions(ctl, act);

	CHECK(r == 0, "psite_get_sigactions: %s", strerror(-r));
	for (int sig = 1; sig <= 64; sig++) {
		const struct victim_ksigaction *k = &v->rep.act[sig - 1];
		const struct psite_sigaction *a = &act[sig - 1];

		CHECK(a->handler == k->handler && a->flags == k->flags &&
			      a->restorer == k->restorer && a->mask == k->mask,
		      "signal %d: parasite says %llx/%llx/%llx/%llx, victim %llx/%llx/%llx/%llx",
		      sig, (unsigned long long)a->handler, (unsigned long long)a->flags,
		      (unsigned long long)a->restorer, (unsigned long long)a->mask,
		      (unsigned long long)k->handler, (unsigned long long)k->flags,
		      (unsigned long long)k->restorer, (unsigned long long)k->mask);
	}
	/* And against what the victim was told to install, not only what it read back. */
	CHECK(act[SIGUSR1 - 1].handler == v->rep.handler_usr1, "SIGUSR1 handler");
	CHECK((act[SIGUSR1 - 1].flags & (SA_SIGINFO | SA_RESTART | SA_ONSTACK)) ==
		      (SA_SIGINFO | SA_RESTART | SA_ONSTACK),
	      "SIGUSR1 flags 0x%llx", (unsigned long long)act[SIGUSR1 - 1].flags);
	CHECK(act[SIGUSR1 - 1].mask == 1ULL << (SIGUSR2 - 1), "SIGUSR1 mask");
	CHECK(act[SIGUSR2 - 1].mask == 1ULL << (SIGTERM - 1), "SIGUSR2 mask");
	CHECK(act[SIGHUP - 1].flags & SA_NODEFER, "SIGHUP flags");
	CHECK(act[SIGRTMIN + 3 - 1].flags & SA_RESETHAND, "SIGRTMIN+3 flags");
	CHECK(act[SIGPIPE - 1].handler == (uint64_t)SIG_IGN, "SIGPIPE ignored");
	CHECK(act[SIGINT - 1].handler == (uint64_t)SIG_DFL, "SIGINT default");
	CHECK(!act[SIGKILL - 1].handler && !act[SIGSTOP - 1].flags, "SIGKILL/SIGSTOP zero");
	return 0;
out:
	return -1;
}

static int check_misc(struct psite_ctl *ctl, const struct victim *v, pid_t tid)
{
	static const uint64_t interval[3] = { VICTIM_ITIMER_REAL_INTERVAL_US,
					      VICTIM_ITIMER_VIRT_INTERVAL_US,
					      VICTIM_ITIMER_PROF_INTERVAL_US };
	static const uint64_t value[3] = { VICTIM_ITIMER_REAL_VALUE_US, VICTIM_ITIMER_VIRT_VALUE_US,
					   VICTIM_ITIMER_PROF_VALUE_US };
	struct psite_misc m;
	int r = psite_get_misc(ctl, &m);

	CHECK(r == 0, "psite_get_misc: %s", strerror(-r));
	if (tid == v->pid) {
		CHECK(m.altstack_sp == v->rep.altstack_sp &&
			      m.altstack_size == v->rep.altstack_size && m.altstack_flags == 0,
		      "altstack %llx+%llu flags %d", (unsigned long long)m.altstack_sp,
		      (unsigned long long)m.altstack_size, m.altstack_flags);
	} else {
		/* New threads start without an altstack: the kernel clears it on clone. */
		CHECK(m.altstack_flags == SS_DISABLE, "reader altstack flags %d",
		      m.altstack_flags);
	}
	for (int i = 0; i < 3; i++) {
		CHECK(m.itimers[i].interval_us == interval[i], "itimer %d interval %llu", i,
		      (unsigned long long)m.itimers[i].interval_us);
		/* Counting down; the kernel may round the armed value up by a tick. */
		CHECK(m.itimers[i].value_us > 0 && m.itimers[i].value_us <= value[i] + 20000,
		      "itimer %d value %llu", i, (unsigned long long)m.itimers[i].value_us);
	}
	CHECK(m.tid == tid && m.pid == v->pid, "tid %d pid %d", (int)m.tid, (int)m.pid);
	return 0;
out:
	return -1;
}

/* Compare LEN bytes of FD from OFF with the victim's region bytes from ROFF. */
static int compare_file(int fd, uint64_t off, uint64_t roff, uint64_t len)
{
	static uint8_t buf[1 << 16];

	while (len) {
		size_t n = MIN(len, sizeof(buf));

		if (pread(fd, buf, n, (off_t)off) != (ssize_t)n)
			return -1;
		for (size_t i = 0; i < n; i++)
			if (buf[i] != victim_byte(roff + i)) {
				fprintf(stderr, "mismatch at file offset %llu\n",
					(unsigned long long)(off + i));
				return -1;
			}
		off += n;
		roff += n;
		len -= n;
	}
	return 0;
}

static int check_drain(struct psite_ctl *ctl, const struct victim *v)
{
	const uint64_t M = 1 << 20, P = 4096, base = v->rep.region;
	enum { NSINGLE = 5000 };
	char path[] = "/tmp/relive-psite-drainXXXXXX";
	struct iovec *iov = calloc(NSINGLE + 4, sizeof(*iov));
	uint64_t bytes = 0, off = 0, want = 0;
	size_t n = 0;
	int fd = mkstemp(path), r, ret = -1;

	CHECK(iov && fd >= 0, "setup");
	unlink(path);
	/* Runs: 1 MiB; 38 MiB (larger than any pipe); 5000 single pages (more than one
	 * batch); an unaligned tail. */
	iov[n++] = (struct iovec){ (void *)base, M };
	iov[n++] = (struct iovec){ (void *)(base + 2 * M), 38 * M };
	for (int i = 0; i < NSINGLE; i++)
		iov[n++] = (struct iovec){ (void *)(base + 41 * M + i * P), P };
	iov[n++] = (struct iovec){ (void *)(base + 62 * M + 100), 1000 };
	for (size_t i = 0; i < n; i++)
		want += iov[i].iov_len;
	r = psite_drain(ctl, iov, n, fd, &bytes);
	CHECK(r == 0 && bytes == want, "drain: %s, %llu of %llu bytes", strerror(-r),
	      (unsigned long long)bytes, (unsigned long long)want);
	CHECK((uint64_t)lseek(fd, 0, SEEK_CUR) == want, "file position");
	for (size_t i = 0; i < n; i++) {
		CHECK(compare_file(fd, off, (uint64_t)iov[i].iov_base - base, iov[i].iov_len) == 0,
		      "content of run %zu", i);
		off += iov[i].iov_len;
	}

	/* A run the victim does not have: the parasite fails, survives, the pipe stays clean. */
	iov[0] = (struct iovec){ (void *)base, 3 * P };
	iov[1] = (struct iovec){ (void *)0x1000, P };
	r = psite_drain(ctl, iov, 2, fd, &bytes);
	CHECK(r == -EFAULT && bytes == 3 * P, "bad drain: %d, %llu bytes", r,
	      (unsigned long long)bytes);
	CHECK(compare_file(fd, want, 0, 3 * P) == 0, "content before the bad run");
	iov[0] = (struct iovec){ (void *)(base + 7 * P), 2 * P };
	r = psite_drain(ctl, iov, 1, fd, &bytes);
	CHECK(r == 0 && bytes == 2 * P, "drain after failure: %d", r);
	CHECK(compare_file(fd, want + 3 * P, 7 * P, 2 * P) == 0, "content after failure");
	ret = 0;
out:
	free(iov);
	if (fd >= 0)
		close(fd);
	return ret;
}

/* Let the victim go and collect its verdict; USR1 is sent unless one is held. */
static int release(struct victim *v, struct psite_frozen *f, bool send_usr1)
{
	char verdict[512];
	int r;

	r = psite_unfreeze(f, false);
	CHECK(r == 0, "unfreeze: %s", strerror(-r));
	if (send_usr1)
		kill(v->pid, SIGUSR1);
	usleep(100000);
	r = victim_verdict(v, verdict, sizeof(verdict));
	CHECK(r == 0 && !strcmp(verdict, "PASS usr1=1"), "victim says: %s", verdict);
	return 0;
out:
	return -1;
}

static void test_leader(void)
{
	struct psite_frozen *f = NULL;
	struct psite_ctl *ctl = NULL;
	_cleanup_free_ char *maps0 = NULL, *maps1 = NULL;
	struct victim v;
	const pid_t *tids;
	size_t nr;
	int r;

	CHECK(victim_start(victim_exe, "plain", 64, &v) == 0, "victim");
	CHECK(victim_wait_running(&v) == 0, "victim runs");
	r = psite_freeze(v.pid, &f);
	CHECK(r == 0, "freeze: %s", strerror(-r));
	tids = psite_frozen_tids(f, &nr);
	CHECK(nr == 2 && (tids[0] == v.pid || tids[1] == v.pid), "%zu threads", nr);
	CHECK(!psite_frozen_group_stopped(f), "not group-stopped");
	/* Arrives while frozen: must be held and delivered exactly once after detach. */
	syscall(SYS_tgkill, v.pid, v.pid, SIGUSR1);
	maps0 = read_maps(v.pid);
	r = psite_infect(f, v.pid, &ctl);
	CHECK(r == 0, "infect: %s", strerror(-r));
	CHECK(check_sigactions(ctl, &v) == 0, "sigactions");
	CHECK(check_misc(ctl, &v, v.pid) == 0, "misc");
	CHECK(check_drain(ctl, &v) == 0, "drain");
	r = psite_cure(ctl);
	ctl = NULL;
	CHECK(r == 0, "cure: %s", strerror(-r));
	maps1 = read_maps(v.pid);
	CHECK(maps0 && maps1 && !strcmp(maps0, maps1), "maps differ after cure:\n%s\n---\n%s",
	      maps0, maps1);
	r = release(&v, f, false);
	f = NULL;
	CHECK(r == 0, "victim verdict");
	printf("ok leader\n");
out:
	psite_cure(ctl);
	if (f)
		psite_unfreeze(f, false);
	victim_kill(&v);
}

static void test_reader(void)
{
	struct psite_frozen *f = NULL;
	struct psite_ctl *ctl = NULL;
	struct victim v;
	int r;

	CHECK(victim_start(victim_exe, "plain", 64, &v) == 0, "victim");
	CHECK(victim_wait_running(&v) == 0, "victim runs");
	r = psite_freeze(v.pid, &f);
	CHECK(r == 0, "freeze: %s", strerror(-r));
	/* The reader sits in read(): cure must let that read restart untouched. */
	r = psite_infect(f, v.rep.reader_tid, &ctl);
	CHECK(r == 0, "infect: %s", strerror(-r));
	CHECK(check_sigactions(ctl, &v) == 0, "sigactions");
	CHECK(check_misc(ctl, &v, v.rep.reader_tid) == 0, "misc");
	r = psite_cure(ctl);
	ctl = NULL;
	CHECK(r == 0, "cure: %s", strerror(-r));
	r = release(&v, f, true);
	f = NULL;
	CHECK(r == 0, "victim verdict");
	printf("ok reader\n");
out:
	psite_cure(ctl);
	if (f)
		psite_unfreeze(f, false);
	victim_kill(&v);
}

static void test_stopped(void)
{
	struct psite_frozen *f = NULL;
	struct psite_ctl *ctl = NULL;
	struct victim v;
	struct psite_misc m;
	int r;

	CHECK(victim_start(victim_exe, "plain", 4, &v) == 0, "victim");
	CHECK(victim_wait_running(&v) == 0, "victim runs");
	kill(v.pid, SIGSTOP);
	for (int i = 0; i < 1000 && victim_state(v.pid) != 'T'; i++)
		usleep(1000);
	CHECK(victim_state(v.pid) == 'T', "victim stopped");
	r = psite_freeze(v.pid, &f);
	CHECK(r == 0, "freeze: %s", strerror(-r));
	CHECK(psite_frozen_group_stopped(f), "group-stop seen");
	r = psite_infect(f, v.pid, &ctl);
	CHECK(r == 0, "infect: %s", strerror(-r));
	r = psite_get_misc(ctl, &m);
	CHECK(r == 0 && m.tid == v.pid, "misc: %s", strerror(-r));
	r = psite_cure(ctl);
	ctl = NULL;
	CHECK(r == 0, "cure: %s", strerror(-r));
	r = psite_unfreeze(f, false);
	f = NULL;
	CHECK(r == 0, "unfreeze: %s", strerror(-r));
	usleep(100000);
	CHECK(victim_state(v.pid) == 'T', "still stopped after detach (state %c)",
	      victim_state(v.pid));
	kill(v.pid, SIGCONT);
	kill(v.pid, SIGUSR1);
	usleep(100000);
	{
		char verdict[512];

		r = victim_verdict(&v, verdict, sizeof(verdict));
		CHECK(r == 0 && !strcmp(verdict, "PASS usr1=1"), "victim says: %s", verdict);
	}
	printf("ok stopped\n");
out:
	psite_cure(ctl);
	if (f)
		psite_unfreeze(f, false);
	victim_kill(&v);
}

static void test_failed_infection(void)
{
	struct psite_frozen *f = NULL;
	struct psite_ctl *ctl = NULL;
	_cleanup_free_ char *maps0 = NULL, *maps1 = NULL;
	struct victim v;
	int r;

	CHECK(victim_start(victim_exe, "nofd", 4, &v) == 0, "victim");
	CHECK(victim_wait_running(&v) == 0, "victim runs");
	r = psite_freeze(v.pid, &f);
	CHECK(r == 0, "freeze: %s", strerror(-r));
	maps0 = read_maps(v.pid);
	r = psite_infect(f, v.pid, &ctl);
	CHECK(r == -EMFILE && !ctl, "infect without free fds: %d", r);
	maps1 = read_maps(v.pid);
	CHECK(maps0 && maps1 && !strcmp(maps0, maps1), "maps differ after failed infection");
	r = release(&v, f, true);
	f = NULL;
	CHECK(r == 0, "victim verdict");
	printf("ok failed-infection\n");
out:
	if (f)
		psite_unfreeze(f, false);
	victim_kill(&v);
}

/* Every task of PID is one of the frozen ones (or already dead). */
static int all_tasks_frozen(pid_t pid, const pid_t *tids, size_t nr)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	int ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return -1;
	while ((de = readdir(d))) {
		pid_t tid = (pid_t)atoi(de->d_name);
		bool found = false;
		char st;

		if (tid <= 0)
			continue;
		for (size_t i = 0; i < nr; i++)
			found |= tids[i] == tid;
		st = victim_state(tid);
		if (!found && st != 'Z' && st != 'X' && st != '?') {
			fprintf(stderr, "task %d (state %c) is not frozen\n", (int)tid, st);
			ret = -1;
		}
		if (found && victim_state(tid) != 't') {
			fprintf(stderr, "frozen task %d is in state %c\n", (int)tid, st);
			ret = -1;
		}
	}
	closedir(d);
	return ret;
}

static void test_churn(void)
{
	struct psite_frozen *f = NULL;
	struct psite_ctl *ctl = NULL;
	struct psite_misc m;
	struct victim v;
	pid_t storm = -1;
	const pid_t *tids;
	size_t nr;
	int r;

	CHECK(victim_start(victim_exe, "churn", 4, &v) == 0, "victim");
	CHECK(victim_wait_running(&v) == 0, "victim runs");
	storm = fork();
	CHECK(storm >= 0, "fork");
	if (storm == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			kill(v.pid, SIGHUP);
	}
	usleep(20000);
	for (int round = 0; round < 5; round++) {
		r = psite_freeze(v.pid, &f);
		CHECK(r == 0, "freeze: %s", strerror(-r));
		tids = psite_frozen_tids(f, &nr);
		CHECK(nr >= 3, "%zu threads", nr);
		CHECK(all_tasks_frozen(v.pid, tids, nr) == 0, "round %d: task list", round);
		if (round < 4) {
			r = psite_unfreeze(f, false);
			f = NULL;
			CHECK(r == 0, "unfreeze: %s", strerror(-r));
			usleep(5000);
		}
	}
	kill(storm, SIGKILL);
	waitpid(storm, NULL, 0);
	storm = -1;
	r = psite_infect(f, v.pid, &ctl);
	CHECK(r == 0, "infect: %s", strerror(-r));
	r = psite_get_misc(ctl, &m);
	CHECK(r == 0 && m.tid == v.pid, "misc: %s", strerror(-r));
	r = psite_cure(ctl);
	ctl = NULL;
	CHECK(r == 0, "cure: %s", strerror(-r));
	r = release(&v, f, true);
	f = NULL;
	CHECK(r == 0, "victim verdict");
	printf("ok churn\n");
out:
	if (storm > 0) {
		kill(storm, SIGKILL);
		waitpid(storm, NULL, 0);
	}
	psite_cure(ctl);
	if (f)
		psite_unfreeze(f, false);
	victim_kill(&v);
}

static void test_kill(void)
{
	struct psite_frozen *f = NULL;
	struct victim v;
	int r, status;

	CHECK(victim_start(victim_exe, "plain", 4, &v) == 0, "victim");
	r = psite_freeze(v.pid, &f);
	CHECK(r == 0, "freeze: %s", strerror(-r));
	r = psite_unfreeze(f, true);
	f = NULL;
	CHECK(r == 0, "unfreeze(kill): %s", strerror(-r));
	CHECK(waitpid(v.pid, &status, 0) == v.pid, "wait: %s", strerror(errno));
	v.pid = 0;
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "status 0x%x", status);
	printf("ok kill\n");
out:
	if (f)
		psite_unfreeze(f, false);
	victim_kill(&v);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s PATH-TO-VICTIM\n", argv[0]);
		return 2;
	}
	victim_exe = argv[1];
	log_init();
	log_set_level(getenv("PSITE_TEST_DEBUG") ? LOG_DEBUG : LOG_WARN);
	victim_watchdog(55);
	test_leader();
	test_reader();
	test_stopped();
	test_failed_infection();
	test_churn();
	test_kill();
	if (failures)
		fprintf(stderr, "%d failure(s)\n", failures);
	return failures ? 1 : 0;
}
