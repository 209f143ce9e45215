// Cloud Storage backend (gs://bucket/prefix) over the JSON API with an OAuth2 bearer token.
//
// put is one media upload (POST /upload/storage/v1/b/B/o?uploadType=media&name=K); put-if-absent
// adds ifGenerationMatch=0, which Cloud Storage answers with 412 when the object exists. get is
// GET .../o/K?alt=media, list pages through GET .../o?prefix=P with nextPageToken, delete is
// DELETE .../o/K.
//
// Endpoint: STORAGE_EMULATOR_HOST ("host:port" or a URL) when set, else https://storage.googleapis.com.
// Token, first match wins:
//   GOOGLE_OAUTH_ACCESS_TOKEN                 used as is
//   GOOGLE_APPLICATION_CREDENTIALS            a service-account key (RS256-signed JWT exchanged at
//                                             its token_uri) or an authorized_user file (refresh token)
//   GCE_METADATA_HOST or no emulator          the metadata server's default service account
//   STORAGE_EMULATOR_HOST alone               no Authorization header (local emulators)
// Fetched tokens are cached until a minute before they expire and fetched again after a 401.
// Tokens and keys never appear in error messages.
#include "internal.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { AUTH_NONE, AUTH_STATIC, AUTH_SERVICE_ACCOUNT, AUTH_REFRESH, AUTH_METADATA };

typedef struct {
    char endpoint[256];  // scheme://host[:port], no trailing '/'
    char bucket[256];
    int auth;
    char key_file[TC_PATH_MAX];
    char metadata_host[256];
    char token[4096];
    double token_expires;  // tc_now() seconds; 0 = never fetched
    uint64_t bytes;
} gcs_store;

// ------------------------------------------------------------------------------------------
// Just enough JSON (shared with store_azure.c): the string value of "key" at or after p,
// unescaped into out. Returns the position after the value, or NULL when there is no such key.
const char *tc_json_string(const char *p, const char *key, char *out, size_t outlen) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    for (; p && (p = strstr(p, pat)); p++) {
        const char *v = p + strlen(pat);
        while (*v == ' ' || *v == '\n' || *v == '\r' || *v == '\t') v++;
        if (*v != ':') continue;
        v++;
        while (*v == ' ' || *v == '\n' || *v == '\r' || *v == '\t') v++;
        if (*v != '"') continue;
        size_t o = 0;
        for (v++; *v && *v != '"'; v++) {
            char c = *v;
            if (c == '\\' && v[1]) {
                v++;
                switch (*v) {
                case 'n': c = '\n'; break;
                case 't': c = '\t'; break;
                case 'r': c = '\r'; break;
                case 'b': c = '\b'; break;
                case 'f': c = '\f'; break;
                case 'u': {
                    unsigned u = 0;
                    if (sscanf(v + 1, "%4x", &u) == 1 && u < 0x80) {
                        c = (char)u;
                        v += 4;
                    }
                    break;
                }
                default: c = *v;  // \" \\ \/
                }
            }
            if (o + 1 < outlen) out[o++] = c;
        }
        if (outlen) out[o] = 0;
        return *v ? v + 1 : v;
    }
    return NULL;
}

long tc_json_long(const char *p, const char *key, long fallback) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *v = p ? strstr(p, pat) : NULL;
    if (!v) return fallback;
    v += strlen(pat);
    while (*v == ' ' || *v == ':' || *v == '"') v++;
    char *end;
    long n = strtol(v, &end, 10);
    return end == v ? fallback : n;
}

static void base64url(const unsigned char *in, size_t len, tc_buf *out) {
    unsigned char *b = malloc(4 * ((len + 2) / 3) + 1);
    if (!b) return;
    int n = EVP_EncodeBlock(b, in, (int)len);
    while (n > 0 && b[n - 1] == '=') n--;
    for (int i = 0; i < n; i++) b[i] = b[i] == '+' ? '-' : (b[i] == '/' ? '_' : b[i]);
    tc_buf_append(out, b, (size_t)n);
    free(b);
}

// ------------------------------------------------------------------------------------------
// Tokens

static int read_file(const char *path, tc_buf *out) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) tc_buf_append(out, chunk, n);
    fclose(f);
    return tc_buf_append(out, "", 1);  // NUL-terminated
}

// header.claims.signature for a service-account token request (RFC 7523), signed RS256.
static int signed_jwt(const char *email, const char *pem, const char *aud, tc_buf *jwt, char *err, size_t errlen) {
    static const char header[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
    long now = (long)time(NULL);
    char claims[1024];
    int cl = snprintf(claims, sizeof claims,
                      "{\"iss\":\"%s\",\"scope\":\"https://www.googleapis.com/auth/devstorage.read_write\","
                      "\"aud\":\"%s\",\"iat\":%ld,\"exp\":%ld}",
                      email, aud, now, now + 3600);
    base64url((const unsigned char *)header, sizeof header - 1, jwt);
    tc_buf_append(jwt, ".", 1);
    base64url((const unsigned char *)claims, (size_t)cl, jwt);

    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!key) return tc_fail(err, errlen, "gs: the service-account key's private_key is not a PEM private key");
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char sig[1024];
    size_t siglen = sizeof sig;
    int ok = ctx && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
             EVP_DigestSign(ctx, sig, &siglen, jwt->p, jwt->len) == 1;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(key);
    if (!ok) return tc_fail(err, errlen, "gs: cannot sign the token request with the service-account key");
    tc_buf_append(jwt, ".", 1);
    base64url(sig, siglen, jwt);
    return 0;
}

// Builds the token request for the key file: url, form body. 0 or -1 with err.
static int key_file_request(gcs_store *g, char *url, size_t urllen, tc_buf *form, char *err, size_t errlen) {
    tc_buf file = {0};
    if (read_file(g->key_file, &file) != 0) {
        tc_buf_free(&file);
        return tc_fail(err, errlen, "gs: cannot read GOOGLE_APPLICATION_CREDENTIALS '%s'", g->key_file);
    }
    const char *json = (const char *)file.p;
    int rc = 0;
    if (g->auth == AUTH_SERVICE_ACCOUNT) {
        char email[512] = "", *pem = malloc(file.len + 1);
        if (!pem || !tc_json_string(json, "client_email", email, sizeof email) || !tc_json_string(json, "private_key", pem, file.len + 1)) {
            rc = tc_fail(err, errlen, "gs: '%s' lacks client_email or private_key", g->key_file);
        } else {
            if (!tc_json_string(json, "token_uri", url, urllen)) snprintf(url, urllen, "https://oauth2.googleapis.com/token");
            tc_buf jwt = {0};
            rc = signed_jwt(email, pem, url, &jwt, err, errlen);
            if (rc == 0) {
                const char *grant = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=";
                tc_buf_append(form, grant, strlen(grant));
                tc_buf_append(form, jwt.p, jwt.len);
            }
            if (jwt.p) memset(jwt.p, 0, jwt.len);
            tc_buf_free(&jwt);
        }
        if (pem) memset(pem, 0, file.len + 1);
        free(pem);
    } else {
        char id[512] = "", secret[512] = "", refresh[2048] = "";
        if (!tc_json_string(json, "client_id", id, sizeof id) || !tc_json_string(json, "client_secret", secret, sizeof secret) ||
            !tc_json_string(json, "refresh_token", refresh, sizeof refresh)) {
            rc = tc_fail(err, errlen, "gs: '%s' lacks client_id, client_secret or refresh_token", g->key_file);
        } else {
            if (!tc_json_string(json, "token_uri", url, urllen)) snprintf(url, urllen, "https://oauth2.googleapis.com/token");
            char eid[1600], esecret[1600], erefresh[6200];
            tc_uri_encode(id, 0, eid, sizeof eid);
            tc_uri_encode(secret, 0, esecret, sizeof esecret);
            tc_uri_encode(refresh, 0, erefresh, sizeof erefresh);
            const char *parts[] = {"grant_type=refresh_token&client_id=", eid, "&client_secret=", esecret, "&refresh_token=", erefresh};
            for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) tc_buf_append(form, parts[i], strlen(parts[i]));
            memset(secret, 0, sizeof secret);
            memset(refresh, 0, sizeof refresh);
            memset(esecret, 0, sizeof esecret);
            memset(erefresh, 0, sizeof erefresh);
        }
    }
    memset(file.p, 0, file.len);
    tc_buf_free(&file);
    return rc;
}

// Makes sure g->token is fresh. 0 or -1 with err.
static int ensure_token(gcs_store *g, char *err, size_t errlen) {
    if (g->auth == AUTH_NONE || g->auth == AUTH_STATIC) return 0;
    if (g->token[0] && tc_now() < g->token_expires) return 0;
    char url[1024];
    tc_buf form = {0};
    tc_http_response r = {0};
    int rc;
    if (g->auth == AUTH_METADATA) {
        snprintf(url, sizeof url, "http://%s/computeMetadata/v1/instance/service-accounts/default/token", g->metadata_host);
        rc = tc_http_request("GET", url, "Metadata-Flavor: Google", NULL, 0, &r, err, errlen);
    } else {
        rc = key_file_request(g, url, sizeof url, &form, err, errlen);
        if (rc == 0)
            rc = tc_http_request("POST", url, "Content-Type: application/x-www-form-urlencoded", form.p, form.len, &r, err, errlen);
        if (form.p) memset(form.p, 0, form.len);
        tc_buf_free(&form);
    }
    if (rc == 0) {
        tc_buf_append(&r.body, "", 1);
        const char *body = (const char *)r.body.p;
        if (r.status != 200 || !tc_json_string(body, "access_token", g->token, sizeof g->token)) {
            char msg[200] = "";
            if (!tc_json_string(body, "error_description", msg, sizeof msg)) tc_json_string(body, "error", msg, sizeof msg);
            rc = tc_fail(err, errlen, "gs: token request to %s failed with HTTP %ld%s%s", url, r.status, msg[0] ? ": " : "", msg);
            g->token[0] = 0;
        } else {
            g->token_expires = tc_now() + (double)tc_json_long(body, "expires_in", 3600) - 60;
        }
    }
    if (r.body.p) memset(r.body.p, 0, r.body.len);
    tc_buf_free(&r.body);
    return rc;
}

// ------------------------------------------------------------------------------------------
// Requests

// One authorised request to endpoint + path_query; a 401 fetches a new token and tries once more.
static int gcs_request(gcs_store *g, const char *method, const char *path_query, const char *range, const void *body,
                       size_t len, tc_http_response *r, char *err, size_t errlen) {
    char url[TC_PATH_MAX * 8];
    snprintf(url, sizeof url, "%s%s", g->endpoint, path_query);
    for (int attempt = 0;; attempt++) {
        if (ensure_token(g, err, errlen) != 0) return -1;
        char headers[4200];
        int n = 0;
        if (g->auth != AUTH_NONE) n = snprintf(headers, sizeof headers, "Authorization: Bearer %s\n", g->token);
        if (range)
            snprintf(headers + n, sizeof headers - (size_t)n, "Range: %s", range);
        else if (body)
            snprintf(headers + n, sizeof headers - (size_t)n, "Content-Type: application/octet-stream");
        else
            headers[n] = 0;
        int rc = tc_http_request(method, url, headers, body, len, r, err, errlen);
        memset(headers, 0, sizeof headers);
        if (rc != 0) return -1;
        // Payload bytes: what was uploaded, and what downloads and listings brought back.
        g->bytes += body ? len : r->body.len;
        if (r->status == 401 && attempt == 0 && g->auth != AUTH_NONE && g->auth != AUTH_STATIC) {
            g->token[0] = 0;
            continue;
        }
        return 0;
    }
}

static int gcs_status_error(const char *what, const char *key, tc_http_response *r, char *err, size_t errlen) {
    char msg[200] = "";
    tc_buf_append(&r->body, "", 1);
    if (r->body.p) tc_json_string((const char *)r->body.p, "message", msg, sizeof msg);
    return tc_fail(err, errlen, "gs: %s '%s' failed with HTTP %ld%s%s", what, key, r->status, msg[0] ? ": " : "", msg);
}

static void *gcs_open(const char *bucket, const char *s3_endpoint, const char *s3_region, char *err, size_t errlen) {
    (void)s3_endpoint;
    (void)s3_region;
    gcs_store *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    snprintf(g->bucket, sizeof g->bucket, "%s", bucket);
    const char *emulator = getenv("STORAGE_EMULATOR_HOST");
    if (emulator && emulator[0])
        snprintf(g->endpoint, sizeof g->endpoint, "%s%s", strstr(emulator, "://") ? "" : "http://", emulator);
    else
        snprintf(g->endpoint, sizeof g->endpoint, "https://storage.googleapis.com");
    size_t n = strlen(g->endpoint);
    while (n && g->endpoint[n - 1] == '/') g->endpoint[--n] = 0;

    const char *token = getenv("GOOGLE_OAUTH_ACCESS_TOKEN"), *key = getenv("GOOGLE_APPLICATION_CREDENTIALS");
    const char *metadata = getenv("GCE_METADATA_HOST");
    if (token && token[0]) {
        g->auth = AUTH_STATIC;
        snprintf(g->token, sizeof g->token, "%s", token);
    } else if (key && key[0]) {
        snprintf(g->key_file, sizeof g->key_file, "%s", key);
        tc_buf file = {0};
        char type[64] = "";
        if (read_file(key, &file) != 0) {
            tc_buf_free(&file);
            free(g);
            tc_fail(err, errlen, "gs: cannot read GOOGLE_APPLICATION_CREDENTIALS '%s'", key);
            return NULL;
        }
        tc_json_string((const char *)file.p, "type", type, sizeof type);
        memset(file.p, 0, file.len);
        tc_buf_free(&file);
        if (strcmp(type, "service_account") == 0)
            g->auth = AUTH_SERVICE_ACCOUNT;
        else if (strcmp(type, "authorized_user") == 0)
            g->auth = AUTH_REFRESH;
        else {
            free(g);
            tc_fail(err, errlen, "gs: '%s' is neither a service_account nor an authorized_user credentials file", key);
            return NULL;
        }
    } else if ((metadata && metadata[0]) || !(emulator && emulator[0])) {
        g->auth = AUTH_METADATA;
        snprintf(g->metadata_host, sizeof g->metadata_host, "%s", metadata && metadata[0] ? metadata : "metadata.google.internal");
    } else {
        g->auth = AUTH_NONE;
    }
    tc_http_global_init();
    return g;
}

static void gcs_close(void *impl) {
    gcs_store *g = impl;
    if (g) memset(g->token, 0, sizeof g->token);
    free(g);
}

static uint64_t gcs_bytes(const void *impl) { return ((const gcs_store *)impl)->bytes; }

static int gcs_put(void *impl, const char *key, const void *data, size_t len, int if_absent, size_t multipart_threshold,
                   size_t part_size, char *err, size_t errlen) {
    (void)multipart_threshold;
    (void)part_size;
    gcs_store *g = impl;
    char ekey[3 * TC_PATH_MAX], pq[4 * TC_PATH_MAX];
    tc_uri_encode(key, 0, ekey, sizeof ekey);
    snprintf(pq, sizeof pq, "/upload/storage/v1/b/%s/o?uploadType=media&name=%s%s", g->bucket, ekey,
             if_absent ? "&ifGenerationMatch=0" : "");
    tc_http_response r = {0};
    int rc = gcs_request(g, "POST", pq, NULL, data, len, &r, err, errlen);
    if (rc == 0) {
        if (r.status == 200)
            rc = 1;
        else if (if_absent && r.status == 412)
            rc = 0;
        else
            rc = gcs_status_error(if_absent ? "conditional upload of" : "upload of", key, &r, err, errlen);
    }
    tc_buf_free(&r.body);
    return rc;
}

// "/storage/v1/b/BUCKET/o/KEY" + suffix, the key URL-encoded ('/' as %2F).
static void object_path(const gcs_store *g, const char *key, const char *suffix, char *out, size_t outlen) {
    char ekey[3 * TC_PATH_MAX];
    tc_uri_encode(key, 0, ekey, sizeof ekey);
    snprintf(out, outlen, "/storage/v1/b/%s/o/%s%s", g->bucket, ekey, suffix);
}

static int gcs_get(void *impl, const char *key, uint8_t **data, size_t *len, char *err, size_t errlen) {
    gcs_store *g = impl;
    char pq[4 * TC_PATH_MAX];
    object_path(g, key, "?alt=media", pq, sizeof pq);
    tc_http_response r = {0};
    int rc = gcs_request(g, "GET", pq, NULL, NULL, 0, &r, err, errlen);
    if (rc == 0 && r.status == 200) {
        *len = r.body.len;
        *data = r.body.p ? r.body.p : malloc(1);
        return 1;
    }
    if (rc == 0) rc = r.status == 404 ? 0 : gcs_status_error("download of", key, &r, err, errlen);
    tc_buf_free(&r.body);
    return rc;
}

static int gcs_list(void *impl, const char *prefix, tc_buf *out, char *err, size_t errlen) {
    gcs_store *g = impl;
    char eprefix[3 * TC_PATH_MAX], token[1024] = "";
    tc_uri_encode(prefix, 0, eprefix, sizeof eprefix);
    for (;;) {
        char pq[8 * TC_PATH_MAX], etoken[3200];
        tc_uri_encode(token, 0, etoken, sizeof etoken);
        snprintf(pq, sizeof pq, "/storage/v1/b/%s/o?prefix=%s&fields=items(name)%%2CnextPageToken%s%s", g->bucket, eprefix,
                 token[0] ? "&pageToken=" : "", etoken);
        tc_http_response r = {0};
        if (gcs_request(g, "GET", pq, NULL, NULL, 0, &r, err, errlen) != 0) {
            tc_buf_free(&r.body);
            return -1;
        }
        if (r.status != 200) {
            gcs_status_error("listing", prefix, &r, err, errlen);
            tc_buf_free(&r.body);
            return -1;
        }
        tc_buf_append(&r.body, "", 1);
        char name[TC_PATH_MAX * 2];
        for (const char *p = (const char *)r.body.p; (p = tc_json_string(p, "name", name, sizeof name));) {
            tc_buf_append(out, name, strlen(name));
            tc_buf_append(out, "\n", 1);
        }
        int more = tc_json_string((const char *)r.body.p, "nextPageToken", token, sizeof token) != NULL && token[0];
        tc_buf_free(&r.body);
        if (!more) return 0;
    }
}

static int gcs_delete(void *impl, const char *key, char *err, size_t errlen) {
    gcs_store *g = impl;
    char pq[4 * TC_PATH_MAX];
    object_path(g, key, "", pq, sizeof pq);
    tc_http_response r = {0};
    int rc = gcs_request(g, "DELETE", pq, NULL, NULL, 0, &r, err, errlen);
    if (rc == 0 && r.status != 204 && r.status != 200 && r.status != 404) rc = gcs_status_error("delete of", key, &r, err, errlen);
    tc_buf_free(&r.body);
    return rc;
}

static int gcs_get_range(void *impl, const char *key, const char *range, tc_http_response *resp, char *err, size_t errlen) {
    char pq[4 * TC_PATH_MAX];
    object_path(impl, key, "?alt=media", pq, sizeof pq);
    return gcs_request(impl, "GET", pq, range, NULL, 0, resp, err, errlen);
}

const tc_store_backend tc_store_gcs_backend = {
    .scheme = "gs://",
    .remote = 1,
    .open = gcs_open,
    .close = gcs_close,
    .put = gcs_put,
    .get = gcs_get,
    .list = gcs_list,
    .del = gcs_delete,
    .bytes = gcs_bytes,
    .get_range = gcs_get_range,
};
