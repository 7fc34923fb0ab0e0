/*
 * `relive show FILE...` and `relive show -D DIR`: decode images to JSON on
 * stdout (our crit). The JSON itself comes from images/show.c; this file
 * picks the files, buffers the output so that stdout gets either a whole
 * valid document or nothing, and turns image errors into one log line.
 */
#include "commands.h"
#include "img.h"
#include "log.h"
#include "show.h"
#include "util.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int show_one(FILE *out, const char *path)
{
	struct img img;
	int r;

	r = img_open_path(&img, path);
	if (r) {
		pr_err("%s\n", img.err);
		return r;
	}
	r = img_show(&img, out);
	if (r)
		pr_err("%s\n", img.err);
	img_close(&img);
	return r;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_image_name(const char *name)
{
	size_t len = strlen(name);

	return len > 4 && !strcmp(name + len - 4, ".img");
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* The *.img names in DIR, sorted bytewise so that output is stable. */
static int list_images(const char *dir, char ***ret_names, size_t *ret_n)
{
	DIR *d = opendir(dir);
	char **names = NULL, **tmp;
	size_t n = 0, cap = 0;
	struct dirent *de;

	if (!d) {
		pr_perror("cannot open the images directory %s", dir);
		return -errno;
	}
	while ((de = readdir(d))) {
		if (!is_image_name(de->d_name))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 32;
			tmp = realloc(names, cap * sizeof(*names));
			if (!tmp)
				goto out_nomem;
			names = tmp;
		}
		names[n] = strdup(de->d_name);
		if (!names[n])
			goto out_nomem;
		n++;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_names);
	*ret_names = names;
	*ret_n = n;
	return 0;
out_nomem:
	closedir(d);
	free_names(names, n);
	pr_err("out of memory listing %s\n", dir);
	return -ENOMEM;
}

static int show_dir(FILE *out, const char *dir)
{
	char **names = NULL;
	size_t n = 0;
	char path[PATH_MAX];
	int r;

	r = list_images(dir, &names, &n);
	if (r)
		return r;
	fputs("{\"dir\": ", out);
	img_show_string(out, dir, strlen(dir));
	fputs(", \"images\": [", out);
	for (size_t i = 0; i < n && !r; i++) {
		fputs(i ? ",\n  " : "\n  ", out);
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		r = show_one(out, path);
	}
	fputs(n ? "\n]}\n" : "]}\n", out);
	free_names(names, n);
	return r;
}

/* With -D, FILE arguments that are not absolute are names inside DIR. */
static int show_files(FILE *out, const struct relive_opts *opts)
{
	char path[PATH_MAX];
	bool many = opts->nr_args > 1;
	int r = 0;

	if (many)
		fputs("[\n", out);
	for (int i = 0; i < opts->nr_args && !r; i++) {
		const char *arg = opts->args[i];

		if (opts->images_dir && arg[0] != '/') {
			snprintf(path, sizeof(path), "%s/%s", opts->images_dir, arg);
			arg = path;
		}
		if (i)
			fputs(",\n", out);
		r = show_one(out, arg);
	}
	fputs(many ? "\n]\n" : "\n", out);
	return r;
}

int cmd_show(const struct relive_opts *opts)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out;
	int r;

	out = open_memstream(&buf, &len);
	if (!out) {
		pr_perror("cannot buffer the output");
		return 1;
	}
	if (opts->nr_args)
		r = show_files(out, opts);
	else
		r = show_dir(out, opts->images_dir);
	if (fclose(out) && !r) {
		pr_perror("cannot buffer the output");
		r = -ENOMEM;
	}
	if (!r && util_write_full(STDOUT_FILENO, buf, len) < 0) {
		pr_perror("cannot write to stdout");
		r = -EIO;
	}
	free(buf);
	return r ? 1 : 0;
}
