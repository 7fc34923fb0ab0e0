/*
 * The parasite's pure logic: request validation and the cutting of a list of
 * memory runs into vmsplice-sized pieces. No syscalls, no libc: this file is
 * compiled into the freestanding blob and, unchanged, into a host library so
 * that cmocka tests can exercise it.
 */
#ifndef RELIVE_PARASITE_BLOB_LOGIC_H
#define RELIVE_PARASITE_BLOB_LOGIC_H

#include "../parasite-abi.h"

/* Most iovecs one vmsplice call accepts (the kernel's UIO_MAXIOV). */
#define PSITE_VMSPLICE_MAX_IOV 1024u

/* Returns the command of a well-formed request of LEN bytes, or -EPROTO / -EINVAL. */
int psite_req_check(const struct psite_req *req, long len);

void psite_reply_init(struct psite_reply_hdr *hdr, uint16_t cmd, int32_t ret, uint64_t value);

/* Position inside a run list: run index and byte offset in that run. */
struct psite_drain_cursor {
	uint32_t idx;
	uint64_t off;
};

/*
 * Fill OUT (room for MAX_OUT entries) with the next piece of RUNS starting at
 * CUR, at most MAX_BYTES long; zero-length runs are skipped. Returns the
 * number of entries written (0 when every run is consumed) and the piece's
 * length in *RET_BYTES. CUR is not moved: call psite_drain_advance() with
 * what vmsplice really took, which may be less.
 */
uint32_t psite_drain_next(const struct psite_iov *runs, uint32_t nr,
			  const struct psite_drain_cursor *cur, uint64_t max_bytes,
			  struct psite_iov *out, uint32_t max_out, uint64_t *ret_bytes);

/* Move CUR forward by BYTES (which must not exceed what is left). */
void psite_drain_advance(const struct psite_iov *runs, uint32_t nr, struct psite_drain_cursor *cur,
			 uint64_t bytes);

/* Sum of all run lengths. */
uint64_t psite_runs_bytes(const struct psite_iov *runs, uint32_t nr);

#endif
