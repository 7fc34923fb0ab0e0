/*
 * Pure parasite logic shared by the blob and the host unit tests: request
 * checks and drain chunking. See logic.h. No syscalls and no libc calls here.
 */
#include "logic.h"

#define EINVAL_ 22
#define EPROTO_ 71

int psite_req_check(const struct psite_req *req, long len)
{
	if (len != (long)sizeof(*req))
		return -EPROTO_;
	if (req->magic != PSITE_MAGIC || req->version != PSITE_VERSION)
		return -EPROTO_;
	if (req->cmd == 0 || req->cmd >= PSITE_CMD_MAX)
		return -EINVAL_;
	if (req->cmd == PSITE_CMD_DRAIN) {
		if (req->nr_iov > PSITE_MAX_IOV)
			return -EINVAL_;
		if (req->pipe_size < 4096)
			return -EINVAL_;
	}
	return req->cmd;
}

void psite_reply_init(struct psite_reply_hdr *hdr, uint16_t cmd, int32_t ret, uint64_t value)
{
	hdr->magic = PSITE_MAGIC;
	hdr->version = PSITE_VERSION;
	hdr->cmd = cmd;
	hdr->ret = ret;
	hdr->pad = 0;
	hdr->value = value;
}

uint32_t psite_drain_next(const struct psite_iov *runs, uint32_t nr,
			  const struct psite_drain_cursor *cur, uint64_t max_bytes,
			  struct psite_iov *out, uint32_t max_out, uint64_t *ret_bytes)
{
	uint64_t bytes = 0, off = cur->off;
	uint32_t n = 0, i;

	for (i = cur->idx; i < nr && n < max_out && bytes < max_bytes; i++, off = 0) {
		uint64_t len;

		if (off >= runs[i].len)
			continue;
		len = runs[i].len - off;
		if (len > max_bytes - bytes)
			len = max_bytes - bytes;
		out[n].base = runs[i].base + off;
		out[n].len = len;
		n++;
		bytes += len;
	}
	*ret_bytes = bytes;
	return n;
}

void psite_drain_advance(const struct psite_iov *runs, uint32_t nr, struct psite_drain_cursor *cur,
			 uint64_t bytes)
{
	while (cur->idx < nr) {
		uint64_t left = runs[cur->idx].len - cur->off;

		if (runs[cur->idx].len > cur->off && bytes < left) {
			cur->off += bytes;
			return;
		}
		if (runs[cur->idx].len > cur->off)
			bytes -= left;
		cur->idx++;
		cur->off = 0;
	}
}

uint64_t psite_runs_bytes(const struct psite_iov *runs, uint32_t nr)
{
	uint64_t sum = 0;
	uint32_t i;

	for (i = 0; i < nr; i++)
		sum += runs[i].len;
	return sum;
}
