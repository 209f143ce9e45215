// S3 storage backend: a bucket through the SigV4 client in s3.c. put is one PUT (or a multipart
// upload above the threshold); put-if-absent sends If-None-Match: * and treats 412 as "already
// there".
#include "internal.h"

#include <stdlib.h>
#include <string.h>

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

static int s3_multipart(tc_s3 *s3, const char *k, const uint8_t *data, size_t len, size_t part_size, char *err, size_t errlen) {
    tc_http_response r = {0};
    if (tc_s3_request(s3, "POST", k, "uploads=", NULL, 0, NULL, NULL, &r, err, errlen) != 0) goto fail;
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
    for (size_t off = 0; off < len; off += part_size) {
        size_t n = len - off < part_size ? len - off : part_size;
        char q[1800];
        snprintf(q, sizeof q, "partNumber=%d&uploadId=%s", ++part, eid);
        if (tc_s3_request(s3, "PUT", k, q, data + off, n, NULL, NULL, &r, err, errlen) != 0 || r.status != 200) {
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
    int rc = tc_s3_request(s3, "POST", k, q, complete.p, complete.len, NULL, "Content-Type: application/xml", &r, err, errlen);
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
    tc_s3_request(s3, "DELETE", k, q2, NULL, 0, NULL, NULL, &r2, NULL, 0);
    tc_buf_free(&r2.body);
}
fail:
    tc_buf_free(&r.body);
    return -1;
}

static void *s3_open(const char *bucket, const char *s3_endpoint, const char *s3_region, char *err, size_t errlen) {
    return tc_s3_create(s3_endpoint, s3_region, bucket, err, errlen);
}

static void s3_close(void *impl) { tc_s3_free(impl); }
static uint64_t s3_bytes(const void *impl) { return tc_s3_bytes(impl); }

static int s3_put(void *impl, const char *k, const void *data, size_t len, int if_absent, size_t multipart_threshold,
                  size_t part_size, char *err, size_t errlen) {
    tc_s3 *s3 = impl;
    if (!if_absent && len >= multipart_threshold && len > part_size)
        return s3_multipart(s3, k, data, len, part_size, err, errlen) == 0 ? 1 : -1;
    tc_http_response r = {0};
    int rc = tc_s3_request(s3, "PUT", k, NULL, data, len, NULL, if_absent ? "If-None-Match: *" : NULL, &r, err, errlen);
    if (rc == 0) {
        if (r.status == 200)
            rc = 1;
        else if (if_absent && (r.status == 412 || r.status == 409))
            rc = 0;
        else
            rc = s3_status_error(if_absent ? "conditional PUT" : "PUT", k, &r, err, errlen);
    }
    tc_buf_free(&r.body);
    return rc;
}

static int s3_get(void *impl, const char *k, uint8_t **data, size_t *len, char *err, size_t errlen) {
    tc_http_response r = {0};
    if (tc_s3_request(impl, "GET", k, NULL, NULL, 0, NULL, NULL, &r, err, errlen) != 0) {
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

static int s3_list(void *impl, const char *prefix, tc_buf *out, char *err, size_t errlen) {
    char eprefix[TC_PATH_MAX * 6], token[1024] = {0};
    tc_uri_encode(prefix, 0, eprefix, sizeof eprefix);
    for (;;) {
        char q[TC_PATH_MAX * 10], etoken[3200];
        tc_uri_encode(token, 0, etoken, sizeof etoken);
        if (token[0])
            snprintf(q, sizeof q, "continuation-token=%s&list-type=2&prefix=%s", etoken, eprefix);
        else
            snprintf(q, sizeof q, "list-type=2&prefix=%s", eprefix);
        tc_http_response r = {0};
        if (tc_s3_request(impl, "GET", "", q, NULL, 0, NULL, NULL, &r, err, errlen) != 0 || r.status != 200) {
            if (r.status != 200 && r.status != 0) s3_status_error("listing", prefix, &r, err, errlen);
            tc_buf_free(&r.body);
            return -1;
        }
        const char *p = (const char *)r.body.p;
        while ((p = strstr(p, "<Key>"))) {
            p += 5;
            const char *e = strstr(p, "</Key>");
            if (!e) break;
            tc_buf_append(out, p, (size_t)(e - p));
            tc_buf_append(out, "\n", 1);
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
        if (!more) return 0;
    }
}

static int s3_delete(void *impl, const char *k, char *err, size_t errlen) {
    tc_http_response r = {0};
    int rc = tc_s3_request(impl, "DELETE", k, NULL, NULL, 0, NULL, NULL, &r, err, errlen);
    if (rc == 0 && r.status != 204 && r.status != 200 && r.status != 404) rc = s3_status_error("DELETE", k, &r, err, errlen);
    tc_buf_free(&r.body);
    return rc;
}

static int s3_get_range(void *impl, const char *k, const char *range, tc_http_response *resp, char *err, size_t errlen) {
    return tc_s3_request(impl, "GET", k, NULL, NULL, 0, range, NULL, resp, err, errlen);
}

const tc_store_backend tc_store_s3_backend = {
    .scheme = "s3://",
    .remote = 1,
    .open = s3_open,
    .close = s3_close,
    .put = s3_put,
    .get = s3_get,
    .list = s3_list,
    .del = s3_delete,
    .bytes = s3_bytes,
    .get_range = s3_get_range,
};
