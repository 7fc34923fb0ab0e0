/*
 * victim-tree: a process tree (protocol: victim.c). The root (a session
 * leader, started with setsid) forks three children: A makes its own
 * process group (not a session) and forks a grandchild A1, which stays in
 * A's group; B stays in the root's group; C joins A's group (a sibling's
 * group). Every process keeps a token in private memory and counts in a
 * sleep loop. A MAP_SHARED|MAP_ANONYMOUS page created before the forks
 * holds one slot per process: each writes its token there at setup.
 *
 * The check (root, after SIGUSR2): the slots still hold the setup tokens;
 * then the root writes a fresh word into the shared page and sends SIGUSR1
 * to every child. Each child checks itself: its pid, parent, group,
 * session, private token, that it kept counting, that it sees the root's
 * fresh word (the page is one object, not copies), and answers in its own
 * slot, then exits 0 (A first collects A1's verdict the same way). The root
 * sees every answer in the shared page and every exit status 0: PASS.
 * B's cwd is WORKDIR/b (drivers remove it to make a restore fail half-way);
 * a child whose parent is gone exits. Z, the last child, exits with 7 at
 * once: a zombie until the root's check, which wants it still a zombie, in
 * the root's group, its SIGCHLD seen exactly once, its status 7.
 */
#include "victim.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { ROOT, A, B, C, A1, NR_PROCS };
static const char *const names[NR_PROCS] = { "root", "A", "B", "C", "A1" };
#define ZOMBIE_CODE 7

struct shared {
	volatile uint64_t token[NR_PROCS]; /* written by each process at setup */
	volatile uint64_t fresh; /* written by the root at the check */
	volatile uint64_t answer[NR_PROCS]; /* fresh ^ token, from each child */
	volatile pid_t pid[NR_PROCS];
};

static struct shared *sh;
static uint64_t my_token; /* private memory */
static int me;
static volatile sig_atomic_t check_now;
static volatile sig_atomic_t nr_sigchld;
static pid_t zombie;

static void on_chld(int sig)
{
	(void)sig;
	nr_sigchld++;
}
static volatile uint64_t child_counter;

static void on_usr1(int sig)
{
	(void)sig;
	check_now = 1;
}

static int wait_verdict(pid_t pid, const char *name, char *err, size_t len)
{
	int st;

	if (kill(pid, SIGUSR1))
		return victim_fail(err, len, "kill %s (pid %d): %s", name, (int)pid,
				   strerror(errno));
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR)
			return victim_fail(err, len, "waitpid %s (pid %d): %s", name, (int)pid,
					   strerror(errno));
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		return victim_fail(err, len, "%s (pid %d) failed its check: status 0x%x", name,
				   (int)pid, st);
	return 0;
}

/* A child's own check; returns its exit code (0: good). */
static int child_check(pid_t parent, pid_t pgid, pid_t sid, uint64_t counted)
{
	char err[256] = "";
	int r = 0;

	if (getpid() != sh->pid[me])
		r = victim_fail(err, sizeof(err), "pid %d, expected %d", (int)getpid(),
				(int)sh->pid[me]);
	else if (getppid() != parent)
		r = victim_fail(err, sizeof(err), "parent %d, expected %d", (int)getppid(),
				(int)parent);
	else if (getpgrp() != pgid)
		r = victim_fail(err, sizeof(err), "group %d, expected %d", (int)getpgrp(),
				(int)pgid);
	else if (getsid(0) != sid)
		r = victim_fail(err, sizeof(err), "session %d, expected %d", (int)getsid(0),
				(int)sid);
	else if (sh->token[me] != my_token)
		r = victim_fail(err, sizeof(err), "shared slot 0x%" PRIx64 ", token 0x%" PRIx64,
				sh->token[me], my_token);
	else if (child_counter <= counted)
		r = victim_fail(err, sizeof(err), "stopped counting at %" PRIu64, child_counter);
	else if (!sh->fresh)
		r = victim_fail(err, sizeof(err), "the root's fresh word is not in the shared page");
	if (me == A && !r)
		r = wait_verdict(sh->pid[A1], names[A1], err, sizeof(err));
	if (r) {
		fprintf(stderr, "victim-tree %s (pid %d): %s\n", names[me], (int)getpid(), err);
		return 1;
	}
	sh->answer[me] = sh->fresh ^ my_token;
	return 0;
}

static __attribute__((noreturn)) void child_main(pid_t parent, pid_t pgid, pid_t sid)
{
	uint64_t counted;

	/* Counts until the check comes, then checks that it went on counting. */
	while (!check_now) {
		/* The parent is gone (a failed test): nobody will ever check this one. */
		if (getppid() != parent)
			_exit(2);
		child_counter++;
		nanosleep(&(struct timespec){ .tv_nsec = 2 * 1000 * 1000 }, NULL);
	}
	counted = child_counter;
	child_counter++;
	_exit(child_check(parent, pgid, sid, counted > 0 ? counted - 1 : 0));
}

static const char *workdir;

static int start_child(int idx, pid_t leader_pgid, char *err, size_t len)
{
	pid_t parent = getpid(), sid = getsid(0);
	int sync[2];
	pid_t pid;
	char b;

	if (pipe(sync))
		return victim_fail(err, len, "pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		return victim_fail(err, len, "fork %s: %s", names[idx], strerror(errno));
	if (pid == 0) {
		pid_t pgid;

		close(sync[0]);
		me = idx;
		if (leader_pgid >= 0 && setpgid(0, leader_pgid)) {
			fprintf(stderr, "victim-tree %s: setpgid %d: %s\n", names[idx],
				(int)leader_pgid, strerror(errno));
			_exit(1);
		}
		pgid = getpgrp();
		if (getrandom(&my_token, sizeof(my_token), 0) != sizeof(my_token))
			my_token = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL;
		my_token |= 1;
		sh->token[idx] = my_token;
		sh->pid[idx] = getpid();
		/* B works in its own directory: the drivers remove it to break a restore. */
		if (idx == B) {
			char dir[4096];

			snprintf(dir, sizeof(dir), "%s/b", workdir);
			if ((mkdir(dir, 0700) && errno != EEXIST) || chdir(dir)) {
				fprintf(stderr, "victim-tree B: %s: %s\n", dir, strerror(errno));
				_exit(1);
			}
		}
		if (idx == A) {
			char e[256];

			if (start_child(A1, -1, e, sizeof(e))) {
				fprintf(stderr, "victim-tree A: %s\n", e);
				_exit(1);
			}
		}
		(void)!write(sync[1], "x", 1);
		close(sync[1]);
		child_main(parent, pgid, sid);
	}
	close(sync[1]);
	if (read(sync[0], &b, 1) != 1) {
		close(sync[0]);
		return victim_fail(err, len, "%s (pid %d) died during setup", names[idx], (int)pid);
	}
	close(sync[0]);
	return 0;
}

static int tree_setup(struct victim_ctx *ctx, char *err, size_t len)
{
	struct sigaction sa = { .sa_handler = on_usr1 };

	workdir = ctx->workdir;
	if (getsid(0) != getpid())
		return victim_fail(err, len, "the root must be a session leader (start with setsid)");
	sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return victim_fail(err, len, "mmap shared: %s", strerror(errno));
	if (sigaction(SIGUSR1, &sa, NULL))
		return victim_fail(err, len, "sigaction SIGUSR1: %s", strerror(errno));
	me = ROOT;
	my_token = 0x5eed0000u ^ (uint64_t)getpid();
	sh->token[ROOT] = my_token;
	sh->pid[ROOT] = getpid();
	if (start_child(A, 0, err, len) || start_child(B, -1, err, len))
		return -1;
	/* C joins A's group: a group of the tree whose leader is a sibling. */
	if (start_child(C, sh->pid[A], err, len))
		return -1;
	/* Z exits at once and is never reaped before the check: a zombie. */
	sa.sa_handler = on_chld;
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGCHLD, &sa, NULL))
		return victim_fail(err, len, "sigaction SIGCHLD: %s", strerror(errno));
	zombie = fork();
	if (zombie < 0)
		return victim_fail(err, len, "fork Z: %s", strerror(errno));
	if (zombie == 0)
		_exit(ZOMBIE_CODE);
	while (!nr_sigchld)
		usleep(1000);
	return 0;
}

/* Z is still a zombie of this process, its SIGCHLD seen once, its status kept. */
static int check_zombie(char *err, size_t len)
{
	char path[64], buf[512], *rp;
	FILE *f;
	int st;

	if (nr_sigchld != 1)
		return victim_fail(err, len, "%d SIGCHLD before the check, expected the zombie's only",
				   (int)nr_sigchld);
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)zombie);
	f = fopen(path, "r");
	if (!f)
		return victim_fail(err, len, "zombie %d: %s", (int)zombie, strerror(errno));
	rp = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
	fclose(f);
	if (!rp || rp[1] != ' ' || rp[2] != 'Z')
		return victim_fail(err, len, "pid %d is not a zombie: %s", (int)zombie, buf);
	if (getpgid(zombie) != getpgrp())
		return victim_fail(err, len, "zombie %d in group %d, expected %d", (int)zombie,
				   (int)getpgid(zombie), (int)getpgrp());
	if (waitpid(zombie, &st, 0) != zombie)
		return victim_fail(err, len, "waitpid zombie %d: %s", (int)zombie, strerror(errno));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != ZOMBIE_CODE)
		return victim_fail(err, len, "zombie %d: wait status 0x%x, expected exit %d",
				   (int)zombie, st, ZOMBIE_CODE);
	return 0;
}

static int tree_check(struct victim_ctx *ctx, char *err, size_t len)
{
	uint64_t fresh = 0;

	(void)ctx;
	if (sh->token[ROOT] != my_token)
		return victim_fail(err, len, "root slot 0x%" PRIx64 ", token 0x%" PRIx64,
				   sh->token[ROOT], my_token);
	if (check_zombie(err, len))
		return -1;
	if (getrandom(&fresh, sizeof(fresh), 0) != sizeof(fresh))
		fresh = 0xf00dULL << 32 | (uint64_t)getpid();
	sh->fresh = fresh | 1;
	for (int i = A; i <= C; i++)
		if (wait_verdict(sh->pid[i], names[i], err, len))
			return -1;
	for (int i = A; i < NR_PROCS; i++)
		if (sh->answer[i] != (sh->fresh ^ sh->token[i]))
			return victim_fail(err, len,
					   "%s's answer 0x%" PRIx64 " is not in the root's shared "
					   "page: the page was copied, not shared",
					   names[i], sh->answer[i]);
	return 0;
}

static const struct victim_part part_tree = {
	.name = "tree",
	.setup = tree_setup,
	.check = tree_check,
};

const struct victim_part *const victim_parts[] = { &part_tree, NULL };
