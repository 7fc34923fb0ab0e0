/*
 * The epoll part of the victims: one instance at fd 70 watching a pipe with
 * bytes in it (level-triggered, ready), an empty eventfd (not ready), a
 * second empty eventfd edge-triggered, a ready eventfd through a one-shot
 * watch that already fired (disarmed), and a nested epoll instance that
 * watches the full pipe (ready through it). The check compares the watch
 * list of fdinfo (fd, events, data) and the ready set with what they were
 * at setup, then makes each watch act: the eventfds report once written,
 * the edge only once, the one-shot only after EPOLL_CTL_MOD re-arms it.
 * With EPOLL_STALE, one more watch whose fd (72) was closed after a dup to
 * 73: a watch the dump must refuse (the file lives on, its number is gone).
 */
#include "victim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define EP_FD 70
#define D_PIPE 0x1111000000000001ULL
#define D_EV 0x2222000000000002ULL
#define D_ET 0x3333000000000003ULL
#define D_ONESHOT 0x4444000000000004ULL
#define D_NESTED 0x5555000000000005ULL
#define D_STALE 0x6666000000000006ULL
#define STALE_FD 72
#define MAX_READY 8

static int pfd[2] = { -1, -1 }, ev = -1, ev_et = -1, ev_os = -1, inner = -1;
static char watches[1024];
static uint64_t ready0[MAX_READY];
static int nr_ready0;

/* The "tfd: N events: X data: Y" part of every watch line of our fdinfo. */
static int watch_list(char *out, size_t len)
{
	char path[64], line[256], items[MAX_READY][64];
	size_t n = 0, k = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", EP_FD);
	f = fopen(path, "r");
	if (!f)
		return -1;
	out[0] = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned int tfd, events;
		unsigned long long data;

		if (sscanf(line, "tfd: %u events: %x data: %llx", &tfd, &events, &data) != 3 ||
		    k == MAX_READY)
			continue;
		snprintf(items[k++], sizeof(items[0]), "%u/%x/%llx ", tfd, events, data);
	}
	fclose(f);
	/* The kernel lists them in the order of its tree (file addresses): sort. */
	qsort(items, k, sizeof(items[0]), (int (*)(const void *, const void *))strcmp);
	for (size_t i = 0; i < k; i++)
		n += (size_t)snprintf(out + n, len > n ? len - n : 0, "%s", items[i]);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The data of every ready watch, sorted. */
static int ready_set(int epfd, uint64_t *out)
{
	struct epoll_event evs[MAX_READY];
	int n = epoll_wait(epfd, evs, MAX_READY, 0);

	for (int i = 0; i < n; i++)
		out[i] = evs[i].data.u64;
	if (n > 0)
		qsort(out, (size_t)n, sizeof(*out), cmp_u64);
	return n;
}

static int add(int epfd, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event e = { .events = events, .data.u64 = data };

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e);
}

static int epoll_setup(struct victim_ctx *ctx, char *err, size_t len)
{
	uint64_t tmp[MAX_READY];
	int ep;

	(void)ctx;
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0 || dup2(ep, EP_FD) != EP_FD)
		return victim_fail(err, len, "epoll_create1/dup2: %s", strerror(errno));
	close(ep);
	inner = epoll_create1(0);
	ev = eventfd(0, EFD_NONBLOCK);
	ev_et = eventfd(0, EFD_NONBLOCK);
	ev_os = eventfd(5, EFD_NONBLOCK);
	if (inner < 0 || ev < 0 || ev_et < 0 || ev_os < 0 || pipe(pfd) ||
	    write(pfd[1], "epoll", 5) != 5)
		return victim_fail(err, len, "epoll objects: %s", strerror(errno));
	if (add(EP_FD, pfd[0], EPOLLIN, D_PIPE) || add(EP_FD, ev, EPOLLIN, D_EV) ||
	    add(EP_FD, ev_et, EPOLLIN | EPOLLET, D_ET) ||
	    add(EP_FD, ev_os, EPOLLIN | EPOLLONESHOT, D_ONESHOT) ||
	    add(inner, pfd[0], EPOLLIN, 7) || add(EP_FD, inner, EPOLLIN, D_NESTED))
		return victim_fail(err, len, "epoll_ctl ADD: %s", strerror(errno));
#ifdef EPOLL_STALE
	ep = eventfd(0, 0);
	if (ep < 0 || dup2(ep, STALE_FD) != STALE_FD || add(EP_FD, STALE_FD, EPOLLIN, D_STALE) ||
	    dup2(STALE_FD, STALE_FD + 1) != STALE_FD + 1 || close(STALE_FD) || close(ep))
		return victim_fail(err, len, "stale epoll watch: %s", strerror(errno));
#endif
	/* The one-shot fires here and is disarmed from now on. */
	nr_ready0 = ready_set(EP_FD, tmp);
	nr_ready0 = ready_set(EP_FD, ready0);
	if (nr_ready0 != 2 || ready0[0] != D_PIPE || ready0[1] != D_NESTED)
		return victim_fail(err, len, "epoll fd %d: %d ready at setup, not pipe+nested",
				   EP_FD, nr_ready0);
	if (watch_list(watches, sizeof(watches)))
		return victim_fail(err, len, "fdinfo of epoll fd %d: %s", EP_FD, strerror(errno));
	return 0;
}

static int expect_ready(const uint64_t *want, int n, const char *when, char *err, size_t len)
{
	uint64_t got[MAX_READY];
	int k = ready_set(EP_FD, got);

	if (k != n)
		return victim_fail(err, len, "epoll fd %d %s: %d ready, expected %d (first %#llx)",
				   EP_FD, when, k, n, k > 0 ? (unsigned long long)got[0] : 0ULL);
	for (int i = 0; i < n; i++)
		if (got[i] != want[i])
			return victim_fail(err, len, "epoll fd %d %s: ready data %#llx, not %#llx",
					   EP_FD, when, (unsigned long long)got[i],
					   (unsigned long long)want[i]);
	return 0;
}

static int epoll_check(struct victim_ctx *ctx, char *err, size_t len)
{
	const uint64_t with_ev[] = { D_PIPE, D_EV, D_ET, D_NESTED };
	const uint64_t with_os[] = { D_PIPE, D_EV, D_ONESHOT, D_NESTED };
	char now[1024];
	uint64_t one = 1;
	struct epoll_event e = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = D_ONESHOT };

	(void)ctx;
	if (watch_list(now, sizeof(now)))
		return victim_fail(err, len, "fdinfo of epoll fd %d: %s", EP_FD, strerror(errno));
	if (strcmp(now, watches))
		return victim_fail(err, len, "epoll fd %d watches '%s', not '%s'", EP_FD, now,
				   watches);
	if (expect_ready(ready0, nr_ready0, "after restore", err, len))
		return -1;
	if (write(ev, &one, 8) != 8 || write(ev_et, &one, 8) != 8)
		return victim_fail(err, len, "eventfd write: %s", strerror(errno));
	if (expect_ready(with_ev, 4, "with both eventfds written", err, len))
		return -1;
	/* The edge is reported once; the level-triggered eventfd stays. */
	if (expect_ready((const uint64_t[]){ D_PIPE, D_EV, D_NESTED }, 3, "after the edge", err,
			 len))
		return -1;
	if (epoll_ctl(EP_FD, EPOLL_CTL_MOD, ev_os, &e))
		return victim_fail(err, len, "EPOLL_CTL_MOD of the one-shot: %s", strerror(errno));
	return expect_ready(with_os, 4, "with the one-shot re-armed", err, len);
}

const struct victim_part victim_part_epoll = {
	.name = "epoll",
	.setup = epoll_setup,
	.check = epoll_check,
};
