/*
 * Credentials of a restored task. Before anything is created, libcap tells
 * whether relive holds every capability the task had (permitted, inheritable
 * and bounding sets can only shrink); then the dumped ids, groups and
 * capability sets are put into the blob's args, where raw syscalls apply
 * them last (after everything that needs privilege).
 */
#include "rst.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>

static int cap_missing(uint64_t want, cap_t cur, cap_flag_t set, const char *set_name,
		       uint32_t pid)
{
	int max = cap_max_bits();
	char names[1024] = "";
	size_t off = 0;

	for (int c = 0; c < max && c < 64; c++) {
		cap_flag_value_t v = CAP_CLEAR;

		if (!(want & (1ULL << c)))
			continue;
		if (cap_get_flag(cur, (cap_value_t)c, set, &v) == 0 && v == CAP_SET)
			continue;
		char *name = cap_to_name((cap_value_t)c);

		off += (size_t)snprintf(names + off, off < sizeof(names) ? sizeof(names) - off : 0,
					"%s%s", off ? "," : "", name ? name : "?");
		cap_free(name);
	}
	if (!names[0])
		return 0;
	pr_err("pid %u: cannot restore %s capabilities %s: relive does not hold them\n", pid,
	       set_name, names);
	return -EPERM;
}

int rst_creds_check(const struct rst_task *t)
{
	const CredsEntry *c = t->task->creds;
	int max = cap_max_bits();
	cap_t cur;
	int r;

	cur = cap_get_proc();
	if (!cur) {
		r = -errno;
		pr_perror("cap_get_proc");
		return r;
	}
	r = cap_missing(c->cap_prm, cur, CAP_PERMITTED, "permitted", t->pid);
	if (!r)
		r = cap_missing(c->cap_inh | c->cap_prm, cur, CAP_PERMITTED, "inheritable", t->pid);
	cap_free(cur);
	if (r)
		return r;
	for (int i = 0; i < max && i < 64; i++) {
		if ((c->cap_bnd & (1ULL << i)) && cap_get_bound((cap_value_t)i) != 1) {
			pr_err("pid %u: capability %d is in the dumped bounding set but not in "
			       "relive's: it cannot be raised\n",
			       t->pid, i);
			return -EPERM;
		}
	}
	if (c->n_groups > 65536) {
		pr_err("pid %u: %zu supplementary groups in the image\n", t->pid, c->n_groups);
		return -EINVAL;
	}
	return 0;
}

void rst_creds_fill(const CredsEntry *c, struct rst_blob_creds *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->uid = c->uid;
	ret->gid = c->gid;
	ret->euid = c->euid;
	ret->egid = c->egid;
	ret->suid = c->suid;
	ret->sgid = c->sgid;
	ret->fsuid = c->fsuid;
	ret->fsgid = c->fsgid;
	ret->secbits = c->has_secbits ? c->secbits : 0;
	ret->nr_groups = (uint32_t)c->n_groups;
	ret->cap_last = (uint32_t)cap_max_bits() - 1;
	ret->cap_inh = c->cap_inh;
	ret->cap_prm = c->cap_prm;
	ret->cap_eff = c->cap_eff;
	ret->cap_bnd = c->cap_bnd;
	if (c->has_cap_amb) {
		ret->flags |= RST_CREDS_AMBIENT;
		ret->cap_amb = c->cap_amb;
	}
}
