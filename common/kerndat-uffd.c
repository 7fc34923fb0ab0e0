/*
 * userfaultfd probes: open a uffd (syscall, else /dev/userfaultfd), ask
 * UFFDIO_API once with features = 0 to read the supported mask, report each
 * feature bit relive uses, then do a real UFFDIO_COPY into a registered
 * anonymous page and read it back. Also PAGEMAP_SCAN on our own pagemap,
 * which the WP_ASYNC dirty tracking of pre-copy builds on.
 */
#include "compat.h"
#include "kerndat-internal.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static const struct {
	enum kerndat_feature feature;
	uint64_t bit;
} uffd_bits[] = {
	{ KD_UFFD_EVENT_FORK, UFFD_FEATURE_EVENT_FORK },
	{ KD_UFFD_EVENT_REMAP, UFFD_FEATURE_EVENT_REMAP },
	{ KD_UFFD_EVENT_REMOVE, UFFD_FEATURE_EVENT_REMOVE },
	{ KD_UFFD_EVENT_UNMAP, UFFD_FEATURE_EVENT_UNMAP },
	{ KD_UFFD_THREAD_ID, UFFD_FEATURE_THREAD_ID },
	{ KD_UFFD_MISSING_SHMEM, UFFD_FEATURE_MISSING_SHMEM },
	{ KD_UFFD_PAGEFAULT_FLAG_WP, UFFD_FEATURE_PAGEFAULT_FLAG_WP },
	{ KD_UFFD_WP_ASYNC, UFFD_FEATURE_WP_ASYNC },
	{ KD_UFFD_MOVE, UFFD_FEATURE_MOVE },
};

/* Returns a uffd or -errno; why gets the reason of each way that failed. */
static int uffd_open(struct kerndat *kd, char *why, size_t len)
{
	_cleanup_close_ int dev = -1;
	int fd_sys, fd_dev, e_sys;

	fd_sys = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	e_sys = errno;
	kd->has_uffd_syscall = fd_sys >= 0;

	fd_dev = -1;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd_dev = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		if (fd_dev < 0)
			snprintf(why, len, "userfaultfd(): %s; USERFAULTFD_IOC_NEW on /dev/userfaultfd: %s",
				 strerror(e_sys), strerror(errno));
	} else {
		snprintf(why, len, "userfaultfd(): %s; open /dev/userfaultfd: %s", strerror(e_sys),
			 strerror(errno));
	}
	kd->has_uffd_dev = fd_dev >= 0;

	if (fd_sys >= 0) {
		if (fd_dev >= 0)
			close(fd_dev);
		return fd_sys;
	}
	return fd_dev >= 0 ? fd_dev : -e_sys;
}

/*
 * Register two fresh anonymous pages for MISSING faults, copy a page into
 * the first and read it back; a second copy onto it must fail with EEXIST
 * (the "already present" answer lazy-pages relies on). 0 or -errno with why.
 */
static int uffd_copy_test(int uffd, char *why, size_t len)
{
	long psz = sysconf(_SC_PAGESIZE);
	struct uffdio_register reg = { 0 };
	struct uffdio_copy copy = { 0 };
	struct uffdio_range range;
	char *src, *dst;
	int r = 0;

	src = mmap(NULL, 3 * psz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (src == MAP_FAILED) {
		snprintf(why, len, "mmap of 3 pages: %s", strerror(errno));
		return -errno;
	}
	dst = src + psz;
	memset(src, 0x5a, psz);
	memcpy(src, "relive-uffd-copy", 16);

	reg.range.start = (uintptr_t)dst;
	reg.range.len = 2 * psz;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg)) {
		r = -errno;
		snprintf(why, len, "UFFDIO_REGISTER %p+%ld: %s", dst, 2 * psz, strerror(errno));
		goto out_unmap;
	}
	if (!(reg.ioctls & (1ULL << _UFFDIO_COPY))) {
		r = -ENOTSUP;
		snprintf(why, len, "UFFDIO_REGISTER did not offer UFFDIO_COPY (ioctls 0x%llx)",
			 (unsigned long long)reg.ioctls);
		goto out_unregister;
	}

	copy.dst = (uintptr_t)dst;
	copy.src = (uintptr_t)src;
	copy.len = psz;
	if (ioctl(uffd, UFFDIO_COPY, &copy) || copy.copy != psz) {
		r = errno ? -errno : -EIO;
		snprintf(why, len, "UFFDIO_COPY to %p: %s (copied %lld)", dst, strerror(errno),
			 (long long)copy.copy);
		goto out_unregister;
	}
	if (memcmp(dst, src, psz)) {
		r = -EIO;
		snprintf(why, len, "page at %p differs from its source after UFFDIO_COPY", dst);
		goto out_unregister;
	}
	copy.copy = 0;
	errno = 0;
	if (!ioctl(uffd, UFFDIO_COPY, &copy) || errno != EEXIST) {
		r = -EIO;
		snprintf(why, len, "second UFFDIO_COPY to %p: expected EEXIST, got %s", dst,
			 errno ? strerror(errno) : "success");
		goto out_unregister;
	}

out_unregister:
	range.start = (uintptr_t)dst;
	range.len = 2 * psz;
	ioctl(uffd, UFFDIO_UNREGISTER, &range);
out_unmap:
	munmap(src, 3 * psz);
	return r;
}

/*
 * PAGEMAP_SCAN over four fresh pages of which the middle two are touched:
 * exactly one PRESENT region covering them must come back.
 */
static int pagemap_scan_test(char *why, size_t len)
{
	long psz = sysconf(_SC_PAGESIZE);
	_cleanup_close_ int fd = -1;
	struct page_region vec[4];
	struct pm_scan_arg arg;
	char *p;
	int n, r = 0;

	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, len, "open /proc/self/pagemap: %s", strerror(errno));
		return -errno;
	}
	p = mmap(NULL, 4 * psz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		snprintf(why, len, "mmap of 4 pages: %s", strerror(errno));
		return -errno;
	}
	/* keep the kernel from backing the range with a huge page */
	madvise(p, 4 * psz, MADV_NOHUGEPAGE);
	p[psz] = 1;
	p[2 * psz] = 1;

	memset(&arg, 0, sizeof(arg));
	arg.size = sizeof(arg);
	arg.start = (uintptr_t)p;
	arg.end = (uintptr_t)p + 4 * psz;
	arg.vec = (uintptr_t)vec;
	arg.vec_len = ARRAY_SIZE(vec);
	arg.category_mask = PAGE_IS_PRESENT;
	arg.return_mask = PAGE_IS_PRESENT;
	n = ioctl(fd, PAGEMAP_SCAN, &arg);
	if (n < 0) {
		r = -errno;
		snprintf(why, len, "PAGEMAP_SCAN on /proc/self/pagemap: %s", strerror(errno));
	} else if (n != 1 || vec[0].start != (uintptr_t)p + psz ||
		   vec[0].end != (uintptr_t)p + 3 * psz) {
		r = -EIO;
		snprintf(why, len, "PAGEMAP_SCAN returned %d regions, expected one at %p-%p", n,
			 p + psz, p + 3 * psz);
	}
	munmap(p, 4 * psz);
	return r;
}

void kd_probe_uffd(struct kerndat *kd)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	_cleanup_close_ int uffd = -1;
	char why[KERNDAT_WHY_LEN] = "";
	unsigned int i;

	if (pagemap_scan_test(why, sizeof(why)))
		kd_set(kd, KD_PAGEMAP_SCAN, false, "%s", why);
	else
		kd_set(kd, KD_PAGEMAP_SCAN, true, "%s", "");

	uffd = uffd_open(kd, why, sizeof(why));
	if (uffd < 0) {
		kd_set(kd, KD_UFFD, false, "%s", why);
		kd_set_same(kd, KD_UFFDIO_API, KD_UFFD);
		for (i = 0; i < ARRAY_SIZE(uffd_bits); i++)
			kd_set_same(kd, uffd_bits[i].feature, KD_UFFD);
		kd_set_same(kd, KD_UFFDIO_COPY, KD_UFFD);
		return;
	}
	kd_set(kd, KD_UFFD, true, "%s%s%s", kd->has_uffd_syscall ? "syscall" : "",
	       kd->has_uffd_syscall && kd->has_uffd_dev ? ", " : "",
	       kd->has_uffd_dev ? "/dev/userfaultfd" : "");

	if (ioctl(uffd, UFFDIO_API, &api)) {
		kd_set(kd, KD_UFFDIO_API, false, "UFFDIO_API (api 0x%llx, features 0): %s",
		       (unsigned long long)UFFD_API, strerror(errno));
		for (i = 0; i < ARRAY_SIZE(uffd_bits); i++)
			kd_set_same(kd, uffd_bits[i].feature, KD_UFFDIO_API);
		kd_set_same(kd, KD_UFFDIO_COPY, KD_UFFDIO_API);
		return;
	}
	kd->uffd_features = api.features;
	kd->uffd_ioctls = api.ioctls;
	kd_set(kd, KD_UFFDIO_API, true, "features 0x%llx, ioctls 0x%llx",
	       (unsigned long long)api.features, (unsigned long long)api.ioctls);
	for (i = 0; i < ARRAY_SIZE(uffd_bits); i++) {
		if (api.features & uffd_bits[i].bit)
			kd_set(kd, uffd_bits[i].feature, true, "%s", "");
		else
			kd_set(kd, uffd_bits[i].feature, false,
			       "bit 0x%llx not in the UFFDIO_API answer",
			       (unsigned long long)uffd_bits[i].bit);
	}

	if (uffd_copy_test(uffd, why, sizeof(why)))
		kd_set(kd, KD_UFFDIO_COPY, false, "%s", why);
	else
		kd_set(kd, KD_UFFDIO_COPY, true, "%s", "");
}
