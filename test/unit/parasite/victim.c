/*
 * Victim for the parasite tests: installs signal handlers, an altstack,
 * itimers, a reader thread blocked in read(), a pattern-filled anonymous
 * region and xmm/ymm register values, then counts in a loop. After the test
 * let it go, SIGUSR1 checks its state and SIGUSR2 checks that it kept
 * running and writes PASS/FAIL to the result file, then exits.
 * Modes: plain; nofd (no free file descriptor left); churn (a thread keeps
 * creating short-lived threads).
 *   usage: parasite-victim RESULT READY_FD MIB plain|nofd|churn
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <ucontext.h>
#include <unistd.h>

#include "victim.h"

static struct victim_report rep;
static volatile uint64_t counter;
static volatile uint64_t c1;
static volatile int usr1_count;
static volatile int reader_done, reader_ok;
static volatile pid_t reader_tid;
static char reader_why[128];
static char fail[256];
static int result_fd = -1, reader_pipe[2];
static int have_avx;

static const uint64_t xmm_vals[8][4] = {
	{ 0x1111111111111111, 0x2222222222222222, 0xa1a1a1a1a1a1a1a1, 0xb1b1b1b1b1b1b1b1 },
	{ 0x3333333333333333, 0x4444444444444444, 0xa2a2a2a2a2a2a2a2, 0xb2b2b2b2b2b2b2b2 },
	{ 0x5555555555555555, 0x6666666666666666, 0xa3a3a3a3a3a3a3a3, 0xb3b3b3b3b3b3b3b3 },
	{ 0x7777777777777777, 0x8888888888888888, 0xa4a4a4a4a4a4a4a4, 0xb4b4b4b4b4b4b4b4 },
	{ 0x9999999999999999, 0xaaaaaaaaaaaaaaaa, 0xa5a5a5a5a5a5a5a5, 0xb5b5b5b5b5b5b5b5 },
	{ 0xbbbbbbbbbbbbbbbb, 0xcccccccccccccccc, 0xa6a6a6a6a6a6a6a6, 0xb6b6b6b6b6b6b6b6 },
	{ 0xdddddddddddddddd, 0xeeeeeeeeeeeeeeee, 0xa7a7a7a7a7a7a7a7, 0xb7b7b7b7b7b7b7b7 },
	{ 0x0f0f0f0f0f0f0f0f, 0xf0f0f0f0f0f0f0f0, 0xa8a8a8a8a8a8a8a8, 0xb8b8b8b8b8b8b8b8 },
};

static void set_fail(const char *what)
{
	if (!fail[0])
		snprintf(fail, sizeof(fail), "%s", what);
}

/* The interrupted context's xmm8-15 (and ymm upper halves) must hold our values. */
static void check_regs(const ucontext_t *uc)
{
	const uint8_t *fp = (const uint8_t *)uc->uc_mcontext.fpregs;

	if (!fp) {
		set_fail("no fpregs in the signal frame");
		return;
	}
	for (int i = 0; i < 8; i++) {
		/* fxsave layout: xmm registers at 160, 16 bytes each. */
		if (memcmp(fp + 160 + 16 * (8 + i), xmm_vals[i], 16))
			set_fail("xmm register changed");
		/* xsave standard layout: YMM_Hi128 at 576. */
		if (have_avx && memcmp(fp + 576 + 16 * (8 + i), &xmm_vals[i][2], 16))
			set_fail("ymm upper half changed");
	}
}

static void check_state(void)
{
	struct victim_ksigaction k;
	struct itimerval it;
	stack_t ss;

	for (int sig = 1; sig <= 64; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		if (syscall(SYS_rt_sigaction, sig, NULL, &k, 8) ||
		    memcmp(&k, &rep.act[sig - 1], sizeof(k)))
			set_fail("a sigaction changed");
	}
	if (sigaltstack(NULL, &ss) || (uint64_t)ss.ss_sp != rep.altstack_sp ||
	    ss.ss_size != rep.altstack_size)
		set_fail("sigaltstack changed");
	if (getitimer(ITIMER_REAL, &it) ||
	    (uint64_t)it.it_interval.tv_sec * 1000000 + it.it_interval.tv_usec !=
		    VICTIM_ITIMER_REAL_INTERVAL_US)
		set_fail("ITIMER_REAL changed");
}

static void on_usr1(int sig, siginfo_t *si, void *ctx)
{
	ucontext_t *uc = ctx;
	char here;

	usr1_count++;
	if ((uint64_t)&here < rep.altstack_sp || (uint64_t)&here >= rep.altstack_sp + rep.altstack_size)
		set_fail("SIGUSR1 handler not on the altstack");
	if (*(uint64_t *)&uc->uc_sigmask != 0)
		set_fail("main thread's signal mask changed");
	check_regs(uc);
	check_state();
	c1 = counter;
}

static void on_usr2(int sig, siginfo_t *si, void *ctx)
{
	const uint64_t *w = (const uint64_t *)rep.region;
	char out[512];
	int n;

	check_regs(ctx);
	check_state();
	if (!usr1_count || counter <= c1)
		set_fail("the counter did not advance after SIGUSR1");
	for (uint64_t i = 0; i < rep.region_len / 8; i++)
		if (w[i] != victim_pattern(i)) {
			set_fail("memory pattern changed");
			break;
		}
	if (write(reader_pipe[1], "x", 1) != 1)
		set_fail("cannot wake the reader");
	for (long spin = 0; !reader_done && spin < 2000; spin++)
		usleep(1000);
	if (!reader_done)
		set_fail("the reader thread did not return from read()");
	else if (!reader_ok)
		set_fail(reader_why);
	if (fail[0])
		n = snprintf(out, sizeof(out), "FAIL: %s\n", fail);
	else
		n = snprintf(out, sizeof(out), "PASS usr1=%d\n", usr1_count);
	if (write(result_fd, out, (size_t)n) != n)
		_exit(3);
	_exit(0);
}

static void on_other(int sig)
{
}

static void *reader(void *arg)
{
	sigset_t all, now;
	char c = 0;
	ssize_t n;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, NULL);
	reader_tid = (pid_t)syscall(SYS_gettid);
	n = read(reader_pipe[0], &c, 1);
	pthread_sigmask(SIG_SETMASK, NULL, &now);
	if (n != 1 || c != 'x')
		snprintf(reader_why, sizeof(reader_why), "reader: read returned %zd (%s)", n,
			 n < 0 ? strerror(errno) : "short");
	else if (!sigismember(&now, SIGUSR1) || !sigismember(&now, SIGRTMAX))
		snprintf(reader_why, sizeof(reader_why), "reader: signal mask changed");
	else
		reader_ok = 1;
	reader_done = 1;
	return NULL;
}

static void *churn_worker(void *arg)
{
	return arg;
}

/* Threads come and go all the time: freezing must still converge. */
static void *churner(void *arg)
{
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, NULL);
	for (;;) {
		pthread_t t;

		if (pthread_create(&t, NULL, churn_worker, NULL) == 0)
			pthread_join(t, NULL);
	}
	return NULL;
}

static int install(int sig, void (*fn)(int, siginfo_t *, void *), void (*plain)(int), int flags,
		   int blocked, int blocked2)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	if (fn)
		sa.sa_sigaction = fn;
	else
		sa.sa_handler = plain;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	if (blocked)
		sigaddset(&sa.sa_mask, blocked);
	if (blocked2)
		sigaddset(&sa.sa_mask, blocked2);
	return sigaction(sig, &sa, NULL);
}

static int setup_signals(void)
{
	struct itimerval it;
	stack_t ss;

	ss.ss_size = VICTIM_ALTSTACK_SIZE;
	ss.ss_flags = 0;
	ss.ss_sp = mmap(NULL, ss.ss_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ss.ss_sp == MAP_FAILED || sigaltstack(&ss, NULL))
		return -1;
	rep.altstack_sp = (uint64_t)ss.ss_sp;
	rep.altstack_size = ss.ss_size;
	/* Handlers enter with a cleared FPU state: the checking handlers must only
	 * interrupt the main loop, so SIGHUP's (the test's signal storm) blocks them. */
	if (install(SIGUSR1, on_usr1, NULL, SA_SIGINFO | SA_RESTART | SA_ONSTACK, SIGUSR2, 0) ||
	    install(SIGUSR2, on_usr2, NULL, SA_SIGINFO | SA_ONSTACK, SIGTERM, 0) ||
	    install(SIGHUP, NULL, on_other, SA_RESTART | SA_NODEFER, SIGUSR1, SIGUSR2) ||
	    install(SIGRTMIN + 3, NULL, on_other, SA_RESETHAND, SIGINT, 0) ||
	    install(SIGPIPE, NULL, SIG_IGN, 0, 0, 0))
		return -1;
	rep.handler_usr1 = (uint64_t)on_usr1;
	it.it_interval.tv_sec = VICTIM_ITIMER_REAL_INTERVAL_US / 1000000;
	it.it_interval.tv_usec = VICTIM_ITIMER_REAL_INTERVAL_US % 1000000;
	it.it_value.tv_sec = VICTIM_ITIMER_REAL_VALUE_US / 1000000;
	it.it_value.tv_usec = 0;
	if (setitimer(ITIMER_REAL, &it, NULL))
		return -1;
	it.it_interval.tv_sec = VICTIM_ITIMER_VIRT_INTERVAL_US / 1000000;
	it.it_interval.tv_usec = VICTIM_ITIMER_VIRT_INTERVAL_US % 1000000;
	it.it_value.tv_sec = VICTIM_ITIMER_VIRT_VALUE_US / 1000000;
	if (setitimer(ITIMER_VIRTUAL, &it, NULL))
		return -1;
	it.it_interval.tv_sec = VICTIM_ITIMER_PROF_INTERVAL_US / 1000000;
	it.it_interval.tv_usec = VICTIM_ITIMER_PROF_INTERVAL_US % 1000000;
	it.it_value.tv_sec = VICTIM_ITIMER_PROF_VALUE_US / 1000000;
	return setitimer(ITIMER_PROF, &it, NULL);
}

/* Load the values and count forever; only the signal handlers leave. */
static void __attribute__((noreturn)) spin(void)
{
	if (have_avx)
		__asm__ volatile("vmovdqu 0(%0), %%ymm8\n\tvmovdqu 32(%0), %%ymm9\n\t"
				 "vmovdqu 64(%0), %%ymm10\n\tvmovdqu 96(%0), %%ymm11\n\t"
				 "vmovdqu 128(%0), %%ymm12\n\tvmovdqu 160(%0), %%ymm13\n\t"
				 "vmovdqu 192(%0), %%ymm14\n\tvmovdqu 224(%0), %%ymm15\n\t"
				 :
				 : "r"(xmm_vals)
				 : "memory");
	else
		__asm__ volatile("movdqu 0(%0), %%xmm8\n\tmovdqu 32(%0), %%xmm9\n\t"
				 "movdqu 64(%0), %%xmm10\n\tmovdqu 96(%0), %%xmm11\n\t"
				 "movdqu 128(%0), %%xmm12\n\tmovdqu 160(%0), %%xmm13\n\t"
				 "movdqu 192(%0), %%xmm14\n\tmovdqu 224(%0), %%xmm15\n\t"
				 :
				 : "r"(xmm_vals)
				 : "memory");
	__asm__ volatile("1: incq %0\n\tjmp 1b\n" : "+m"(counter));
	__builtin_unreachable();
}

int main(int argc, char **argv)
{
	uint64_t *w;
	pthread_t th;
	int ready;

	if (argc != 5)
		return 2;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		return 2;
	have_avx = __builtin_cpu_supports("avx");
	ready = atoi(argv[2]);
	result_fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	rep.magic = VICTIM_MAGIC;
	rep.region_len = strtoull(argv[3], NULL, 10) << 20;
	w = mmap(NULL, rep.region_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (result_fd < 0 || w == MAP_FAILED || pipe2(reader_pipe, O_CLOEXEC) || setup_signals())
		return 4;
	rep.region = (uint64_t)w;
	for (uint64_t i = 0; i < rep.region_len / 8; i++)
		w[i] = victim_pattern(i);
	if (pthread_create(&th, NULL, reader, NULL))
		return 5;
	while (!reader_tid)
		usleep(100);
	rep.reader_tid = reader_tid;
	if (!strcmp(argv[4], "churn") && pthread_create(&th, NULL, churner, NULL))
		return 5;
	rep.counter_addr = (uint64_t)&counter;
	for (int sig = 1; sig <= 64; sig++)
		if (sig != SIGKILL && sig != SIGSTOP &&
		    syscall(SYS_rt_sigaction, sig, NULL, &rep.act[sig - 1], 8))
			return 6;
	if (!strcmp(argv[4], "nofd")) {
		/* No free descriptor below the limit: the parasite's socketpair must fail. */
		int lowest = dup(result_fd);
		struct rlimit rl;

		if (lowest < 0 || close(lowest) || getrlimit(RLIMIT_NOFILE, &rl))
			return 7;
		rl.rlim_cur = (rlim_t)lowest;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			return 7;
	}
	if (write(ready, &rep, sizeof(rep)) != sizeof(rep))
		return 8;
	close(ready);
	spin();
}
