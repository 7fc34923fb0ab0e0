/*
 * The network lock (see netlock.h): nftables scripts fed to `nft -f -`.
 * The table hooks input and output at the raw priority, before conntrack,
 * and drops the packets of each locked connection whichever way they go (on
 * loopback a packet crosses both hooks). Removal adds the table first, so
 * deleting a table that is already gone is not an error.
 */
#include "netlock.h"

#include "log.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

void netlock_table_name(int root_pid, char *ret, size_t len)
{
	snprintf(ret, len, NETLOCK_TABLE_PREFIX "%d", root_pid);
}

static void child_exec(int in, int out)
{
	if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
		_exit(126);
	execlp("nft", "nft", "-f", "-", (char *)NULL);
	dprintf(2, "cannot run nft (package nftables): %s\n", strerror(errno));
	_exit(127);
}

/* Run SCRIPT through nft; its messages are logged when it fails. */
static int run_nft(const char *what, const char *script)
{
	int in[2], out[2], st, r = 0;
	char msg[2048];
	size_t got = 0;
	ssize_t n;
	pid_t pid;

	if (pipe2(in, O_CLOEXEC))
		return -errno;
	if (pipe2(out, O_CLOEXEC)) {
		r = -errno;
		close(in[0]);
		close(in[1]);
		return r;
	}
	pid = fork();
	if (pid == 0)
		child_exec(in[0], out[1]);
	close(in[0]);
	close(out[1]);
	if (pid < 0) {
		r = -errno;
		pr_perror("%s: cannot fork for nft", what);
		close(in[1]);
		close(out[0]);
		return r;
	}
	/* A script is a few hundred bytes: it fits in the pipe, no deadlock. */
	if (util_write_full(in[1], script, strlen(script)))
		r = -EIO;
	close(in[1]);
	while (got < sizeof(msg) - 1 && (n = read(out[0], msg + got, sizeof(msg) - 1 - got)) > 0)
		got += (size_t)n;
	msg[got] = 0;
	close(out[0]);
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR) {
			pr_perror("%s: waitpid of nft %d", what, (int)pid);
			return -ECHILD;
		}
	}
	if (!r && (!WIFEXITED(st) || WEXITSTATUS(st))) {
		pr_err("%s: nft failed (status 0x%x): %s\n", what, st, msg);
		r = -EIO;
	}
	return r;
}

static int match(const struct netlock_conn *c, bool reverse, char *ret, size_t len)
{
	char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
	const char *ip = c->family == AF_INET6 ? "ip6" : "ip";

	if (!inet_ntop(c->family, c->src, a, sizeof(a)) ||
	    !inet_ntop(c->family, c->dst, b, sizeof(b)))
		return -EINVAL;
	if (reverse)
		snprintf(ret, len, "%s saddr %s tcp sport %u %s daddr %s tcp dport %u", ip, b,
			 c->dport, ip, a, c->sport);
	else
		snprintf(ret, len, "%s saddr %s tcp sport %u %s daddr %s tcp dport %u", ip, a,
			 c->sport, ip, b, c->dport);
	return 0;
}

int netlock_add(const char *table, const struct netlock_conn *c)
{
	char fwd[256], rev[256], script[2048], what[NETLOCK_TABLE_MAX + 32];

	snprintf(what, sizeof(what), "network lock %s", table);
	if (match(c, false, fwd, sizeof(fwd)) || match(c, true, rev, sizeof(rev))) {
		pr_err("%s: bad address of family %d\n", what, c->family);
		return -EINVAL;
	}
	snprintf(script, sizeof(script),
		 "add table inet %1$s\n"
		 "add chain inet %1$s in { type filter hook input priority -300; policy accept; }\n"
		 "add chain inet %1$s out { type filter hook output priority -300; policy accept; }\n"
		 "add rule inet %1$s in %2$s drop\n"
		 "add rule inet %1$s in %3$s drop\n"
		 "add rule inet %1$s out %2$s drop\n"
		 "add rule inet %1$s out %3$s drop\n",
		 table, fwd, rev);
	pr_debug("%s: %s\n", what, fwd);
	return run_nft(what, script);
}

int netlock_remove(const char *table)
{
	char script[256], what[NETLOCK_TABLE_MAX + 32];

	snprintf(what, sizeof(what), "network unlock %s", table);
	snprintf(script, sizeof(script), "add table inet %1$s\ndelete table inet %1$s\n", table);
	pr_debug("%s\n", what);
	return run_nft(what, script);
}
