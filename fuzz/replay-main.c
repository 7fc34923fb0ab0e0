/*
 * main() for the fuzz targets in a normal build: runs every file named on
 * the command line, or found in a directory named there, through
 * LLVMFuzzerTestOneInput() once, as libFuzzer would replay it. The
 * fuzz-regress suite uses it to replay the inputs that once broke a target
 * and the seed corpus. A broken property aborts inside the target; a run
 * with no input at all fails, so a wrong path cannot pass silently.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path, unsigned int *count)
{
	struct stat st;
	uint8_t *buf;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	buf = malloc(st.st_size ? st.st_size : 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	n = read(fd, buf, st.st_size);
	close(fd);
	if (n != st.st_size) {
		fprintf(stderr, "%s: short read (%zd of %lld bytes)\n", path, n,
			(long long)st.st_size);
		free(buf);
		return -EIO;
	}
	fprintf(stderr, "replay %s (%zd bytes)\n", path, n);
	LLVMFuzzerTestOneInput(buf, n);
	free(buf);
	(*count)++;
	return 0;
}

static int replay_dir(const char *dir, unsigned int *count)
{
	struct dirent **names;
	int n, r = 0;

	n = scandir(dir, &names, NULL, alphasort);
	if (n < 0) {
		fprintf(stderr, "%s: %s\n", dir, strerror(errno));
		return -errno;
	}
	for (int i = 0; i < n; i++) {
		char path[4096];
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		/* README and dot files describe the directory; they are not inputs. */
		if (!r && names[i]->d_name[0] != '.' && strcmp(names[i]->d_name, "README") &&
		    !stat(path, &st) && S_ISREG(st.st_mode))
			r = replay_file(path, count);
		free(names[i]);
	}
	free(names);
	return r;
}

int main(int argc, char **argv)
{
	unsigned int count = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		int r;

		if (stat(argv[i], &st)) {
			fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		r = S_ISDIR(st.st_mode) ? replay_dir(argv[i], &count) :
					  replay_file(argv[i], &count);
		if (r)
			return 1;
	}
	fprintf(stderr, "%u inputs replayed\n", count);
	return count ? 0 : 1;
}
