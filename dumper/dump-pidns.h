/*
 * A tree whose root is the init of a pid namespace: its images carry the
 * namespace's PIDs (dump-pidns.c).
 */
#ifndef RELIVE_DUMPER_DUMP_PIDNS_H
#define RELIVE_DUMPER_DUMP_PIDNS_H

#include "dump.h"

/* host pid -> namespace pid of every thread of the tree; nr 0: not needed. */
struct dmp_pidmap {
	uint32_t *host;
	uint32_t *ns;
	size_t nr;
};

/* Fill RET when the root is a pid namespace's init (else nr 0); call while frozen. */
int dmp_pidns_map(struct dump_tree *t, struct dmp_pidmap *ret);
/* The namespace pid of HOST, 0 if it is not a thread of the tree. */
uint32_t dmp_pidns_ns(const struct dmp_pidmap *m, uint32_t host);
/* Rename and rewrite the images (after pstree.img, before the inventory). */
int dmp_pidns_rewrite(struct dump_tree *t, const struct dmp_pidmap *m);
void dmp_pidns_fini(struct dmp_pidmap *m);
/*
 * A lazy dump of a namespace init: keep its frozen tree stopped while the
 * pages are served, and have the kernel kill it if relive dies meanwhile.
 */
int dmp_pidns_hold(struct dump_tree *t);
/*
 * The pid HOST has in the images of the tree of ROOT (its namespace pid when
 * ROOT is a pid namespace's init, as dmp_pidns_map decides; 0 if it is in
 * another namespace), for images written before the rewrite (files.img).
 */
int dmp_pidns_image_pid(pid_t root, pid_t host, uint32_t *ret);

#endif
