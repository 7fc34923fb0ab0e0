/*
 * Talking to the running parasite: requests and replies over the control
 * socket with a watchdog on the infected thread, and the commands built on
 * them (signal actions, misc state, draining memory through a pipe).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "parasite-blob.h"
#include "psite-internal.h"
#include "util.h"

#define RPC_SLICE_MS 100
/* No progress for this long: the parasite is considered hung. */
#define RPC_TIMEOUT_MS 30000

/* The parasite's thread left the blob: crashed, or returned on its own. */
static int check_thread(struct psite_ctl *ctl)
{
	struct psite_thread *th = psite_thread_find(ctl->f, ctl->tid);
	int status, r;
	pid_t w;

	for (;;) {
		w = waitpid(ctl->tid, &status, __WALL | WNOHANG);
		if (w == 0)
			return 0;
		if (w < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			pr_perror("tid %d: waitpid while the parasite runs", (int)ctl->tid);
			return r;
		}
		r = psite_handle_status(th, status, ctl->base + PARASITE_OFF_TRAP + 1);
		if (r == 1)
			continue; /* a held signal: the blob goes on */
		ctl->running = false;
		pr_err("pid %d: the parasite stopped unexpectedly (status 0x%x)\n",
		       (int)ctl->f->pid, status);
		return -ECONNRESET;
	}
}

int psite_rpc_poll(struct psite_ctl *ctl, struct pollfd *fds, int nr)
{
	int waited = 0, n, r;

	while (waited < RPC_TIMEOUT_MS) {
		n = poll(fds, (nfds_t)nr, RPC_SLICE_MS);
		if (n < 0 && errno != EINTR) {
			r = -errno;
			pr_perror("pid %d: poll on the parasite socket", (int)ctl->f->pid);
			return r;
		}
		if (n > 0)
			return n;
		r = check_thread(ctl);
		if (r)
			return r;
		waited += RPC_SLICE_MS;
	}
	pr_err("pid %d: the parasite did not answer in %d ms\n", (int)ctl->f->pid, RPC_TIMEOUT_MS);
	return -ETIMEDOUT;
}

int psite_rpc_send(struct psite_ctl *ctl, uint16_t cmd, uint32_t nr_iov, uint64_t pipe_size,
		   int pass_fd)
{
	struct psite_req req = {
		.magic = PSITE_MAGIC,
		.version = PSITE_VERSION,
		.cmd = cmd,
		.nr_iov = nr_iov,
		.pipe_size = pipe_size,
	};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { &req, sizeof(req) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (!ctl->running)
		return -ECONNRESET;
	if (pass_fd >= 0) {
		struct cmsghdr *c;

		memset(&cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = sizeof(cbuf.buf);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
	}
	/* SEQPACKET with room for many requests: the send never blocks. */
	n = sendmsg(ctl->sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n != sizeof(req)) {
		pr_perror("pid %d: cannot send command %u to the parasite", (int)ctl->f->pid, cmd);
		return n < 0 ? -errno : -EIO;
	}
	return 0;
}

int psite_rpc_recv(struct psite_ctl *ctl, uint16_t cmd, void *buf, size_t len)
{
	struct pollfd pfd = { .fd = ctl->sock, .events = POLLIN };
	struct psite_reply_hdr *hdr = buf;
	ssize_t n;
	int r;

	r = psite_rpc_poll(ctl, &pfd, 1);
	if (r < 0)
		return r;
	n = recv(ctl->sock, buf, len, MSG_DONTWAIT | MSG_TRUNC);
	if (n < 0) {
		r = -errno;
		pr_perror("pid %d: cannot receive the parasite's reply to %u", (int)ctl->f->pid,
			  cmd);
		return r;
	}
	if (n == 0) {
		pr_err("pid %d: the parasite closed its socket\n", (int)ctl->f->pid);
		return -ECONNRESET;
	}
	if ((size_t)n < sizeof(*hdr) || hdr->magic != PSITE_MAGIC ||
	    hdr->version != PSITE_VERSION || hdr->cmd != cmd ||
	    ((size_t)n != len && !hdr->ret)) {
		pr_err("pid %d: malformed reply to command %u (%zd bytes)\n", (int)ctl->f->pid, cmd,
		       n);
		return -EPROTO;
	}
	if (hdr->ret) {
		pr_err("pid %d: parasite command %u failed: %s\n", (int)ctl->f->pid, cmd,
		       strerror(-hdr->ret));
		return hdr->ret;
	}
	return 0;
}

int psite_get_sigactions(struct psite_ctl *ctl, struct psite_sigaction out[PSITE_NSIG])
{
	struct psite_reply_sigactions rep;
	int r;

	r = psite_rpc_send(ctl, PSITE_CMD_GET_SIGACTIONS, 0, 0, -1);
	if (!r)
		r = psite_rpc_recv(ctl, PSITE_CMD_GET_SIGACTIONS, &rep, sizeof(rep));
	if (r)
		return r;
	for (int i = 0; i < PSITE_NSIG; i++) {
		out[i].handler = rep.act[i].handler;
		out[i].flags = rep.act[i].flags;
		out[i].restorer = rep.act[i].restorer;
		out[i].mask = rep.act[i].mask;
	}
	return 0;
}

static uint64_t timeval_us(int64_t sec, int64_t usec)
{
	return (uint64_t)sec * 1000000u + (uint64_t)usec;
}

int psite_get_misc(struct psite_ctl *ctl, struct psite_misc *out)
{
	struct psite_reply_misc rep;
	int r;

	r = psite_rpc_send(ctl, PSITE_CMD_GET_MISC, 0, 0, -1);
	if (!r)
		r = psite_rpc_recv(ctl, PSITE_CMD_GET_MISC, &rep, sizeof(rep));
	if (r)
		return r;
	memset(out, 0, sizeof(*out));
	out->altstack_sp = rep.altstack.sp;
	out->altstack_size = rep.altstack.size;
	out->altstack_flags = rep.altstack.flags;
	for (int i = 0; i < 3; i++) {
		out->itimers[i].interval_us =
			timeval_us(rep.itimer[i].interval_sec, rep.itimer[i].interval_usec);
		out->itimers[i].value_us =
			timeval_us(rep.itimer[i].value_sec, rep.itimer[i].value_usec);
	}
	out->tid = rep.tid;
	out->pid = rep.pid;
	out->clear_tid = rep.clear_tid;
	if (out->tid != ctl->tid)
		pr_warn("pid %d: the parasite reports tid %d, infected %d\n", (int)ctl->f->pid,
			(int)out->tid, (int)ctl->tid);
	return 0;
}
