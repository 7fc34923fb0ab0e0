/*
 * The parasite blob: entry stub and command loop. relive starts it with
 * rdi = its end of a SOCK_SEQPACKET socketpair and rsi = the args area; it
 * answers requests (parasite-abi.h) until FINI or until the socket fails,
 * then returns to the stub, which stops on int3 so relive regains control.
 * Everything it does is read-only for the victim's state.
 */
#include "logic.h"
#include "sys.h"

#define EBADF_ 9
#define EPROTO_ 71

/* Freestanding: the compiler may still emit calls to these. */
void *memset(void *s, int c, unsigned long n)
{
	unsigned char *p = s;

	while (n--)
		*p++ = (unsigned char)c;
	return s;
}

void *memcpy(void *d, const void *s, unsigned long n)
{
	unsigned char *dp = d;
	const unsigned char *sp = s;

	while (n--)
		*dp++ = *sp++;
	return d;
}

__attribute__((visibility("hidden"))) void parasite_main(long sock, uint64_t args);

__asm__(".section .head.text, \"ax\", @progbits\n"
	".globl __export_start\n"
	"__export_start:\n"
	"	andq $-16, %rsp\n"
	"	call parasite_main\n"
	".globl __export_trap\n"
	"__export_trap:\n"
	"	int3\n"
	"	hlt\n"
	".previous\n");

static long send_reply(int sock, const void *buf, unsigned long len)
{
	struct blob_iovec iov = { (uint64_t)buf, len };
	struct blob_msghdr msg = { 0 };

	msg.iov = (uint64_t)&iov;
	msg.iovlen = 1;
	return sys_sendmsg(sock, &msg, BLOB_MSG_NOSIGNAL);
}

static long do_sigactions(int sock)
{
	struct psite_reply_sigactions r;
	int32_t ret = 0;
	int sig;

	memset(&r, 0, sizeof(r));
	for (sig = 1; sig <= PSITE_NSIG && !ret; sig++) {
		if (sig == 9 || sig == 19) /* SIGKILL, SIGSTOP */
			continue;
		ret = (int32_t)sys_rt_sigaction(sig, 0, &r.act[sig - 1], 8);
	}
	psite_reply_init(&r.hdr, PSITE_CMD_GET_SIGACTIONS, ret, 0);
	return send_reply(sock, &r, sizeof(r));
}

static long do_misc(int sock)
{
	struct psite_reply_misc r;
	int32_t ret;
	int i;

	memset(&r, 0, sizeof(r));
	ret = (int32_t)sys_sigaltstack(0, &r.altstack);
	for (i = 0; i < 3 && !ret; i++)
		ret = (int32_t)sys_getitimer(i, &r.itimer[i]);
	if (!ret)
		ret = (int32_t)sys_call3(__NR_prctl, 40 /* PR_GET_TID_ADDRESS */, &r.clear_tid, 0);
	r.tid = (int32_t)sys_gettid();
	r.pid = (int32_t)sys_getpid();
	psite_reply_init(&r.hdr, PSITE_CMD_GET_MISC, ret, 0);
	return send_reply(sock, &r, sizeof(r));
}

/* vmsplice every run, in pieces of at most pipe_size bytes; returns bytes or -errno. */
static long drain_runs(int pipe_fd, const struct psite_iov *runs, uint32_t nr, uint64_t pipe_size,
		       uint64_t *done)
{
	struct psite_drain_cursor cur = { 0, 0 };
	struct psite_iov piece[256];

	for (;;) {
		uint64_t bytes;
		uint32_t n = psite_drain_next(runs, nr, &cur, pipe_size, piece, 256, &bytes);
		long ret;

		if (!n)
			return 0;
		ret = sys_vmsplice(pipe_fd, (const struct blob_iovec *)piece, n, 0);
		if (ret < 0)
			return ret;
		if (ret == 0)
			return -EPROTO_;
		psite_drain_advance(runs, nr, &cur, (uint64_t)ret);
		*done += (uint64_t)ret;
	}
}

static long do_drain(int sock, const struct psite_req *req, int pipe_fd, uint64_t args)
{
	struct psite_reply_hdr r;
	uint64_t done = 0;
	long ret = -EBADF_;

	if (pipe_fd >= 0)
		ret = drain_runs(pipe_fd, (const struct psite_iov *)args, req->nr_iov, req->pipe_size,
				 &done);
	psite_reply_init(&r, PSITE_CMD_DRAIN, (int32_t)ret, done);
	return send_reply(sock, &r, sizeof(r));
}

/*
 * KEEPER: clone a process that shares this address space (CLONE_VM only: not
 * a thread, no exit signal) so that the memory outlives the victim for the
 * page server. The child runs nothing but the code below: its own session,
 * cwd "/", a name, no descriptors (close_range on its copy of the table),
 * then pause() forever with every signal blocked (the parasite's mask,
 * inherited). It never returns to user code while the blob is there or not;
 * it touches no stack. relive SIGKILLs it when the pages are served.
 */
_Static_assert(__NR_clone == 56 && __NR_setsid == 112 && __NR_chdir == 80 &&
	       __NR_prctl == 157 && __NR_close_range == 436 && __NR_pause == 34,
	       "x86-64 syscall numbers of the keeper");
__attribute__((visibility("hidden"))) long keeper_clone(unsigned long flags);
__asm__(".text\n"
	".type keeper_clone, @function\n"
	"keeper_clone:\n"
	"	xorl %esi, %esi\n" /* newsp 0: the child keeps rsp and pushes nothing */
	"	xorl %edx, %edx\n"
	"	xorl %r10d, %r10d\n"
	"	xorl %r8d, %r8d\n"
	"	movl $56, %eax\n"
	"	syscall\n"
	"	testq %rax, %rax\n"
	"	jz 1f\n"
	"	ret\n"
	"1:	movl $112, %eax\n"
	"	syscall\n"
	"	leaq keeper_root(%rip), %rdi\n"
	"	movl $80, %eax\n"
	"	syscall\n"
	"	movl $15, %edi\n" /* PR_SET_NAME */
	"	leaq keeper_name(%rip), %rsi\n"
	"	movl $157, %eax\n"
	"	syscall\n"
	"	xorl %edi, %edi\n"
	"	movl $-1, %esi\n"
	"	xorl %edx, %edx\n"
	"	movl $436, %eax\n"
	"	syscall\n"
	"2:	movl $34, %eax\n"
	"	syscall\n"
	"	jmp 2b\n"
	".size keeper_clone, .-keeper_clone\n"
	".section .rodata\n"
	"keeper_root: .asciz \"/\"\n"
	"keeper_name: .asciz \"relive-keeper\"\n"
	".previous\n");

static long do_keeper(int sock)
{
	struct psite_reply_hdr r;
	long pid = keeper_clone(0x100); /* CLONE_VM, exit signal 0 */

	psite_reply_init(&r, PSITE_CMD_KEEPER, pid < 0 ? (int32_t)pid : 0,
			 pid > 0 ? (uint64_t)pid : 0);
	return send_reply(sock, &r, sizeof(r));
}

/* Receive one request; a passed fd lands in *fd (else -1). Returns bytes or -errno. */
static long recv_req(int sock, struct psite_req *req, int *fd)
{
	struct blob_iovec iov = { (uint64_t)req, sizeof(*req) };
	struct blob_cmsg_fd cmsg;
	struct blob_msghdr msg = { 0 };
	long ret;

	memset(&cmsg, 0, sizeof(cmsg));
	msg.iov = (uint64_t)&iov;
	msg.iovlen = 1;
	msg.control = (uint64_t)&cmsg;
	msg.controllen = sizeof(cmsg);
	*fd = -1;
	ret = sys_recvmsg(sock, &msg, BLOB_MSG_CMSG_CLOEXEC);
	if (ret >= 0 && msg.controllen >= BLOB_CMSG_FD_LEN && cmsg.level == BLOB_SOL_SOCKET &&
	    cmsg.type == BLOB_SCM_RIGHTS)
		*fd = cmsg.fd;
	return ret;
}

void parasite_main(long sock, uint64_t args)
{
	for (;;) {
		struct psite_req req;
		struct psite_reply_hdr r;
		int fd, cmd;
		long ret = recv_req((int)sock, &req, &fd);

		if (ret <= 0)
			break;
		cmd = psite_req_check(&req, ret);
		if (cmd == PSITE_CMD_GET_SIGACTIONS) {
			ret = do_sigactions((int)sock);
		} else if (cmd == PSITE_CMD_GET_MISC) {
			ret = do_misc((int)sock);
		} else if (cmd == PSITE_CMD_DRAIN) {
			ret = do_drain((int)sock, &req, fd, args);
		} else if (cmd == PSITE_CMD_KEEPER) {
			ret = do_keeper((int)sock);
		} else {
			psite_reply_init(&r, (uint16_t)(cmd > 0 ? cmd : 0), cmd == PSITE_CMD_FINI ? 0 : cmd, 0);
			ret = send_reply((int)sock, &r, sizeof(r));
		}
		if (fd >= 0)
			sys_close(fd);
		if (ret < 0 || cmd == PSITE_CMD_FINI)
			break;
	}
}
