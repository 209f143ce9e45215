// Object store: a directory or an S3 bucket prefix behind one small interface.
//
// Directory: put writes a temporary file, fsyncs it and renames it into place; put-if-absent
// links the temporary file to the final name, which fails atomically when it exists.
// S3: put is one PUT (or a multipart upload above the threshold); put-if-absent sends
// If-None-Match: * and treats 412 as "already there".
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct tc_store {
    int is_s3;
    char root[TC_PATH_MAX];    // directory, or key prefix inside the bucket (no trailing '/')
    tc_s3 *s3;
    uint64_t bytes;
    size_t multipart_threshold, part_size;
    unsigned long tmp_counter;
};

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

tc_store *tc_store_open(const char *url, const char *s3_endpoint, const char *s3_region, char *err, size_t errlen) {
    tc_store *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->multipart_threshold = 8u << 20;
    s->part_size = 8u << 20;
    if (strncmp(url, "s3://", 5) == 0) {
        s->is_s3 = 1;
        const char *b = url + 5, *slash = strchr(b, '/');
        char bucket[256];
        size_t blen = slash ? (size_t)(slash - b) : strlen(b);
        if (blen == 0 || blen >= sizeof bucket) {
            tc_fail(err, errlen, "store: '%s' must look like s3://bucket/prefix", url);
            free(s);
            return NULL;
        }
        memcpy(bucket, b, blen);
        bucket[blen] = 0;
        snprintf(s->root, sizeof s->root, "%s", slash ? slash + 1 : "");
        size_t n = strlen(s->root);
        while (n && s->root[n - 1] == '/') s->root[--n] = 0;
        s->s3 = tc_s3_create(s3_endpoint, s3_region, bucket, err, errlen);
        if (!s->s3) {
            free(s);
            return NULL;
        }
        return s;
    }
    const char *path = strncmp(url, "file://", 7) == 0 ? url + 7 : url;
    snprintf(s->root, sizeof s->root, "%s", path);
    size_t n = strlen(s->root);
    while (n > 1 && s->root[n - 1] == '/') s->root[--n] = 0;
    if (mkdirs(s->root) != 0) {
        tc_fail(err, errlen, "store: cannot create directory '%s': %s", s->root, strerror(errno));
        free(s);
        return NULL;
    }
    return s;
}

void tc_store_free(tc_store *s) {
    if (!s) return;
    tc_s3_free(s->s3);
    free(s);
}

int tc_store_is_remote(const tc_store *s) { return s->is_s3; }

uint64_t tc_store_bytes(const tc_store *s) { return s->is_s3 ? tc_s3_bytes(s->s3) : s->bytes; }

void tc_store_set_multipart(tc_store *s, size_t threshold, size_t part_size) {
    s->multipart_threshold = threshold;
    s->part_size = part_size ? part_size : threshold;
}

static void full_key(const tc_store *s, const char *key, char *out, size_t outlen) {
    if (s->root[0])
        snprintf(out, outlen, "%s/%s", s->root, key);
    else
        snprintf(out, outlen, "%s", key);
}

// Writes data to a fresh temporary file next to path; returns its name in tmp.
static int write_tmp(tc_store *s, const char *path, const void *data, size_t len, char *tmp, size_t tmplen, char *err,
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

static int s3_status_error(const char *what, const char *key, tc_http_response *r, char *err, size_t errlen) {
    char msg[200] = {0};
    const char *m = r->body.p ? strstr((const char *)r->body.p, "<Message>") : NULL;
    if (m) {
        m += 9;
        const char *e = strstr(m, "</Message>");
        snprintf(msg, sizeof msg, "%.*s", e ? (int)(e - m) : 120, m);
    }
    return tc_fail(err, errlen, "s3: %s '%s' failed with HTTP %ld%s%s", what, key, r->status, msg[0] ? ": " : "", msg);
}

static int s3_multipart(tc_store *s, const char *k, const uint8_t *data, size_t len, char *err, size_t errlen) {
    tc_http_response r = {0};
    if (tc_s3_request(s->s3, "POST", k, "uploads=", NULL, 0, NULL, NULL, &r, err, errlen) != 0) goto fail;
    if (r.status != 200) {
        s3_status_error("starting multipart upload of", k, &r, err, errlen);
        goto fail;
    }
    char upload_id[512] = {0};
    const char *u = strstr((const char *)r.body.p, "<UploadId>");
    if (!u) {
        tc_fail(err, errlen, "s3: no UploadId in the answer for '%s'", k);
        goto fail;
    }
    u += 10;
    const char *ue = strstr(u, "</UploadId>");
    snprintf(upload_id, sizeof upload_id, "%.*s", ue ? (int)(ue - u) : 0, u);
    char eid[1600];
    tc_uri_encode(upload_id, 0, eid, sizeof eid);
    tc_buf complete = {0};
    tc_buf_append(&complete, "<CompleteMultipartUpload>", 25);
    int part = 0;
    for (size_t off = 0; off < len; off += s->part_size) {
        size_t n = len - off < s->part_size ? len - off : s->part_size;
        char q[1800];
        snprintf(q, sizeof q, "partNumber=%d&uploadId=%s", ++part, eid);
        if (tc_s3_request(s->s3, "PUT", k, q, data + off, n, NULL, NULL, &r, err, errlen) != 0 || r.status != 200) {
            if (r.status != 200 && r.status != 0) s3_status_error("uploading a part of", k, &r, err, errlen);
            tc_buf_free(&complete);
            goto abort;
        }
        char xml[512];
        int xl = snprintf(xml, sizeof xml, "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>", part, r.etag);
        tc_buf_append(&complete, xml, (size_t)xl);
    }
    tc_buf_append(&complete, "</CompleteMultipartUpload>", 26);
    char q[1700];
    snprintf(q, sizeof q, "uploadId=%s", eid);
    int rc = tc_s3_request(s->s3, "POST", k, q, complete.p, complete.len, NULL, "Content-Type: application/xml", &r, err, errlen);
    tc_buf_free(&complete);
    if (rc != 0) goto abort;
    // S3 can answer 200 with an <Error> body for a failed completion.
    if (r.status != 200 || strstr((const char *)r.body.p, "<Error>")) {
        s3_status_error("completing multipart upload of", k, &r, err, errlen);
        goto abort;
    }
    tc_buf_free(&r.body);
    return 0;
abort: {
    char q2[1700];
    snprintf(q2, sizeof q2, "uploadId=%s", eid);
    tc_http_response r2 = {0};
    tc_s3_request(s->s3, "DELETE", k, q2, NULL, 0, NULL, NULL, &r2, NULL, 0);
    tc_buf_free(&r2.body);
}
fail:
    tc_buf_free(&r.body);
    return -1;
}

int tc_store_put(tc_store *s, const char *key, const void *data, size_t len, char *err, size_t errlen) {
    char k[TC_PATH_MAX * 2];
    full_key(s, key, k, sizeof k);
    if (s->is_s3) {
        if (len >= s->multipart_threshold && len > s->part_size) return s3_multipart(s, k, data, len, err, errlen);
        tc_http_response r = {0};
        int rc = tc_s3_request(s->s3, "PUT", k, NULL, data ? data : "", len, NULL, NULL, &r, err, errlen);
        if (rc == 0 && r.status != 200) rc = s3_status_error("PUT", k, &r, err, errlen);
        tc_buf_free(&r.body);
        return rc;
    }
    char tmp[TC_PATH_MAX * 2 + 64];
    if (write_tmp(s, k, data, len, tmp, sizeof tmp, err, errlen) != 0) return -1;
    if (rename(tmp, k) != 0) {
        int e = errno;
        unlink(tmp);
        return tc_fail(err, errlen, "store: cannot rename '%s' to '%s': %s", tmp, k, strerror(e));
    }
    sync_parent(k);
    s->bytes += len;
    return 0;
}

int tc_store_put_if_absent(tc_store *s, const char *key, const void *data, size_t len, char *err, size_t errlen) {
    char k[TC_PATH_MAX * 2];
    full_key(s, key, k, sizeof k);
    if (s->is_s3) {
        tc_http_response r = {0};
        int rc = tc_s3_request(s->s3, "PUT", k, NULL, data ? data : "", len, NULL, "If-None-Match: *", &r, err, errlen);
        if (rc == 0) {
            if (r.status == 200)
                rc = 1;
            else if (r.status == 412 || r.status == 409)
                rc = 0;
            else
                rc = s3_status_error("conditional PUT", k, &r, err, errlen);
        }
        tc_buf_free(&r.body);
        return rc;
    }
    char tmp[TC_PATH_MAX * 2 + 64];
    if (write_tmp(s, k, data, len, tmp, sizeof tmp, err, errlen) != 0) return -1;
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

int tc_store_get(tc_store *s, const char *key, uint8_t **data, size_t *len, char *err, size_t errlen) {
    char k[TC_PATH_MAX * 2];
    full_key(s, key, k, sizeof k);
    *data = NULL;
    *len = 0;
    if (s->is_s3) {
        tc_http_response r = {0};
        if (tc_s3_request(s->s3, "GET", k, NULL, NULL, 0, NULL, NULL, &r, err, errlen) != 0) {
            tc_buf_free(&r.body);
            return -1;
        }
        if (r.status == 404) {
            tc_buf_free(&r.body);
            return 0;
        }
        if (r.status != 200) {
            int rc = s3_status_error("GET", k, &r, err, errlen);
            tc_buf_free(&r.body);
            return rc;
        }
        *len = r.body.len;
        *data = r.body.p ? r.body.p : malloc(1);
        return 1;
    }
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

int tc_store_list(tc_store *s, const char *prefix, char **keys, char *err, size_t errlen) {
    tc_buf out = {0};
    tc_buf_append(&out, "", 0);
    if (!s->is_s3) {
        if (walk(s->root, strlen(s->root), s->root, prefix, &out) != 0) {
            tc_buf_free(&out);
            return tc_fail(err, errlen, "store: cannot list '%s': %s", s->root, strerror(errno));
        }
        *keys = (char *)out.p;
        return 0;
    }
    char full[TC_PATH_MAX * 2], eprefix[TC_PATH_MAX * 6], token[1024] = {0};
    full_key(s, prefix, full, sizeof full);
    tc_uri_encode(full, 0, eprefix, sizeof eprefix);
    size_t strip = s->root[0] ? strlen(s->root) + 1 : 0;
    for (;;) {
        char q[TC_PATH_MAX * 10], etoken[3200];
        tc_uri_encode(token, 0, etoken, sizeof etoken);
        if (token[0])
            snprintf(q, sizeof q, "continuation-token=%s&list-type=2&prefix=%s", etoken, eprefix);
        else
            snprintf(q, sizeof q, "list-type=2&prefix=%s", eprefix);
        tc_http_response r = {0};
        if (tc_s3_request(s->s3, "GET", "", q, NULL, 0, NULL, NULL, &r, err, errlen) != 0 || r.status != 200) {
            if (r.status != 200 && r.status != 0) s3_status_error("listing", full, &r, err, errlen);
            tc_buf_free(&r.body);
            tc_buf_free(&out);
            return -1;
        }
        const char *p = (const char *)r.body.p;
        while ((p = strstr(p, "<Key>"))) {
            p += 5;
            const char *e = strstr(p, "</Key>");
            if (!e) break;
            if ((size_t)(e - p) > strip) {
                tc_buf_append(&out, p + strip, (size_t)(e - p) - strip);
                tc_buf_append(&out, "\n", 1);
            }
            p = e;
        }
        const char *t = strstr((const char *)r.body.p, "<NextContinuationToken>");
        int more = strstr((const char *)r.body.p, "<IsTruncated>true</IsTruncated>") != NULL && t;
        if (more) {
            t += 23;
            const char *e = strstr(t, "</NextContinuationToken>");
            snprintf(token, sizeof token, "%.*s", e ? (int)(e - t) : 0, t);
        }
        tc_buf_free(&r.body);
        if (!more) break;
    }
    *keys = (char *)out.p;
    return 0;
}

int tc_store_delete(tc_store *s, const char *key, char *err, size_t errlen) {
    char k[TC_PATH_MAX * 2];
    full_key(s, key, k, sizeof k);
    if (s->is_s3) {
        tc_http_response r = {0};
        int rc = tc_s3_request(s->s3, "DELETE", k, NULL, NULL, 0, NULL, NULL, &r, err, errlen);
        if (rc == 0 && r.status != 204 && r.status != 200 && r.status != 404) rc = s3_status_error("DELETE", k, &r, err, errlen);
        tc_buf_free(&r.body);
        return rc;
    }
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
