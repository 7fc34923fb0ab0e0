/*
 * The page-server wire protocol between the source (relive dump
 * --lazy-pages) and the destination daemon (relive lazy-pages). Pure
 * encoding, decoding and validation: no I/O, no logging, so both sides and
 * the fuzzers share one codec. docs/protocol.md describes the exchange.
 *
 * All integers are little-endian. A connection starts with a hello from the
 * client and a hello reply from the server; then the client sends requests
 * (ps_hdr) and the server answers each GET with a PAGES reply: the header,
 * nr_pages raw pages, and an 8-byte XXH3-64 checksum of those pages.
 */
#ifndef RELIVE_COMMON_PS_PROTO_H
#define RELIVE_COMMON_PS_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PS_MAGIC 0x53504c52U /* "RLPS" */
#define PS_VERSION 1U
#define PS_TOKEN_LEN 32U
#define PS_PAGE_SIZE 4096U
/* Largest run one request may name: 4 MiB. */
#define PS_MAX_RUN_PAGES 1024U
/* Highest user address on x86-64 (exclusive). */
#define PS_TASK_SIZE 0x00007ffffffff000ULL

enum ps_channel {
	PS_CHAN_FAULT = 0, /* urgent: one fault at a time, never behind bulk data */
	PS_CHAN_STREAM = 1, /* background stream of everything else */
};

enum ps_cmd {
	PS_GET = 1, /* client: send me nr_pages at vaddr of pid */
	PS_PAGES = 2, /* server: here they are (header, pages, checksum) */
	PS_DONE = 3, /* client: every page is in; the server may exit */
	PS_BYE = 4, /* server: acknowledged DONE, closing */
};

/* Header flags */
#define PS_F_URGENT (1U << 0) /* a request for a faulting page */
#define PS_F_ALL (PS_F_URGENT)

struct ps_hello {
	uint32_t magic;
	uint32_t version;
	uint32_t channel;
	uint32_t reserved;
	uint8_t token[PS_TOKEN_LEN];
};

struct ps_hello_reply {
	uint32_t magic;
	uint32_t version;
	int32_t status; /* 0, or -errno: -EACCES bad token, -EPROTO bad hello */
	uint32_t reserved;
};

struct ps_hdr {
	uint32_t cmd;
	uint32_t flags;
	uint32_t pid;
	uint32_t nr_pages;
	uint64_t vaddr;
};

#define PS_HELLO_SIZE 48U
#define PS_HELLO_REPLY_SIZE 16U
#define PS_HDR_SIZE 24U
#define PS_CSUM_SIZE 8U

_Static_assert(sizeof(struct ps_hello) == PS_HELLO_SIZE, "hello size");
_Static_assert(sizeof(struct ps_hello_reply) == PS_HELLO_REPLY_SIZE, "hello reply size");
_Static_assert(sizeof(struct ps_hdr) == PS_HDR_SIZE, "header size");

void ps_hello_encode(const struct ps_hello *h, uint8_t out[PS_HELLO_SIZE]);
/* 0, or -EPROTO (bad magic/channel) / -EPROTONOSUPPORT (version); why gets a static reason. */
int ps_hello_decode(const uint8_t in[PS_HELLO_SIZE], struct ps_hello *ret, const char **why);
/* Constant-time comparison of the presented token with the session's. */
bool ps_token_equal(const uint8_t a[PS_TOKEN_LEN], const uint8_t b[PS_TOKEN_LEN]);

void ps_hello_reply_encode(const struct ps_hello_reply *h, uint8_t out[PS_HELLO_REPLY_SIZE]);
int ps_hello_reply_decode(const uint8_t in[PS_HELLO_REPLY_SIZE], struct ps_hello_reply *ret,
			  const char **why);

void ps_hdr_encode(const struct ps_hdr *h, uint8_t out[PS_HDR_SIZE]);
/*
 * Decode and validate a header as received by one side. A client receives
 * only PAGES and BYE; a server only GET and DONE. GET/PAGES need 1..
 * PS_MAX_RUN_PAGES pages, a page-aligned vaddr and a run below PS_TASK_SIZE;
 * DONE/BYE carry no run. Unknown flags are refused. Returns 0 or -EPROTO.
 */
int ps_hdr_decode(const uint8_t in[PS_HDR_SIZE], bool at_server, struct ps_hdr *ret,
		  const char **why);

/* Checksum of a run of pages as carried after a PAGES reply. */
uint64_t ps_csum(const void *pages, size_t len);

/*
 * The same checksum computed piece by piece, as a reply is read or received:
 * ps_csum_new() (NULL without memory), _reset before each run, _update with
 * its pages in order, _digest for the value; ps_csum_free(NULL) is fine.
 */
struct ps_csum;
struct ps_csum *ps_csum_new(void);
void ps_csum_free(struct ps_csum *cs);
void ps_csum_reset(struct ps_csum *cs);
void ps_csum_update(struct ps_csum *cs, const void *data, size_t len);
uint64_t ps_csum_digest(const struct ps_csum *cs);

#endif
