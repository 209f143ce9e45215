// Object store: one small interface (put, put-if-absent, get, list, delete) over a table of
// storage backends picked by the URL's scheme: a directory (store.c), an S3 bucket prefix
// (store_s3.c), a Cloud Storage bucket prefix (store_gcs.c) and an Azure Blob container prefix
// (store_azure.c). A new object store is one more entry in `backends`, not a branch in every
// operation.
//
// Directory: put writes a temporary file, fsyncs it and renames it into place; put-if-absent
// links the temporary file to the final name, which fails atomically when it exists.
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const tc_store_backend *const backends[] = {&tc_store_s3_backend, &tc_store_gcs_backend, &tc_store_azure_backend,
                                                   &tc_store_dir_backend};

// The backend for url, with url rewritten to its scheme form in canon: an https:// URL whose
// host ends with a backend's https_host_suffix ("https://acct.blob.core.windows.net/c/p")
// becomes scheme + host without the suffix + path ("az://acct/c/p").
static const tc_store_backend *find_backend(const char *url, char *canon, size_t canonlen) {
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        const tc_store_backend *be = backends[i];
        if (be->https_host_suffix && strncmp(url, "https://", 8) == 0) {
            const char *host = url + 8, *slash = strchr(host, '/');
            size_t hlen = slash ? (size_t)(slash - host) : strlen(host), slen = strlen(be->https_host_suffix);
            if (hlen > slen && strncmp(host + hlen - slen, be->https_host_suffix, slen) == 0) {
                snprintf(canon, canonlen, "%s%.*s%s", be->scheme, (int)(hlen - slen), host, slash ? slash : "");
                return be;
            }
        }
        if (strncmp(url, be->scheme, strlen(be->scheme)) == 0) {
            snprintf(canon, canonlen, "%s", url);
            return be;
        }
    }
    return NULL;
}

// Length of the location part of a canonical object-store URL after its scheme: the first
// `segments` path components (bucket, or account/container). 0 when one of them is empty.
static size_t location_length(const tc_store_backend *be, const char *rest) {
    size_t n = 0;
    for (int seg = 0; seg < (be->segments ? be->segments : 1); seg++) {
        if (seg) n++;  // the '/' between components
        const char *p = rest + n, *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || (seg + 1 < (be->segments ? be->segments : 1) && !slash)) return 0;
        n += len;
    }
    return n;
}

struct tc_store {
    const tc_store_backend *be;
    void *impl;
    char prefix[TC_PATH_MAX];  // key prefix inside the bucket (no trailing '/'); empty for directories
    size_t multipart_threshold, part_size;
};

tc_store *tc_store_open(const char *url, const char *s3_endpoint, const char *s3_region, char *err, size_t errlen) {
    char canon[TC_PATH_MAX];
    const tc_store_backend *be = find_backend(url, canon, sizeof canon);
    url = canon;
    tc_store *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->be = be;
    s->multipart_threshold = 8u << 20;
    s->part_size = 8u << 20;
    char location[TC_PATH_MAX];
    if (be->scheme[0]) {
        // scheme://bucket/prefix (scheme://account/container/prefix: two location segments)
        const char *b = url + strlen(be->scheme);
        size_t blen = location_length(be, b);
        const char *slash = b[blen] == '/' ? b + blen : NULL;
        if (blen == 0 || blen >= 256) {
            tc_fail(err, errlen, "store: '%s' must look like %s%s/prefix", url, be->scheme,
                    be->segments == 2 ? "account/container" : "bucket");
            free(s);
            return NULL;
        }
        memcpy(location, b, blen);
        location[blen] = 0;
        snprintf(s->prefix, sizeof s->prefix, "%s", slash ? slash + 1 : "");
        size_t n = strlen(s->prefix);
        while (n && s->prefix[n - 1] == '/') s->prefix[--n] = 0;
    } else {
        snprintf(location, sizeof location, "%s", strncmp(url, "file://", 7) == 0 ? url + 7 : url);
    }
    s->impl = be->open(location, s3_endpoint, s3_region, err, errlen);
    if (!s->impl) {
        free(s);
        return NULL;
    }
    return s;
}

void tc_store_free(tc_store *s) {
    if (!s) return;
    s->be->close(s->impl);
    free(s);
}

int tc_store_is_remote(const tc_store *s) { return s->be->remote; }

uint64_t tc_store_bytes(const tc_store *s) { return s->be->bytes(s->impl); }

void tc_store_set_multipart(tc_store *s, size_t threshold, size_t part_size) {
    s->multipart_threshold = threshold;
    s->part_size = part_size ? part_size : threshold;
}

int tc_store_is_object_url(const char *url) {
    char canon[TC_PATH_MAX];
    const tc_store_backend *be = find_backend(url, canon, sizeof canon);
    return be && be->get_range;
}

int tc_store_split_object_url(const char *url, char *store_url, size_t store_len, char *key, size_t key_len) {
    char canon[TC_PATH_MAX];
    const tc_store_backend *be = find_backend(url, canon, sizeof canon);
    if (!be || !be->get_range) return -1;
    const char *rest = canon + strlen(be->scheme);
    size_t n = location_length(be, rest);
    if (n == 0 || rest[n] != '/' || rest[n + 1] == 0) return -1;
    snprintf(store_url, store_len, "%.*s", (int)(rest + n - canon), canon);
    snprintf(key, key_len, "%s", rest + n + 1);
    return 0;
}

static void full_key(const tc_store *s, const char *key, char *out, size_t outlen) {
    if (s->prefix[0])
        snprintf(out, outlen, "%s/%s", s->prefix, key);
    else
        snprintf(out, outlen, "%s", key);
}

int tc_store_put(tc_store *s, const char *key, const void *data, size_t len, char *err, size_t errlen) {
    char k[TC_PATH_MAX * 2];
    full_key(s, key, k, sizeof k);
    int rc = s->be->put(s->impl, k, data ? data : "", len, 0, s->multipart_threshold, s->part_size, err, errlen);
    return rc < 0 ? -1 : 0;
}

int tc_store_put_if_absent(tc_store *s, const char *key, const void *data, size_t len, char *err, size_t errlen) {
    char k[TC_PATH_MAX * 2];
    full_key(s, key, k, sizeof k);
    return s->be->put(s->impl, k, data ? data : "", len, 1, s->multipart_threshold, s->part_size, err, errlen);
}

int tc_store_get(tc_store *s, const char *key, uint8_t **data, size_t *len, char *err, size_t errlen) {
    char k[TC_PATH_MAX * 2];
    full_key(s, key, k, sizeof k);
    *data = NULL;
    *len = 0;
    return s->be->get(s->impl, k, data, len, err, errlen);
}

int tc_store_list(tc_store *s, const char *prefix, char **keys, char *err, size_t errlen) {
    char full[TC_PATH_MAX * 2];
    full_key(s, prefix, full, sizeof full);
    tc_buf found = {0}, out = {0};
    if (s->be->list(s->impl, full, &found, err, errlen) != 0) {
        tc_buf_free(&found);
        return -1;
    }
    // Keys come back whole; callers see them relative to the store's prefix.
    size_t strip = s->prefix[0] ? strlen(s->prefix) + 1 : 0;
    tc_buf_append(&out, "", 0);
    for (size_t i = 0; i < found.len;) {
        const uint8_t *nl = memchr(found.p + i, '\n', found.len - i);
        size_t end = nl ? (size_t)(nl - found.p) : found.len;
        if (end - i > strip) {
            tc_buf_append(&out, found.p + i + strip, end - i - strip);
            tc_buf_append(&out, "\n", 1);
        }
        i = end + 1;
    }
    tc_buf_free(&found);
    *keys = (char *)out.p;
    return 0;
}

int tc_store_get_range(tc_store *s, const char *key, const char *range, tc_http_response *resp, char *err, size_t errlen) {
    if (!s->be->get_range) return tc_fail(err, errlen, "store: this store does not serve byte ranges");
    char k[TC_PATH_MAX * 2];
    full_key(s, key, k, sizeof k);
    return s->be->get_range(s->impl, k, range, resp, err, errlen);
}

int tc_store_delete(tc_store *s, const char *key, char *err, size_t errlen) {
    char k[TC_PATH_MAX * 2];
    full_key(s, key, k, sizeof k);
    return s->be->del(s->impl, k, err, errlen);
}

// ------------------------------------------------------------------------------------------
// Directory backend: keys are paths relative to the root directory.

typedef struct {
    char root[TC_PATH_MAX];
    uint64_t bytes;
    unsigned long tmp_counter;
} dir_store;

static int mkdirs(const char *path) {
    char tmp[TC_PATH_MAX * 2];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
            *p = '/';
        }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
    return 0;
}

// Writes data to a fresh temporary file next to path; returns its name in tmp.
static int write_tmp(dir_store *s, const char *path, const void *data, size_t len, char *tmp, size_t tmplen, char *err,
                     size_t errlen) {
    char dir[TC_PATH_MAX * 2];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = 0;
        if (mkdirs(dir) != 0) return tc_fail(err, errlen, "store: cannot create '%s': %s", dir, strerror(errno));
    }
    snprintf(tmp, tmplen, "%s.tmp.%d.%lu", path, (int)getpid(), ++s->tmp_counter);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return tc_fail(err, errlen, "store: cannot create '%s': %s", tmp, strerror(errno));
    const uint8_t *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return tc_fail(err, errlen, "store: write to '%s' failed: %s", tmp, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        unlink(tmp);
        return tc_fail(err, errlen, "store: cannot flush '%s': %s", tmp, strerror(errno));
    }
    return 0;
}

static void sync_parent(const char *path) {
    char dir[TC_PATH_MAX * 2];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) return;
    *slash = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static void *dir_open(const char *location, const char *s3_endpoint, const char *s3_region, char *err, size_t errlen) {
    (void)s3_endpoint;
    (void)s3_region;
    dir_store *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    snprintf(s->root, sizeof s->root, "%s", location);
    size_t n = strlen(s->root);
    while (n > 1 && s->root[n - 1] == '/') s->root[--n] = 0;
    if (mkdirs(s->root) != 0) {
        tc_fail(err, errlen, "store: cannot create directory '%s': %s", s->root, strerror(errno));
        free(s);
        return NULL;
    }
    return s;
}

static void dir_close(void *impl) { free(impl); }
static uint64_t dir_bytes(const void *impl) { return ((const dir_store *)impl)->bytes; }

static void dir_path(const dir_store *s, const char *key, char *out, size_t outlen) {
    snprintf(out, outlen, "%s/%s", s->root, key);
}

static int dir_put(void *impl, const char *key, const void *data, size_t len, int if_absent, size_t multipart_threshold,
                   size_t part_size, char *err, size_t errlen) {
    (void)multipart_threshold;
    (void)part_size;
    dir_store *s = impl;
    char k[TC_PATH_MAX * 2], tmp[TC_PATH_MAX * 2 + 64];
    dir_path(s, key, k, sizeof k);
    if (write_tmp(s, k, data, len, tmp, sizeof tmp, err, errlen) != 0) return -1;
    if (!if_absent) {
        if (rename(tmp, k) != 0) {
            int e = errno;
            unlink(tmp);
            return tc_fail(err, errlen, "store: cannot rename '%s' to '%s': %s", tmp, k, strerror(e));
        }
        sync_parent(k);
        s->bytes += len;
        return 1;
    }
    int rc = link(tmp, k);
    int e = errno;
    unlink(tmp);
    if (rc == 0) {
        sync_parent(k);
        s->bytes += len;
        return 1;
    }
    if (e == EEXIST) return 0;
    return tc_fail(err, errlen, "store: cannot create '%s': %s", k, strerror(e));
}

static int dir_get(void *impl, const char *key, uint8_t **data, size_t *len, char *err, size_t errlen) {
    dir_store *s = impl;
    char k[TC_PATH_MAX * 2];
    dir_path(s, key, k, sizeof k);
    int fd = open(k, O_RDONLY);
    if (fd < 0) {
        if (errno == ENOENT) return 0;
        return tc_fail(err, errlen, "store: cannot open '%s': %s", k, strerror(errno));
    }
    struct stat st;
    fstat(fd, &st);
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (buf && got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    if (!buf || got != (size_t)st.st_size) {
        free(buf);
        return tc_fail(err, errlen, "store: short read of '%s'", k);
    }
    s->bytes += got;
    *data = buf;
    *len = got;
    return 1;
}

static int walk(const char *root, size_t root_len, const char *dir, const char *prefix, tc_buf *out) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strstr(e->d_name, ".tmp.")) continue;
        char path[TC_PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0) continue;
        const char *rel = path + root_len + 1;
        if (S_ISDIR(st.st_mode)) {
            // Descend only where the prefix can still match.
            size_t rl = strlen(rel), pl = strlen(prefix);
            if (strncmp(rel, prefix, rl < pl ? rl : pl) == 0) walk(root, root_len, path, prefix, out);
        } else if (strncmp(rel, prefix, strlen(prefix)) == 0) {
            tc_buf_append(out, rel, strlen(rel));
            tc_buf_append(out, "\n", 1);
        }
    }
    closedir(d);
    return 0;
}

static int dir_list(void *impl, const char *prefix, tc_buf *out, char *err, size_t errlen) {
    dir_store *s = impl;
    if (walk(s->root, strlen(s->root), s->root, prefix, out) != 0)
        return tc_fail(err, errlen, "store: cannot list '%s': %s", s->root, strerror(errno));
    return 0;
}

static int dir_delete(void *impl, const char *key, char *err, size_t errlen) {
    dir_store *s = impl;
    char k[TC_PATH_MAX * 2];
    dir_path(s, key, k, sizeof k);
    if (unlink(k) != 0 && errno != ENOENT) return tc_fail(err, errlen, "store: cannot delete '%s': %s", k, strerror(errno));
    // Remove directories left empty (checkpoint step folders); failures are harmless.
    char dir[TC_PATH_MAX * 2];
    snprintf(dir, sizeof dir, "%s", k);
    char *slash;
    while ((slash = strrchr(dir, '/')) && (size_t)(slash - dir) > strlen(s->root)) {
        *slash = 0;
        if (rmdir(dir) != 0) break;
    }
    return 0;
}

const tc_store_backend tc_store_dir_backend = {
    .scheme = "",
    .remote = 0,
    .open = dir_open,
    .close = dir_close,
    .put = dir_put,
    .get = dir_get,
    .list = dir_list,
    .del = dir_delete,
    .bytes = dir_bytes,
};
