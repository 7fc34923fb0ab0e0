/*
 * victim-treefds: open file descriptions shared by the processes of a tree
 * (protocol: victim.c). Before forking, the root opens WORKDIR/shared.log
 * (one description: one offset for everybody) and two pipes: P carries
 * tokens from the root to the children, Q answers back. The root keeps P's
 * write end and Q's read end; its child B and B's child C (a grandchild)
 * keep P's read end and Q's write end, inherited: each end is one
 * description in two processes, and each pipe connects processes that hold
 * only one end. At setup the root appends its record to the log and leaves
 * B's token T1 in flight in P.
 *
 * The check (root, after SIGUSR2): the log offset is where the root's record
 * left it; the root writes a fresh token into P and sends SIGUSR1 to B; B
 * reads T1, appends its record, answers on Q and sends SIGUSR1 to C, which
 * reads the fresh token, appends its record and answers. The root wants
 * both answers on Q in order (had each process its own copy of P, C would
 * read T1 again; had Q been split, no answer would come), its own offset
 * moved by the two children's records (shared offset), and both records
 * intact in the file (had each process its own offset, they would overwrite
 * each other). A process waits at most 10 s for a token: a pipe that no
 * longer connects is a FAIL, not a hang.
 */
#include "victim.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REC 32 /* one record of the log, fixed size */
#define TOKEN_WAIT_MS 10000

enum { ROOT, B, C };
static const char *const names[] = { "root", "B", "C" };

static int logfd = -1, p_rd = -1, p_wr = -1, q_rd = -1, q_wr = -1;
static uint64_t key; /* drawn before the forks: every process knows it */
static uint64_t t1; /* B's token, left in flight in P across the dump */
static int me = ROOT;
static pid_t pid_b, pid_c;
static volatile sig_atomic_t go;
static volatile uint64_t child_counter;

static void on_usr1(int sig)
{
	(void)sig;
	go = 1;
}

static uint64_t answer_of(int who, uint64_t token)
{
	return token ^ key ^ (uint64_t)who;
}

/* Read one 8-byte token from FD, waiting at most TOKEN_WAIT_MS. */
static int read_token(int fd, uint64_t *ret, char *err, size_t len)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	ssize_t n;
	int r;

	do
		r = poll(&pfd, 1, TOKEN_WAIT_MS);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return victim_fail(err, len, "no token came through the pipe in %d ms",
				   TOKEN_WAIT_MS);
	if (r < 0)
		return victim_fail(err, len, "poll: %s", strerror(errno));
	do
		n = read(fd, ret, sizeof(*ret));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(*ret))
		return victim_fail(err, len, "read of a token: %zd (%s)", n,
				   n < 0 ? strerror(errno) : "short or end of file");
	return 0;
}

static int write_full(int fd, const void *buf, size_t n, const char *what, char *err,
		      size_t len)
{
	ssize_t w = write(fd, buf, n);

	if (w != (ssize_t)n)
		return victim_fail(err, len, "write to %s: %zd (%s)", what, w,
				   w < 0 ? strerror(errno) : "short");
	return 0;
}

/* Append this process's record for TOKEN at the shared offset. */
static int append_record(uint64_t token, char *err, size_t len)
{
	char rec[REC + 1];

	snprintf(rec, sizeof(rec), "%-4s %016" PRIx64 " %9d\n", names[me], token, (int)getpid());
	return write_full(logfd, rec, REC, "the shared log", err, len);
}

/* A child's turn: a token from P, a record, an answer on Q. */
static int child_turn(uint64_t *ret_token, char *err, size_t len)
{
	uint64_t tok, ans;

	if (read_token(p_rd, &tok, err, len) || append_record(tok, err, len))
		return -1;
	ans = answer_of(me, tok);
	if (ret_token)
		*ret_token = tok;
	return write_full(q_wr, &ans, sizeof(ans), "Q", err, len);
}

static __attribute__((noreturn)) void child_main(pid_t parent)
{
	char err[256] = "";
	int st, code = 0;

	/* Counts until the check comes; a child whose parent is gone (a failed test) exits. */
	while (!go) {
		if (getppid() != parent)
			_exit(2);
		child_counter++;
		nanosleep(&(struct timespec){ .tv_nsec = 2 * 1000 * 1000 }, NULL);
	}
	if (child_turn(NULL, err, sizeof(err)))
		code = 1;
	if (me == B) {
		/* C's turn after B's: the order of the tokens in P and of the answers in Q. */
		if (kill(pid_c, SIGUSR1)) {
			snprintf(err, sizeof(err), "kill C (pid %d): %s", (int)pid_c,
				 strerror(errno));
			code = 1;
		} else if (waitpid(pid_c, &st, 0) != pid_c || !WIFEXITED(st) || WEXITSTATUS(st)) {
			if (!code)
				snprintf(err, sizeof(err), "C (pid %d) failed its check", (int)pid_c);
			code = 1;
		}
	}
	if (code && err[0])
		fprintf(stderr, "victim-treefds %s (pid %d): %s\n", names[me], (int)getpid(), err);
	_exit(code);
}

/* Fork child WHO; in the child, close the root's ends and (B) fork C. */
static pid_t start_child(int who, char *err, size_t len)
{
	pid_t parent = getpid(), pid;

	pid = fork();
	if (pid < 0)
		return victim_fail(err, len, "fork %s: %s", names[who], strerror(errno));
	if (pid)
		return pid;
	me = who;
	if (who == B) {
		close(p_wr);
		close(q_rd);
		pid_c = start_child(C, err, len);
		if (pid_c < 0) {
			fprintf(stderr, "victim-treefds B: %s\n", err);
			_exit(1);
		}
	}
	child_main(parent);
}

static int treefds_setup(struct victim_ctx *ctx, char *err, size_t len)
{
	struct sigaction sa = { .sa_handler = on_usr1 };
	char path[4096];
	int p[2], q[2];

	snprintf(path, sizeof(path), "%s/shared.log", ctx->workdir);
	logfd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (logfd < 0)
		return victim_fail(err, len, "open %s: %s", path, strerror(errno));
	if (pipe(p) || pipe(q))
		return victim_fail(err, len, "pipe: %s", strerror(errno));
	p_rd = p[0], p_wr = p[1], q_rd = q[0], q_wr = q[1];
	if (getrandom(&key, sizeof(key), 0) != (ssize_t)sizeof(key))
		key = 0x7ee5fd5ULL << 20 ^ (uint64_t)getpid();
	if (sigaction(SIGUSR1, &sa, NULL))
		return victim_fail(err, len, "sigaction SIGUSR1: %s", strerror(errno));
	/* A pipe without its reader is a FAIL with a reason (EPIPE), not a silent death. */
	signal(SIGPIPE, SIG_IGN);
	pid_b = start_child(B, err, len);
	if (pid_b < 0)
		return -1;
	close(p_rd);
	close(q_wr);
	p_rd = q_wr = -1;
	/* The root's record, and B's token left in flight in P across the dump. */
	t1 = key + B;
	if (append_record(key, err, len) || write_full(p_wr, &t1, sizeof(t1), "P", err, len))
		return -1;
	return 0;
}

/* The next answer on Q must be WHO's answer to TOKEN. */
static int read_answer(int who, uint64_t token, char *err, size_t len)
{
	uint64_t ans;

	if (read_token(q_rd, &ans, err, len))
		return -1;
	if (ans != answer_of(who, token))
		return victim_fail(err, len,
				   "answer 0x%016" PRIx64 " on Q, expected %s's answer to 0x%016" PRIx64,
				   ans, names[who], token);
	return 0;
}

static int check_record(off_t off, int who, uint64_t token, char *err, size_t len)
{
	char rec[REC + 1] = "", want[REC + 1];
	ssize_t n = pread(logfd, rec, REC, off);

	snprintf(want, sizeof(want), "%-4s %016" PRIx64, names[who], token);
	if (n != REC || strncmp(rec, want, strlen(want)))
		return victim_fail(err, len,
				   "record at offset %lld is \"%.21s\", expected \"%s\": the children "
				   "did not write at one shared offset",
				   (long long)off, n > 0 ? rec : "", want);
	return 0;
}

static int treefds_check(struct victim_ctx *ctx, char *err, size_t len)
{
	off_t off0, off1;
	uint64_t fresh;
	int st;

	(void)ctx;
	off0 = lseek(logfd, 0, SEEK_CUR);
	if (off0 != REC)
		return victim_fail(err, len, "log offset %lld after the restore, expected %d",
				   (long long)off0, REC);
	if (getrandom(&fresh, sizeof(fresh), 0) != (ssize_t)sizeof(fresh))
		fresh = 0xf7e5ULL << 32 ^ (uint64_t)getpid();
	fresh |= 1;
	/* For C, after t1: written now, it must reach a child through the restored pipe. */
	if (write_full(p_wr, &fresh, sizeof(fresh), "P", err, len))
		return -1;
	if (kill(pid_b, SIGUSR1))
		return victim_fail(err, len, "kill B (pid %d): %s", (int)pid_b, strerror(errno));
	if (read_answer(B, t1, err, len) || read_answer(C, fresh, err, len))
		return -1;
	while (waitpid(pid_b, &st, 0) < 0)
		if (errno != EINTR)
			return victim_fail(err, len, "waitpid B: %s", strerror(errno));
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		return victim_fail(err, len, "B (pid %d) failed its check: status 0x%x",
				   (int)pid_b, st);
	off1 = lseek(logfd, 0, SEEK_CUR);
	if (off1 != off0 + 2 * REC)
		return victim_fail(err, len,
				   "log offset %lld after the children wrote, expected %lld: the "
				   "offset is not shared",
				   (long long)off1, (long long)(off0 + 2 * REC));
	return check_record(off0, B, t1, err, len) ||
			       check_record(off0 + REC, C, fresh, err, len)
		       ? -1
		       : 0;
}

static const struct victim_part part_treefds = {
	.name = "treefds",
	.setup = treefds_setup,
	.check = treefds_check,
};

const struct victim_part *const victim_parts[] = { &part_treefds, NULL };
