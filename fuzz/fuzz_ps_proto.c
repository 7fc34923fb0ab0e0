/*
 * Fuzz target for the page-server codec (common/ps-proto.c), both sides.
 * Every input is decoded as a hello, a hello reply, and a header received by
 * a server and by a client. Besides not crashing, the codec must keep its
 * contract: whatever a decoder accepts is in range (no run of zero pages or
 * more than PS_MAX_RUN_PAGES, no unaligned address, nothing at or above
 * PS_TASK_SIZE, only the commands that side may receive) and survives a
 * round trip: encode(x) gives back the very bytes, and decode(encode(x)) == x.
 * The input is also read as structs to encode, to test the encoders on
 * values the decoders never produce. A broken property aborts.
 */
#include "ps-proto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BUF_SIZE 64U

__attribute__((noreturn, format(printf, 1, 2))) static void broken(const char *fmt, ...);

static void broken(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("ps-proto property broken: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

static void check_why(int r, const char *why, const char *what)
{
	if (r == 0)
		return;
	if (r != -EPROTO && r != -EPROTONOSUPPORT)
		broken("%s: decoder returned %d", what, r);
	if (!why || !why[0])
		broken("%s: refused (%d) without a reason", what, r);
}

static void hello(const uint8_t in[PS_HELLO_SIZE])
{
	uint8_t out[PS_HELLO_SIZE];
	struct ps_hello h, h2;
	const char *why = NULL;
	int r;

	r = ps_hello_decode(in, &h, &why);
	check_why(r, why, "hello");
	if (r)
		return;
	if (h.magic != PS_MAGIC || h.version != PS_VERSION ||
	    (h.channel != PS_CHAN_FAULT && h.channel != PS_CHAN_STREAM) || h.reserved)
		broken("hello accepted with magic %#x version %u channel %u reserved %u", h.magic,
		       h.version, h.channel, h.reserved);
	ps_hello_encode(&h, out);
	if (memcmp(out, in, PS_HELLO_SIZE))
		broken("hello: encode(decode(b)) != b");
	if (ps_hello_decode(out, &h2, &why) || memcmp(&h, &h2, sizeof(h)))
		broken("hello: decode(encode(x)) != x");
	if (!ps_token_equal(h.token, in + 16))
		broken("hello: token not carried");
}

static void hello_reply(const uint8_t in[PS_HELLO_REPLY_SIZE])
{
	uint8_t out[PS_HELLO_REPLY_SIZE];
	struct ps_hello_reply h, h2;
	const char *why = NULL;
	int r;

	r = ps_hello_reply_decode(in, &h, &why);
	check_why(r, why, "hello reply");
	if (r)
		return;
	if (h.magic != PS_MAGIC || h.version != PS_VERSION || h.status > 0 ||
	    h.status < -4095 || h.reserved)
		broken("hello reply accepted with magic %#x version %u status %d reserved %u",
		       h.magic, h.version, h.status, h.reserved);
	ps_hello_reply_encode(&h, out);
	if (memcmp(out, in, PS_HELLO_REPLY_SIZE))
		broken("hello reply: encode(decode(b)) != b");
	if (ps_hello_reply_decode(out, &h2, &why) || memcmp(&h, &h2, sizeof(h)))
		broken("hello reply: decode(encode(x)) != x");
}

/* What a header accepted by one side must look like. */
static void check_hdr(const struct ps_hdr *h, bool at_server)
{
	uint32_t run_cmd = at_server ? PS_GET : PS_PAGES;
	uint32_t end_cmd = at_server ? PS_DONE : PS_BYE;

	if (h->flags & ~PS_F_ALL)
		broken("header accepted with flags %#x", h->flags);
	if (h->cmd == run_cmd) {
		if (h->nr_pages == 0 || h->nr_pages > PS_MAX_RUN_PAGES)
			broken("run of %u pages accepted", h->nr_pages);
		if (h->vaddr % PS_PAGE_SIZE)
			broken("unaligned run at %#llx accepted", (unsigned long long)h->vaddr);
		/* In 128 bits: no wrap can hide an overflow here. */
		if ((unsigned __int128)h->vaddr + (unsigned __int128)h->nr_pages * PS_PAGE_SIZE >
		    PS_TASK_SIZE)
			broken("run %#llx + %u pages beyond PS_TASK_SIZE accepted",
			       (unsigned long long)h->vaddr, h->nr_pages);
		if (h->pid == 0 || h->pid > (1U << 22))
			broken("run for pid %u accepted", h->pid);
	} else if (h->cmd == end_cmd) {
		if (h->flags || h->pid || h->nr_pages || h->vaddr)
			broken("command %u with a run accepted", h->cmd);
	} else {
		broken("command %u accepted %s", h->cmd, at_server ? "by a server" : "by a client");
	}
}

static void hdr(const uint8_t in[PS_HDR_SIZE], bool at_server)
{
	uint8_t out[PS_HDR_SIZE];
	struct ps_hdr h, h2;
	const char *why = NULL;
	int r;

	r = ps_hdr_decode(in, at_server, &h, &why);
	check_why(r, why, at_server ? "header at server" : "header at client");
	if (r)
		return;
	check_hdr(&h, at_server);
	ps_hdr_encode(&h, out);
	if (memcmp(out, in, PS_HDR_SIZE))
		broken("header: encode(decode(b)) != b");
	if (ps_hdr_decode(out, at_server, &h2, &why) || memcmp(&h, &h2, sizeof(h)))
		broken("header: decode(encode(x)) != x");
	/* The other side never accepts what this side does. */
	if (!ps_hdr_decode(in, !at_server, &h2, &why))
		broken("command %u accepted by both sides", h.cmd);
}

/* Structs taken from raw bytes, encoded: what the decoder accepts must be the same values. */
static void encode_side(const uint8_t *buf)
{
	uint8_t out[PS_HELLO_SIZE];
	struct ps_hello h, hd;
	struct ps_hello_reply rp, rd;
	struct ps_hdr x, xd;
	const char *why;

	memcpy(&h, buf, sizeof(h));
	ps_hello_encode(&h, out);
	if (!ps_hello_decode(out, &hd, &why) &&
	    (hd.magic != h.magic || hd.version != h.version || hd.channel != h.channel ||
	     memcmp(hd.token, h.token, PS_TOKEN_LEN)))
		broken("hello: decode(encode(struct)) changed a field");
	memcpy(&rp, buf, sizeof(rp));
	ps_hello_reply_encode(&rp, out);
	if (!ps_hello_reply_decode(out, &rd, &why) &&
	    (rd.magic != rp.magic || rd.version != rp.version || rd.status != rp.status))
		broken("hello reply: decode(encode(struct)) changed a field");
	memcpy(&x, buf, sizeof(x));
	for (int side = 0; side < 2; side++) {
		ps_hdr_encode(&x, out);
		if (!ps_hdr_decode(out, side, &xd, &why) && memcmp(&x, &xd, sizeof(x)))
			broken("header: decode(encode(struct)) changed a field");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t buf[BUF_SIZE] = { 0 };
	uint8_t a[PS_TOKEN_LEN], b[PS_TOKEN_LEN];

	/* Short inputs are zero-padded: the decoders always see whole messages. */
	memcpy(buf, data, size < BUF_SIZE ? size : BUF_SIZE);
	hello(buf);
	hello_reply(buf);
	hdr(buf, true);
	hdr(buf, false);
	encode_side(buf);
	memcpy(a, buf, PS_TOKEN_LEN);
	memcpy(b, buf + PS_TOKEN_LEN, PS_TOKEN_LEN);
	if (ps_token_equal(a, b) != !memcmp(a, b, PS_TOKEN_LEN) || !ps_token_equal(a, a))
		broken("token comparison disagrees with memcmp");
	return 0;
}
