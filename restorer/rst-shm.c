/*
 * Shared anonymous memory of a process tree: a MAP_SHARED|MAP_ANONYMOUS
 * object (same shmid, the inode of its VMAs) that several processes of the
 * tree map is restored as one object, not one copy each. The plan lists
 * those objects with the size they need; the root helper creates each one
 * before it forks anything (a shared anonymous mapping reopened through
 * /proc/self/map_files, so it is still "/dev/zero (deleted)" in maps; a
 * memfd if that is refused) and every helper inherits the fds and maps its
 * VMAs of that object from the fd. Each process writes its dumped pages
 * into it; they are the same bytes, as the object was one at dump time.
 */
#include "rst.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static struct rst_shm *find_shm(const struct rst_plan *p, uint64_t shmid)
{
	for (size_t i = 0; i < p->nr_shms; i++)
		if (p->shms[i].shmid == shmid)
			return &p->shms[i];
	return NULL;
}

static bool task_maps(const struct rst_task *t, uint64_t shmid)
{
	for (size_t i = 0; i < t->nr_vmas; i++)
		if (t->vmas[i].shmid == shmid)
			return true;
	return false;
}

int rst_shm_plan(struct rst_plan *p)
{
	for (size_t i = 0; i < p->nr_tasks; i++) {
		const struct rst_task *t = &p->tasks[i];

		for (size_t k = 0; k < t->nr_vmas; k++) {
			const struct rst_vma *v = &t->vmas[k];
			struct rst_shm *s = v->shmid ? find_shm(p, v->shmid) : NULL;
			bool other = false;

			if (!v->shmid)
				continue;
			for (size_t j = i + 1; !s && !other && j < p->nr_tasks; j++)
				other = task_maps(&p->tasks[j], v->shmid);
			if (!s && other) {
				s = realloc(p->shms, (p->nr_shms + 1) * sizeof(*s));
				if (!s)
					return -ENOMEM;
				p->shms = s;
				s = &p->shms[p->nr_shms++];
				s->shmid = v->shmid;
				s->size = 0;
			}
			if (!s)
				continue;
			if (v->pgoff > (1ULL << 46) || v->pgoff % IMG_PAGE_SIZE) {
				pr_err("mm-%u.img: shared memory at 0x%" PRIx64 " has a bad offset "
				       "0x%" PRIx64 "\n",
				       t->pid, v->start, v->pgoff);
				return -EINVAL;
			}
			s->size = MAX(s->size, v->pgoff + (v->end - v->start));
		}
	}
	if (p->nr_shms)
		pr_info("%zu shared anonymous object(s) mapped by several processes\n",
			p->nr_shms);
	return 0;
}

static int create_one(struct rst_child *c, const struct rst_shm *s)
{
	char path[80];
	void *m;
	int fd;

	m = mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		rst_child_fail(c, "cannot create shared memory %" PRIu64 " (%" PRIu64
			       " bytes): %s",
			       s->shmid, s->size, strerror(errno));
		return -errno;
	}
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)m,
		 (unsigned long)m + s->size);
	fd = open(path, O_RDWR | O_CLOEXEC);
	munmap(m, s->size);
	if (fd >= 0)
		return fd;
	/* No map_files access: a memfd is the same kind of object under another name. */
	fd = memfd_create("relive-shm", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)s->size) < 0) {
		rst_child_fail(c, "cannot create shared memory %" PRIu64 " (%" PRIu64
			       " bytes): %s",
			       s->shmid, s->size, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	return fd;
}

int rst_shm_create(struct rst_child *c)
{
	const struct rst_plan *p = c->plan;

	if (!p->nr_shms)
		return 0;
	c->shm_fds = malloc(p->nr_shms * sizeof(int));
	if (!c->shm_fds) {
		rst_child_fail(c, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < p->nr_shms; i++) {
		c->shm_fds[i] = create_one(c, &p->shms[i]);
		if (c->shm_fds[i] < 0)
			return c->shm_fds[i];
	}
	return 0;
}

int rst_shm_fd(const struct rst_child *c, const struct rst_vma *v)
{
	const struct rst_plan *p = c->plan;

	if (!v->shmid || !c->shm_fds)
		return -1;
	for (size_t i = 0; i < p->nr_shms; i++)
		if (p->shms[i].shmid == v->shmid)
			return c->shm_fds[i];
	return -1;
}
