// Azure Blob Storage backend: az://account/container/prefix, or the same location written
// https://account.blob.core.windows.net/container/prefix, over the Blob service REST API.
//
// put is one Put Blob (a block blob), or above the multipart threshold Put Block for each part
// and one Put Block List; put-if-absent sends If-None-Match: * (on the Put Blob or the Put
// Block List), which Blob Storage answers with 409 BlobAlreadyExists (412 ConditionNotMet is
// read the same way). get is Get Blob, ranged reads send x-ms-range, list pages through List
// Blobs (restype=container&comp=list&prefix=P) with NextMarker, delete is Delete Blob.
//
// Endpoint: a connection string's BlobEndpoint (AZURE_STORAGE_CONNECTION_STRING), else
// DefaultEndpointsProtocol://ACCOUNT.blob.EndpointSuffix (https, core.windows.net by default).
// Credentials, first match wins:
//   AZURE_STORAGE_ACCESS_TOKEN      a bearer token used as is
//   AccountKey in the connection    SharedKey: HMAC-SHA256 of the canonical request with the
//   string, else AZURE_STORAGE_KEY  base64-decoded account key
//   AZURE_TENANT_ID, AZURE_CLIENT_ID workload identity federation: the node's identity token
//   and AZURE_FEDERATED_TOKEN_FILE  (the file, or with STRATUM_WEB_IDENTITY=gcp the GCE
//   or STRATUM_WEB_IDENTITY=gcp     metadata server's ID token for STRATUM_WEB_IDENTITY_AUDIENCE,
//                                   default api://AzureADTokenExchange) is the client assertion
//                                   of a client-credentials request for the managed identity
//                                   AZURE_CLIENT_ID to Entra (AZURE_AUTHORITY_HOST, default
//                                   https://login.microsoftonline.com)
//   otherwise                       managed identity: a token for https://storage.azure.com/
//                                   from the instance metadata service (IMDS; the host is
//                                   AZURE_POD_IDENTITY_AUTHORITY_HOST when set, AZURE_CLIENT_ID
//                                   picks a user-assigned identity)
// IMDS and federated tokens are cached until a minute before they expire and fetched again after a 401 or
// 403. Keys and tokens never appear in error messages.
#include "internal.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum { AZ_AUTH_STATIC, AZ_AUTH_SHARED_KEY, AZ_AUTH_IMDS, AZ_AUTH_FEDERATED };

#define AZ_VERSION "2021-12-02"

typedef struct {
    char endpoint[512];  // scheme://host[:port][/path], no trailing '/'
    char account[256];
    char container[256];
    int auth;
    unsigned char key[128];
    int keylen;
    char imds[256];
    char client_id[256];
    // Workload identity federation: the tenant, Entra's host and where the assertion comes from.
    char tenant[128];
    char authority[256];
    char assertion_source[16];
    char assertion_file[1024];
    char metadata[256];
    char audience[256];
    char assertion_client[128];
    char token[8192];
    double token_expires;  // tc_now() seconds; 0 = never fetched
    uint64_t bytes;
} az_store;

// ------------------------------------------------------------------------------------------
// Small text helpers

// The value of "name=" in a connection string ("A=1;B=2"), or "" when absent.
static void conn_field(const char *conn, const char *name, char *out, size_t outlen) {
    out[0] = 0;
    size_t nl = strlen(name);
    for (const char *p = conn; p && *p;) {
        while (*p == ';' || *p == ' ') p++;
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nl && strncasecmp(p, name, nl) == 0 && p[nl] == '=') {
            snprintf(out, outlen, "%.*s", (int)(len - nl - 1), p + nl + 1);
            return;
        }
        p = end;
    }
}

// The text of the first <tag>...</tag> at or after p, XML entities decoded; the position after
// it, or NULL.
static const char *xml_text(const char *p, const char *tag, char *out, size_t outlen) {
    char open[64], close[64];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *s = p ? strstr(p, open) : NULL;
    if (!s) return NULL;
    s += strlen(open);
    const char *e = strstr(s, close);
    if (!e) return NULL;
    static const struct { const char *entity, c; } entities[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    size_t o = 0;
    for (const char *c = s; c < e; c++) {
        char ch = *c;
        for (size_t i = 0; i < sizeof entities / sizeof entities[0]; i++)
            if (strncmp(c, entities[i].entity, strlen(entities[i].entity)) == 0) {
                ch = entities[i].c;
                c += strlen(entities[i].entity) - 1;
                break;
            }
        if (o + 1 < outlen) out[o++] = ch;
    }
    if (outlen) out[o] = 0;
    return e + strlen(close);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void uri_decode(const char *s, size_t len, char *out, size_t outlen) {
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < outlen; i++) {
        if (s[i] == '%' && i + 2 < len + 0 && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// ------------------------------------------------------------------------------------------
// SharedKey

// Appends "\nname:value" for each query parameter, sorted by name, values decoded.
static void canonical_query(const char *query, tc_buf *out) {
    char *items[64];
    int n = 0;
    for (const char *p = query; p && *p && n < 64;) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t nlen = eq ? (size_t)(eq - p) : len;
        char *item = malloc(len + 2);
        if (!item) break;
        for (size_t i = 0; i < nlen; i++) item[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
        item[nlen] = ':';
        if (eq)
            uri_decode(eq + 1, len - nlen - 1, item + nlen + 1, len - nlen + 1);
        else
            item[nlen + 1] = 0;
        items[n++] = item;
        p = end ? end + 1 : NULL;
    }
    qsort(items, (size_t)n, sizeof items[0], cmp_str);
    for (int i = 0; i < n; i++) {
        tc_buf_append(out, "\n", 1);
        tc_buf_append(out, items[i], strlen(items[i]));
        free(items[i]);
    }
}

// The value of header `name` in "Name: value\n" lines, or "".
static void header_value(const char *lines, const char *name, char *out, size_t outlen) {
    out[0] = 0;
    size_t nl = strlen(name);
    for (const char *p = lines; p && *p;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ') v++;
            snprintf(out, outlen, "%.*s", (int)(len - (size_t)(v - p)), v);
            return;
        }
        p = end ? end + 1 : NULL;
    }
}

// "Authorization: SharedKey account:signature" for a request whose headers are `lines`
// ("Name: value\n"; the x-ms-* ones lower-case), `path` the URL path as sent, `query` without '?'.
static int shared_key(const az_store *a, const char *method, const char *path, const char *query, const char *lines,
                      size_t body_len, char *out, size_t outlen) {
    tc_buf s = {0};
    tc_buf_append(&s, method, strlen(method));
    tc_buf_append(&s, "\n", 1);
    static const char *const standard[] = {"Content-Encoding", "Content-Language", "Content-Length", "Content-MD5",
                                           "Content-Type", "Date", "If-Modified-Since", "If-Match",
                                           "If-None-Match", "If-Unmodified-Since", "Range"};
    for (size_t i = 0; i < sizeof standard / sizeof standard[0]; i++) {
        char v[512];
        if (strcmp(standard[i], "Content-Length") == 0) {
            v[0] = 0;  // empty for 0 (versions since 2015-02-21)
            if (body_len) snprintf(v, sizeof v, "%zu", body_len);
        } else
            header_value(lines, standard[i], v, sizeof v);
        tc_buf_append(&s, v, strlen(v));
        tc_buf_append(&s, "\n", 1);
    }
    char *ms[32];
    int n = 0;
    for (const char *p = lines; p && *p && n < 32;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 5 && strncmp(p, "x-ms-", 5) == 0) {
            char *h = malloc(len + 1);
            const char *colon = memchr(p, ':', len);
            if (!h || !colon) {
                free(h);
                break;
            }
            const char *v = colon + 1;
            while (*v == ' ') v++;
            snprintf(h, len + 1, "%.*s:%.*s", (int)(colon - p), p, (int)(len - (size_t)(v - p)), v);
            ms[n++] = h;
        }
        p = end ? end + 1 : NULL;
    }
    qsort(ms, (size_t)n, sizeof ms[0], cmp_str);
    for (int i = 0; i < n; i++) {
        tc_buf_append(&s, ms[i], strlen(ms[i]));
        tc_buf_append(&s, "\n", 1);
        free(ms[i]);
    }
    tc_buf_append(&s, "/", 1);
    tc_buf_append(&s, a->account, strlen(a->account));
    tc_buf_append(&s, path, strlen(path));
    canonical_query(query, &s);
    unsigned char mac[32];
    unsigned int maclen = sizeof mac;
    HMAC(EVP_sha256(), a->key, a->keylen, s.p, s.len, mac, &maclen);
    tc_buf_free(&s);
    unsigned char b64[64];
    EVP_EncodeBlock(b64, mac, (int)maclen);
    int w = snprintf(out, outlen, "Authorization: SharedKey %s:%s\n", a->account, b64);
    return w > 0 && (size_t)w < outlen ? 0 : -1;
}

// ------------------------------------------------------------------------------------------
// Managed identity

// Makes sure a->token is fresh (managed identity only). 0 or -1 with err.
// A token for Blob Storage from Entra, for the managed identity a->client_id, whose federated
// credential trusts the node's identity token (the client assertion). 0 or -1 with err.
static int federated_token(az_store *a, char *err, size_t errlen) {
    char assertion[8192];
    tc_identity_source source = {a->assertion_source, a->assertion_file, a->metadata, a->audience, a->assertion_client};
    if (tc_identity_token(&source, assertion, sizeof assertion, err, errlen) != 0) return -1;
    char eclient[800], form[1200];
    tc_uri_encode(a->client_id, 0, eclient, sizeof eclient);
    snprintf(form, sizeof form,
             "grant_type=client_credentials&client_id=%s&scope=https%%3A%%2F%%2Fstorage.azure.com%%2F.default"
             "&client_assertion_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Aclient-assertion-type%%3Ajwt-bearer&client_assertion=",
             eclient);
    char url[512];
    snprintf(url, sizeof url, "%s/%s/oauth2/v2.0/token", a->authority, a->tenant);
    tc_http_response r = {0};
    int rc = tc_exchange_token(url, form, assertion, &r, err, errlen);
    memset(assertion, 0, sizeof assertion);
    if (rc == 0) {
        const char *answer = (const char *)r.body.p;
        if (r.status != 200 || !tc_json_string(answer, "access_token", a->token, sizeof a->token)) {
            char code[200] = "";
            tc_json_string(answer, "error", code, sizeof code);
            rc = tc_fail(err, errlen, "az: Entra at %s refused the federated token request for %s with HTTP %ld%s%s", url, a->client_id, r.status,
                         code[0] ? ": " : "", code);
            a->token[0] = 0;
        } else {
            a->token_expires = tc_now() + (double)tc_json_long(answer, "expires_in", 3600) - 60;
        }
    }
    if (r.body.p) memset(r.body.p, 0, r.body.len);
    tc_buf_free(&r.body);
    return rc;
}

static int ensure_token(az_store *a, char *err, size_t errlen) {
    if ((a->auth != AZ_AUTH_IMDS && a->auth != AZ_AUTH_FEDERATED) || (a->token[0] && tc_now() < a->token_expires)) return 0;
    if (a->auth == AZ_AUTH_FEDERATED) return federated_token(a, err, errlen);
    char url[1024], cid[800] = "";
    if (a->client_id[0]) {
        char e[700];
        tc_uri_encode(a->client_id, 0, e, sizeof e);
        snprintf(cid, sizeof cid, "&client_id=%s", e);
    }
    snprintf(url, sizeof url,
             "%s/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%%3A%%2F%%2Fstorage.azure.com%%2F%s",
             a->imds, cid);
    tc_http_response r = {0};
    int rc = tc_http_request("GET", url, "Metadata: true", NULL, 0, &r, err, errlen);
    if (rc == 0) {
        tc_buf_append(&r.body, "", 1);
        const char *body = (const char *)r.body.p;
        if (r.status != 200 || !tc_json_string(body, "access_token", a->token, sizeof a->token)) {
            rc = tc_fail(err, errlen, "az: managed identity token request to %s/metadata/identity/oauth2/token failed with HTTP %ld",
                         a->imds, r.status);
            a->token[0] = 0;
        } else {
            a->token_expires = tc_now() + (double)tc_json_long(body, "expires_in", 3600) - 60;
        }
    }
    if (r.body.p) memset(r.body.p, 0, r.body.len);
    tc_buf_free(&r.body);
    return rc;
}

// ------------------------------------------------------------------------------------------
// Requests

// One authorised request. `path` is the encoded path below the endpoint ("/container/blob"),
// `query` the query without '?' (or ""), `extra` more "Name: value\n" headers (x-ms-* ones in
// lower case). A 401/403 with a managed-identity token fetches a new token and tries once more.
static int az_request(az_store *a, const char *method, const char *path, const char *query, const char *extra,
                      const void *body, size_t len, tc_http_response *r, char *err, size_t errlen) {
    char url[TC_PATH_MAX * 8];
    snprintf(url, sizeof url, "%s%s%s%s", a->endpoint, path, query[0] ? "?" : "", query);
    // The path as sent: the endpoint's own path (an emulator's /account) and then ours.
    const char *host = strstr(a->endpoint, "://");
    const char *epath = host ? strchr(host + 3, '/') : NULL;
    char full_path[TC_PATH_MAX * 4];
    snprintf(full_path, sizeof full_path, "%s%s", epath ? epath : "", path);
    for (int attempt = 0;; attempt++) {
        if (ensure_token(a, err, errlen) != 0) return -1;
        char date[64];
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        tc_buf h = {0};
        char line[600];
        int n = snprintf(line, sizeof line, "x-ms-date: %s\nx-ms-version: " AZ_VERSION "\n%s", date,
                         body || strcmp(method, "PUT") == 0 ? "Content-Type: application/octet-stream\n" : "");
        tc_buf_append(&h, line, (size_t)n);
        if (extra) tc_buf_append(&h, extra, strlen(extra));
        tc_buf_append(&h, "", 1);
        char auth[sizeof a->token + 64];
        if (a->auth == AZ_AUTH_SHARED_KEY) {
            if (shared_key(a, method, full_path, query, (const char *)h.p, len, auth, sizeof auth) != 0) {
                tc_buf_free(&h);
                return tc_fail(err, errlen, "az: cannot sign the request for '%s'", path);
            }
        } else {
            snprintf(auth, sizeof auth, "Authorization: Bearer %s\n", a->token);
        }
        h.len--;  // drop the NUL, then the Authorization line
        tc_buf_append(&h, auth, strlen(auth));
        tc_buf_append(&h, "", 1);
        memset(auth, 0, sizeof auth);
        int rc = tc_http_request(method, url, (const char *)h.p, body, len, r, err, errlen);
        memset(h.p, 0, h.len);
        tc_buf_free(&h);
        if (rc != 0) return -1;
        // Payload bytes: what was uploaded, and what downloads and listings brought back.
        a->bytes += body ? len : r->body.len;
        if ((r->status == 401 || r->status == 403) && attempt == 0 && (a->auth == AZ_AUTH_IMDS || a->auth == AZ_AUTH_FEDERATED)) {
            a->token[0] = 0;
            continue;
        }
        return 0;
    }
}

static int az_status_error(const char *what, const char *key, tc_http_response *r, char *err, size_t errlen) {
    char code[128] = "", msg[300] = "";
    tc_buf_append(&r->body, "", 1);
    if (r->body.p) {
        xml_text((const char *)r->body.p, "Code", code, sizeof code);
        xml_text((const char *)r->body.p, "Message", msg, sizeof msg);
        char *nl = strchr(msg, '\n');  // the service appends "\nRequestId:...\nTime:..."
        if (nl) *nl = 0;
    }
    return tc_fail(err, errlen, "az: %s '%s' failed with HTTP %ld%s%s%s%s", what, key, r->status, code[0] ? " " : "", code,
                   msg[0] ? ": " : "", msg);
}

// "/container/KEY" with the key URL-encoded ('/' kept).
static void blob_path(const az_store *a, const char *key, char *out, size_t outlen) {
    char ekey[3 * TC_PATH_MAX];
    tc_uri_encode(key, 1, ekey, sizeof ekey);
    snprintf(out, outlen, "/%s/%s", a->container, ekey);
}

// Workload identity federation from the environment: 1 when AZURE_TENANT_ID, AZURE_CLIENT_ID and
// an identity token (AZURE_FEDERATED_TOKEN_FILE, or STRATUM_WEB_IDENTITY=gcp) are there.
static int federated_from_environment(az_store *a) {
    const char *tenant = getenv("AZURE_TENANT_ID"), *cid = getenv("AZURE_CLIENT_ID"), *file = getenv("AZURE_FEDERATED_TOKEN_FILE");
    const char *source = getenv("STRATUM_WEB_IDENTITY"), *authority = getenv("AZURE_AUTHORITY_HOST");
    if (!tenant || !tenant[0] || !cid || !cid[0]) return 0;
    if (!(file && file[0]) && !(source && strcmp(source, "gcp") == 0)) return 0;
    snprintf(a->tenant, sizeof a->tenant, "%s", tenant);
    snprintf(a->client_id, sizeof a->client_id, "%s", cid);
    snprintf(a->authority, sizeof a->authority, "%s", authority && authority[0] ? authority : "https://login.microsoftonline.com");
    size_t n = strlen(a->authority);
    while (n && a->authority[n - 1] == '/') a->authority[--n] = 0;
    tc_identity_from_environment(file, "gcp", "api://AzureADTokenExchange", a->assertion_source, a->assertion_file, a->metadata, a->audience,
                                 a->assertion_client);
    return 1;
}

static void *az_open(const char *location, const char *s3_endpoint, const char *s3_region, char *err, size_t errlen) {
    (void)s3_endpoint;
    (void)s3_region;
    const char *slash = strchr(location, '/');
    if (!slash || slash == location || !slash[1]) {
        tc_fail(err, errlen, "az: '%s' must be account/container", location);
        return NULL;
    }
    az_store *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    snprintf(a->account, sizeof a->account, "%.*s", (int)(slash - location), location);
    snprintf(a->container, sizeof a->container, "%s", slash + 1);
    const char *conn = getenv("AZURE_STORAGE_CONNECTION_STRING");
    char name[256], blob_endpoint[512], protocol[16], suffix[128], key[256];
    conn_field(conn, "AccountName", name, sizeof name);
    conn_field(conn, "BlobEndpoint", blob_endpoint, sizeof blob_endpoint);
    conn_field(conn, "DefaultEndpointsProtocol", protocol, sizeof protocol);
    conn_field(conn, "EndpointSuffix", suffix, sizeof suffix);
    conn_field(conn, "AccountKey", key, sizeof key);
    if (name[0] && strcmp(name, a->account) != 0) {
        tc_fail(err, errlen, "az: AZURE_STORAGE_CONNECTION_STRING is for account '%s', the store is in account '%s'", name,
                a->account);
        memset(key, 0, sizeof key);
        free(a);
        return NULL;
    }
    if (blob_endpoint[0])
        snprintf(a->endpoint, sizeof a->endpoint, "%s", blob_endpoint);
    else
        snprintf(a->endpoint, sizeof a->endpoint, "%s://%s.blob.%s", protocol[0] ? protocol : "https", a->account,
                 suffix[0] ? suffix : "core.windows.net");
    size_t n = strlen(a->endpoint);
    while (n && a->endpoint[n - 1] == '/') a->endpoint[--n] = 0;

    const char *token = getenv("AZURE_STORAGE_ACCESS_TOKEN"), *env_key = getenv("AZURE_STORAGE_KEY");
    if (!key[0] && env_key) snprintf(key, sizeof key, "%s", env_key);
    if (token && token[0]) {
        a->auth = AZ_AUTH_STATIC;
        snprintf(a->token, sizeof a->token, "%s", token);
    } else if (key[0]) {
        a->auth = AZ_AUTH_SHARED_KEY;
        size_t kl = strlen(key);
        unsigned char decoded[sizeof key];
        int dl = kl % 4 == 0 && kl / 4 * 3 <= sizeof a->key ? EVP_DecodeBlock(decoded, (const unsigned char *)key, (int)kl) : -1;
        if (dl <= 0) {
            tc_fail(err, errlen, "az: the storage account key is not base64");
            memset(key, 0, sizeof key);
            free(a);
            return NULL;
        }
        while (kl && key[kl - 1] == '=') {  // EVP_DecodeBlock counts padding as zero bytes
            kl--;
            dl--;
        }
        memcpy(a->key, decoded, (size_t)dl);
        a->keylen = dl;
        memset(decoded, 0, sizeof decoded);
    } else if (federated_from_environment(a)) {
        a->auth = AZ_AUTH_FEDERATED;
    } else {
        a->auth = AZ_AUTH_IMDS;
        const char *imds = getenv("AZURE_POD_IDENTITY_AUTHORITY_HOST"), *cid = getenv("AZURE_CLIENT_ID");
        snprintf(a->imds, sizeof a->imds, "%s", imds && imds[0] ? imds : "http://169.254.169.254");
        size_t il = strlen(a->imds);
        while (il && a->imds[il - 1] == '/') a->imds[--il] = 0;
        if (cid) snprintf(a->client_id, sizeof a->client_id, "%s", cid);
    }
    memset(key, 0, sizeof key);
    tc_http_global_init();
    return a;
}

static void az_close(void *impl) {
    az_store *a = impl;
    if (a) memset(a, 0, sizeof *a);
    free(a);
}

static uint64_t az_bytes(const void *impl) { return ((const az_store *)impl)->bytes; }

// The answer to a (conditional) write: 1 written, 0 exists (if_absent), -1 error.
static int write_result(const char *what, const char *key, int if_absent, tc_http_response *r, char *err, size_t errlen) {
    if (r->status == 201) return 1;
    if (if_absent && (r->status == 409 || r->status == 412)) return 0;
    return az_status_error(what, key, r, err, errlen);
}

static int put_blocks(az_store *a, const char *key, const char *path, const uint8_t *data, size_t len, int if_absent,
                      size_t part_size, char *err, size_t errlen) {
    tc_buf list = {0};
    static const char head[] = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>";
    tc_buf_append(&list, head, sizeof head - 1);
    tc_http_response r = {0};
    int rc = 1, block = 0;
    for (size_t off = 0; off < len && rc == 1; off += part_size, block++) {
        size_t n = len - off < part_size ? len - off : part_size;
        char raw[32], id[64], eid[128], query[200];
        snprintf(raw, sizeof raw, "stratum-block-%08d", block);  // every id of a blob has the same length
        EVP_EncodeBlock((unsigned char *)id, (const unsigned char *)raw, (int)strlen(raw));
        tc_uri_encode(id, 0, eid, sizeof eid);
        snprintf(query, sizeof query, "comp=block&blockid=%s", eid);
        if (az_request(a, "PUT", path, query, NULL, data + off, n, &r, err, errlen) != 0)
            rc = -1;
        else if (r.status != 201)
            rc = az_status_error("Put Block of", key, &r, err, errlen);
        char xml[128];
        int xl = snprintf(xml, sizeof xml, "<Latest>%s</Latest>", id);
        tc_buf_append(&list, xml, (size_t)xl);
    }
    tc_buf_append(&list, "</BlockList>", 12);
    if (rc == 1) {
        if (az_request(a, "PUT", path, "comp=blocklist", if_absent ? "If-None-Match: *\n" : NULL, list.p, list.len, &r, err,
                       errlen) != 0)
            rc = -1;
        else
            rc = write_result(if_absent ? "conditional Put Block List of" : "Put Block List of", key, if_absent, &r, err, errlen);
    }
    tc_buf_free(&list);
    tc_buf_free(&r.body);
    return rc;
}

static int az_put(void *impl, const char *key, const void *data, size_t len, int if_absent, size_t multipart_threshold,
                  size_t part_size, char *err, size_t errlen) {
    az_store *a = impl;
    char path[4 * TC_PATH_MAX];
    blob_path(a, key, path, sizeof path);
    if (len >= multipart_threshold && len > part_size && part_size > 0)
        return put_blocks(a, key, path, data, len, if_absent, part_size, err, errlen);
    tc_http_response r = {0};
    int rc = az_request(a, "PUT", path, "", if_absent ? "x-ms-blob-type: BlockBlob\nIf-None-Match: *\n" : "x-ms-blob-type: BlockBlob\n",
                        data, len, &r, err, errlen);
    if (rc == 0) rc = write_result(if_absent ? "conditional Put Blob of" : "Put Blob of", key, if_absent, &r, err, errlen);
    tc_buf_free(&r.body);
    return rc;
}

static int az_get(void *impl, const char *key, uint8_t **data, size_t *len, char *err, size_t errlen) {
    az_store *a = impl;
    char path[4 * TC_PATH_MAX];
    blob_path(a, key, path, sizeof path);
    tc_http_response r = {0};
    int rc = az_request(a, "GET", path, "", NULL, NULL, 0, &r, err, errlen);
    if (rc == 0 && r.status == 200) {
        *len = r.body.len;
        *data = r.body.p ? r.body.p : malloc(1);
        return 1;
    }
    if (rc == 0) rc = r.status == 404 ? 0 : az_status_error("Get Blob of", key, &r, err, errlen);
    tc_buf_free(&r.body);
    return rc;
}

static int az_list(void *impl, const char *prefix, tc_buf *out, char *err, size_t errlen) {
    az_store *a = impl;
    char eprefix[3 * TC_PATH_MAX], marker[1024] = "", path[300];
    tc_uri_encode(prefix, 0, eprefix, sizeof eprefix);
    snprintf(path, sizeof path, "/%s", a->container);
    for (;;) {
        char query[8 * TC_PATH_MAX], emarker[3200];
        tc_uri_encode(marker, 0, emarker, sizeof emarker);
        snprintf(query, sizeof query, "restype=container&comp=list&prefix=%s%s%s", eprefix, marker[0] ? "&marker=" : "", emarker);
        tc_http_response r = {0};
        if (az_request(a, "GET", path, query, NULL, NULL, 0, &r, err, errlen) != 0) {
            tc_buf_free(&r.body);
            return -1;
        }
        if (r.status != 200) {
            az_status_error("List Blobs of", prefix, &r, err, errlen);
            tc_buf_free(&r.body);
            return -1;
        }
        tc_buf_append(&r.body, "", 1);
        const char *blobs = strstr((const char *)r.body.p, "<Blobs>");
        char name[TC_PATH_MAX * 2];
        for (const char *p = blobs; (p = xml_text(p, "Name", name, sizeof name));) {
            tc_buf_append(out, name, strlen(name));
            tc_buf_append(out, "\n", 1);
        }
        marker[0] = 0;
        xml_text(strstr((const char *)r.body.p, "</Blobs>"), "NextMarker", marker, sizeof marker);
        tc_buf_free(&r.body);
        if (!marker[0]) return 0;
    }
}

static int az_delete(void *impl, const char *key, char *err, size_t errlen) {
    az_store *a = impl;
    char path[4 * TC_PATH_MAX];
    blob_path(a, key, path, sizeof path);
    tc_http_response r = {0};
    int rc = az_request(a, "DELETE", path, "", NULL, NULL, 0, &r, err, errlen);
    if (rc == 0 && r.status != 202 && r.status != 200 && r.status != 404) rc = az_status_error("Delete Blob of", key, &r, err, errlen);
    tc_buf_free(&r.body);
    return rc;
}

static int az_get_range(void *impl, const char *key, const char *range, tc_http_response *resp, char *err, size_t errlen) {
    char path[4 * TC_PATH_MAX], header[160];
    blob_path(impl, key, path, sizeof path);
    snprintf(header, sizeof header, "x-ms-range: %s\n", range);
    return az_request(impl, "GET", path, "", header, NULL, 0, resp, err, errlen);
}

const tc_store_backend tc_store_azure_backend = {
    .scheme = "az://",
    .segments = 2,
    .https_host_suffix = ".blob.core.windows.net",
    .remote = 1,
    .open = az_open,
    .close = az_close,
    .put = az_put,
    .get = az_get,
    .list = az_list,
    .del = az_delete,
    .bytes = az_bytes,
    .get_range = az_get_range,
};
