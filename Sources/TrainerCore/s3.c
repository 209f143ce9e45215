// HTTP through libcurl, and an S3 client signed with AWS Signature Version 4 (OpenSSL).
//
// Path-style addressing (endpoint/bucket/key) when an endpoint is configured, so local
// emulators work; virtual-hosted style (bucket.s3.region.amazonaws.com) otherwise.
// Credentials, first found wins: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN;
// a web identity (AWS_ROLE_ARN with a token from AWS_WEB_IDENTITY_TOKEN_FILE, or from the GCE
// metadata server or Azure IMDS when STRATUM_WEB_IDENTITY is gcp or azure) exchanged with STS
// AssumeRoleWithWebIdentity; the instance role's keys from IMDSv2.
#define _GNU_SOURCE  // strcasestr
#include "internal.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }
void tc_http_global_init(void) { pthread_once(&curl_once, curl_init_once); }

static void hex(const unsigned char *d, size_t n, char *out) {
    static const char *digits = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = 0;
}

void tc_sha256_hex(const void *data, size_t len, char out[65]) {
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    hex(md, 32, out);
}

static void hmac(const void *key, size_t keylen, const char *msg, unsigned char out[32]) {
    unsigned int n = 32;
    HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out, &n);
}

int tc_sigv4_authorization(const char *method, const char *canonical_uri, const char *canonical_query,
                           const char *headers, const char *signed_headers, const char *payload_hash,
                           const char *amz_date, const char *region, const char *service, const char *access_key,
                           const char *secret_key, char *out, size_t outlen) {
    if (strlen(amz_date) != 16) return -1;
    char date[9];
    memcpy(date, amz_date, 8);
    date[8] = 0;
    tc_buf creq = {0};
    const char *parts[] = {method, "\n", canonical_uri, "\n", canonical_query, "\n", headers, "\n\n",
                           signed_headers, "\n", payload_hash};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if (tc_buf_append(&creq, parts[i], strlen(parts[i])) != 0) return -1;
    char creq_hash[65];
    tc_sha256_hex(creq.p, creq.len, creq_hash);
    tc_buf_free(&creq);

    char scope[256], to_sign[512], kbuf[256];
    snprintf(scope, sizeof scope, "%s/%s/%s/aws4_request", date, region, service);
    snprintf(to_sign, sizeof to_sign, "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope, creq_hash);
    snprintf(kbuf, sizeof kbuf, "AWS4%s", secret_key);
    unsigned char k1[32], k2[32], k3[32], k4[32], sig[32];
    hmac(kbuf, strlen(kbuf), date, k1);
    hmac(k1, 32, region, k2);
    hmac(k2, 32, service, k3);
    hmac(k3, 32, "aws4_request", k4);
    hmac(k4, 32, to_sign, sig);
    char sighex[65];
    hex(sig, 32, sighex);
    int n = snprintf(out, outlen, "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s", access_key, scope,
                     signed_headers, sighex);
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}

void tc_uri_encode(const char *s, int keep_slash, char *out, size_t outlen) {
    size_t o = 0;
    for (; *s && o + 4 < outlen; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
            c == '.' || c == '~' || (keep_slash && c == '/'))
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, outlen - o, "%%%02X", c);
    }
    out[o] = 0;
}

// ------------------------------------------------------------------------------------------
// libcurl plumbing

static size_t on_body(char *p, size_t size, size_t n, void *arg) {
    tc_buf *b = arg;
    return tc_buf_append(b, p, size * n) == 0 ? size * n : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg) {
    tc_http_response *r = arg;
    size_t len = size * n;
    char line[512];
    size_t m = len < sizeof line - 1 ? len : sizeof line - 1;
    memcpy(line, p, m);
    line[m] = 0;
    while (m && (line[m - 1] == '\r' || line[m - 1] == '\n')) line[--m] = 0;
    if (strncasecmp(line, "content-range:", 14) == 0) {
        const char *v = line + 14;
        while (*v == ' ') v++;
        snprintf(r->content_range, sizeof r->content_range, "%.127s", v);
    } else if (strncasecmp(line, "etag:", 5) == 0) {
        const char *v = line + 5;
        while (*v == ' ') v++;
        snprintf(r->etag, sizeof r->etag, "%.255s", v);
    }
    return len;
}

// One request with retries on connection failures and 5xx answers.
static int http_do(const char *method, const char *url, struct curl_slist *hdrs, const void *body, size_t body_len,
                   tc_http_response *resp, char *err, size_t errlen) {
    tc_http_global_init();
    for (int attempt = 0;; attempt++) {
        CURL *h = curl_easy_init();
        if (!h) return tc_fail(err, errlen, "cannot create an HTTP handle");
        tc_buf_free(&resp->body);
        resp->content_range[0] = resp->etag[0] = 0;
        char cerr[CURL_ERROR_SIZE] = {0};
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp->body);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, resp);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
        if (strcmp(method, "HEAD") == 0)
            curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        else if (strcmp(method, "GET") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        if (body || strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? (const char *)body : "");
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        }
        CURLcode rc = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(h);
        resp->status = status;
        int transient = rc == CURLE_COULDNT_CONNECT || rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_RECV_ERROR ||
                        rc == CURLE_SEND_ERROR || rc == CURLE_GOT_NOTHING || (rc == CURLE_OK && status >= 500);
        if (transient && attempt < 2) {
            usleep((useconds_t)(200000 << attempt));  // a real network wait, not a test sleep
            continue;
        }
        if (rc != CURLE_OK) return tc_fail(err, errlen, "%s", cerr[0] ? cerr : curl_easy_strerror(rc));
        return 0;
    }
}

// Appends "Name: value" lines separated by '\n' to a curl header list.
static struct curl_slist *append_header_lines(struct curl_slist *h, const char *lines) {
    char line[4096];
    for (const char *p = lines; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len && len < sizeof line) {
            memcpy(line, p, len);
            line[len] = 0;
            h = curl_slist_append(h, line);
        }
        p += len + (e ? 1 : 0);
    }
    return h;
}

int tc_http_request(const char *method, const char *url, const char *headers, const void *body, size_t body_len,
                    tc_http_response *resp, char *err, size_t errlen) {
    struct curl_slist *h = append_header_lines(curl_slist_append(NULL, "Expect:"), headers);
    int rc = http_do(method, url, h, body, body_len, resp, err, errlen);
    curl_slist_free_all(h);
    return rc;
}

int tc_http_get(const char *url, const char *range, tc_http_response *resp, char *err, size_t errlen) {
    struct curl_slist *h = NULL;
    char line[128];
    if (range) {
        snprintf(line, sizeof line, "Range: %s", range);
        h = curl_slist_append(h, line);
    }
    int rc = http_do("GET", url, h, NULL, 0, resp, err, errlen);
    curl_slist_free_all(h);
    return rc;
}

// ------------------------------------------------------------------------------------------
// S3

struct tc_s3 {
    char endpoint[256];  // scheme://host[:port] without a trailing slash
    char host[256];
    char region[64];
    char bucket[256];
    int path_style;
    uint64_t bytes;
    // Credentials: static keys from the environment, or temporary keys (a web identity's
    // through STS, or the instance role's from IMDSv2), fetched again before they expire.
    enum { TC_S3_STATIC, TC_S3_ROLE, TC_S3_WEB_IDENTITY } from;
    char imds[256];
    // Web identity: the role, where its token comes from, and STS.
    char role_arn[300];
    char session_name[64];
    char token_file[1024];
    char token_source[16];  // "file", "gcp", "azure"
    char audience[256];
    char client_id[128];
    char metadata[256];  // scheme://host[:port] of the GCE metadata server or Azure IMDS
    char sts[256];
    char key_id[256];
    char secret[256];
    char token[4096];
    double refresh_at;  // tc_now() at which the role's keys are fetched again
};

// How long before their expiry a role's keys are replaced.
#define TC_S3_ROLE_MARGIN_SECONDS 300.0

// "2026-11-29T03:00:00Z" as seconds since the epoch; -1 when it is not such a date.
static double parse_expiration(const char *text) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end) return -1;
    return (double)timegm(&tm);
}

// Temporary keys expiring at `expiration` (an hour from now when NULL or unreadable) are
// fetched again once within the margin of expiry: at once, for keys that close.
static void schedule_refresh(tc_s3 *s, const char *expiration) {
    double expires = expiration ? parse_expiration(expiration) : -1;
    double left = expires < 0 ? 3600.0 : expires - (double)time(NULL);
    s->refresh_at = tc_now() + (left > TC_S3_ROLE_MARGIN_SECONDS ? left - TC_S3_ROLE_MARGIN_SECONDS : 0.0);
}

// One IMDSv2 call: GET (or PUT for the session token) of `path` below the metadata endpoint.
static int imds_call(const tc_s3 *s, const char *method, const char *path, const char *headers, tc_http_response *r, char *err,
                     size_t errlen) {
    char url[512];
    snprintf(url, sizeof url, "%s%s", s->imds, path);
    memset(r, 0, sizeof *r);
    int rc = tc_http_request(method, url, headers, NULL, 0, r, err, errlen);
    if (rc == 0) tc_buf_append(&r->body, "", 1);
    if (rc == 0 && r->status != 200) rc = tc_fail(err, errlen, "s3: the instance metadata service answered HTTP %ld to %s %s", r->status, method, path);
    return rc;
}

// Fetches the instance role's keys through IMDSv2 (a session token, the role's name, its
// keys) and schedules the next fetch before they expire.
static int fetch_role_credentials(tc_s3 *s, char *err, size_t errlen) {
    tc_http_response r;
    char session[256] = "", headers[400], role[256] = "", path[512];
    int rc = imds_call(s, "PUT", "/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds: 21600", &r, err, errlen);
    if (rc == 0) snprintf(session, sizeof session, "%s", (const char *)r.body.p);
    tc_buf_free(&r.body);
    if (rc != 0) return rc;
    snprintf(headers, sizeof headers, "X-aws-ec2-metadata-token: %s", session);
    rc = imds_call(s, "GET", "/latest/meta-data/iam/security-credentials/", headers, &r, err, errlen);
    if (rc == 0) {
        snprintf(role, sizeof role, "%s", (const char *)r.body.p);
        role[strcspn(role, "\r\n")] = 0;
    }
    tc_buf_free(&r.body);
    if (rc != 0) return rc;
    if (!role[0]) return tc_fail(err, errlen, "s3: the instance has no role (no instance profile) to read S3 with");
    snprintf(path, sizeof path, "/latest/meta-data/iam/security-credentials/%s", role);
    rc = imds_call(s, "GET", path, headers, &r, err, errlen);
    if (rc == 0) {
        const char *json = (const char *)r.body.p;
        char expiration[64] = "";
        if (!tc_json_string(json, "AccessKeyId", s->key_id, sizeof s->key_id) ||
            !tc_json_string(json, "SecretAccessKey", s->secret, sizeof s->secret) || !tc_json_string(json, "Token", s->token, sizeof s->token)) {
            rc = tc_fail(err, errlen, "s3: the credentials of role '%s' from the instance metadata service lack a field", role);
        } else {
            schedule_refresh(s, tc_json_string(json, "Expiration", expiration, sizeof expiration) ? expiration : NULL);
        }
    }
    if (r.body.p) memset(r.body.p, 0, r.body.len);
    tc_buf_free(&r.body);
    return rc;
}

// The text of <tag>…</tag> in xml, into out; 0 when it is not there.
static int xml_text(const char *xml, const char *tag, char *out, size_t outlen) {
    char open[64], close[64];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *b = strstr(xml, open);
    if (!b) return 0;
    b += strlen(open);
    const char *e = strstr(b, close);
    if (!e || (size_t)(e - b) >= outlen) return 0;
    snprintf(out, outlen, "%.*s", (int)(e - b), b);
    return 1;
}

// Exchanges the node's identity token for the role's keys (STS AssumeRoleWithWebIdentity, an
// unsigned call) and schedules the next exchange before they expire.
static int fetch_web_identity_credentials(tc_s3 *s, char *err, size_t errlen) {
    char token[8192];
    tc_identity_source source = {s->token_source, s->token_file, s->metadata, s->audience, s->client_id};
    if (tc_identity_token(&source, token, sizeof token, err, errlen) != 0) return -1;
    char erole[1000], esession[200], form[1400];
    tc_uri_encode(s->role_arn, 0, erole, sizeof erole);
    tc_uri_encode(s->session_name, 0, esession, sizeof esession);
    snprintf(form, sizeof form, "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&DurationSeconds=3600&RoleArn=%s&RoleSessionName=%s&WebIdentityToken=",
             erole, esession);
    char url[300];
    snprintf(url, sizeof url, "%s/", s->sts);
    tc_http_response r = {0};
    int rc = tc_exchange_token(url, form, token, &r, err, errlen);
    memset(token, 0, sizeof token);
    if (rc == 0) {
        const char *xml = (const char *)r.body.p;
        char expiration[64] = "";
        if (r.status != 200) {
            char code[100] = "", message[300] = "";
            xml_text(xml, "Code", code, sizeof code);
            xml_text(xml, "Message", message, sizeof message);
            rc = tc_fail(err, errlen, "s3: STS at %s refused AssumeRoleWithWebIdentity for %s with HTTP %ld%s%s%s%s", s->sts, s->role_arn, r.status,
                         code[0] ? ": " : "", code, message[0] ? ": " : "", message);
        } else if (!xml_text(xml, "AccessKeyId", s->key_id, sizeof s->key_id) || !xml_text(xml, "SecretAccessKey", s->secret, sizeof s->secret) ||
                   !xml_text(xml, "SessionToken", s->token, sizeof s->token)) {
            rc = tc_fail(err, errlen, "s3: STS's AssumeRoleWithWebIdentity answer for %s lacks a credential field", s->role_arn);
        } else {
            schedule_refresh(s, xml_text(xml, "Expiration", expiration, sizeof expiration) ? expiration : NULL);
        }
    }
    if (r.body.p) memset(r.body.p, 0, r.body.len);
    tc_buf_free(&r.body);
    return rc;
}

// Sets up the web identity from the environment: 1 when AWS_ROLE_ARN and a token source are
// set, 0 when not, -1 on a bad setting.
static int web_identity_from_environment(tc_s3 *s, char *err, size_t errlen) {
    const char *role = getenv("AWS_ROLE_ARN"), *file = getenv("AWS_WEB_IDENTITY_TOKEN_FILE"), *source = getenv("STRATUM_WEB_IDENTITY");
    if (!role || !role[0]) return 0;
    if (!(file && file[0]) && source && source[0] && strcmp(source, "gcp") != 0 && strcmp(source, "azure") != 0)
        return tc_fail(err, errlen, "s3: STRATUM_WEB_IDENTITY is '%s'; it is gcp or azure (or set AWS_WEB_IDENTITY_TOKEN_FILE)", source);
    if (!(file && file[0]) && !(source && source[0])) return 0;
    tc_identity_from_environment(file, source, "sts.amazonaws.com", s->token_source, s->token_file, s->metadata, s->audience, s->client_id);
    snprintf(s->role_arn, sizeof s->role_arn, "%s", role);
    const char *session = getenv("AWS_ROLE_SESSION_NAME");
    if (session && session[0]) snprintf(s->session_name, sizeof s->session_name, "%s", session);
    else snprintf(s->session_name, sizeof s->session_name, "stratum-trainer-%d", (int)getpid());
    const char *sts = getenv("AWS_ENDPOINT_URL_STS");
    if (sts && sts[0]) snprintf(s->sts, sizeof s->sts, "%s", sts);
    else snprintf(s->sts, sizeof s->sts, "https://sts.%s.amazonaws.com", s->region);
    size_t n = strlen(s->sts);
    while (n && s->sts[n - 1] == '/') s->sts[--n] = 0;
    return 1;
}

tc_s3 *tc_s3_create(const char *endpoint, const char *region, const char *bucket, char *err, size_t errlen) {
    tc_s3 *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    tc_http_global_init();
    snprintf(s->region, sizeof s->region, "%s", region && region[0] ? region : "us-east-1");
    const char *key = getenv("AWS_ACCESS_KEY_ID"), *secret = getenv("AWS_SECRET_ACCESS_KEY"), *token = getenv("AWS_SESSION_TOKEN");
    int web = 0;
    if (key && key[0] && secret && secret[0]) {
        s->from = TC_S3_STATIC;
        snprintf(s->key_id, sizeof s->key_id, "%s", key);
        snprintf(s->secret, sizeof s->secret, "%s", secret);
        snprintf(s->token, sizeof s->token, "%s", token ? token : "");
    } else if ((web = web_identity_from_environment(s, err, errlen)) != 0) {
        char why[TC_ERR_MAX];
        if (web < 0) {
            free(s);
            return NULL;
        }
        s->from = TC_S3_WEB_IDENTITY;
        if (fetch_web_identity_credentials(s, why, sizeof why) != 0) {
            tc_fail(err, errlen, "s3: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set, and the web identity for %s failed: %s", s->role_arn, why);
            tc_s3_free(s);
            return NULL;
        }
    } else {
        const char *disabled = getenv("AWS_EC2_METADATA_DISABLED"), *imds = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
        if (disabled && strcmp(disabled, "true") == 0) {
            tc_fail(err, errlen,
                    "s3: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set, no web identity (AWS_ROLE_ARN) is configured, and "
                    "AWS_EC2_METADATA_DISABLED=true forbids the instance role");
            free(s);
            return NULL;
        }
        s->from = TC_S3_ROLE;
        snprintf(s->imds, sizeof s->imds, "%s", imds && imds[0] ? imds : "http://169.254.169.254");
        size_t n = strlen(s->imds);
        while (n && s->imds[n - 1] == '/') s->imds[--n] = 0;
        char why[TC_ERR_MAX];
        if (fetch_role_credentials(s, why, sizeof why) != 0) {
            tc_fail(err, errlen, "s3: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set, and no instance role answered at %s: %s", s->imds, why);
            tc_s3_free(s);
            return NULL;
        }
    }
    snprintf(s->bucket, sizeof s->bucket, "%s", bucket);
    if (endpoint && endpoint[0]) {
        snprintf(s->endpoint, sizeof s->endpoint, "%s", endpoint);
        size_t n = strlen(s->endpoint);
        while (n && s->endpoint[n - 1] == '/') s->endpoint[--n] = 0;
        s->path_style = 1;
    } else {
        snprintf(s->endpoint, sizeof s->endpoint, "https://%s.s3.%s.amazonaws.com", bucket, s->region);
    }
    const char *h = strstr(s->endpoint, "://");
    snprintf(s->host, sizeof s->host, "%s", h ? h + 3 : s->endpoint);
    char *slash = strchr(s->host, '/');
    if (slash) *slash = 0;
    return s;
}

void tc_s3_free(tc_s3 *s) {
    if (!s) return;
    memset(s->secret, 0, sizeof s->secret);
    memset(s->token, 0, sizeof s->token);
    free(s);
}
uint64_t tc_s3_bytes(const tc_s3 *s) { return s ? s->bytes : 0; }

int tc_s3_request(tc_s3 *s, const char *method, const char *key, const char *query, const void *body, size_t body_len,
                  const char *range, const char *extra_headers, tc_http_response *resp, char *err, size_t errlen) {
    char ekey[3 * TC_PATH_MAX + 4], uri[4 * TC_PATH_MAX], url[5 * TC_PATH_MAX];
    tc_uri_encode(key ? key : "", 1, ekey, sizeof ekey);
    if (s->path_style)
        snprintf(uri, sizeof uri, "/%s/%s", s->bucket, ekey);
    else
        snprintf(uri, sizeof uri, "/%s", ekey);
    snprintf(url, sizeof url, "%s%s%s%s", s->endpoint, uri, query && query[0] ? "?" : "", query ? query : "");

    if (s->from != TC_S3_STATIC && tc_now() >= s->refresh_at) {
        char why[TC_ERR_MAX];
        if (s->from == TC_S3_ROLE && fetch_role_credentials(s, why, sizeof why) != 0)
            return tc_fail(err, errlen, "s3: renewing the instance role's keys: %s", why);
        if (s->from == TC_S3_WEB_IDENTITY && fetch_web_identity_credentials(s, why, sizeof why) != 0)
            return tc_fail(err, errlen, "s3: renewing the web identity's keys for %s: %s", s->role_arn, why);
    }
    char payload_hash[65], amz_date[17];
    tc_sha256_hex(body ? body : "", body ? body_len : 0, payload_hash);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(amz_date, sizeof amz_date, "%Y%m%dT%H%M%SZ", &tm);
    const char *token = s->token;

    // Canonical headers, already in sorted order.
    char canon[6144], signed_h[256];
    int n = snprintf(canon, sizeof canon, "host:%s", s->host);
    snprintf(signed_h, sizeof signed_h, "host");
    if (range) {
        n += snprintf(canon + n, sizeof canon - (size_t)n, "\nrange:%s", range);
        strcat(signed_h, ";range");
    }
    n += snprintf(canon + n, sizeof canon - (size_t)n, "\nx-amz-content-sha256:%s\nx-amz-date:%s", payload_hash, amz_date);
    strcat(signed_h, ";x-amz-content-sha256;x-amz-date");
    if (token && token[0]) {
        snprintf(canon + n, sizeof canon - (size_t)n, "\nx-amz-security-token:%s", token);
        strcat(signed_h, ";x-amz-security-token");
    }
    char auth[1024];
    if (tc_sigv4_authorization(method, uri, query ? query : "", canon, signed_h, payload_hash, amz_date, s->region, "s3",
                               s->key_id, s->secret, auth, sizeof auth) != 0)
        return tc_fail(err, errlen, "s3: cannot sign the request");

    struct curl_slist *h = NULL;
    char line[6144];
    snprintf(line, sizeof line, "Authorization: %s", auth);
    h = curl_slist_append(h, line);
    snprintf(line, sizeof line, "x-amz-content-sha256: %s", payload_hash);
    h = curl_slist_append(h, line);
    snprintf(line, sizeof line, "x-amz-date: %s", amz_date);
    h = curl_slist_append(h, line);
    if (token && token[0]) {
        snprintf(line, sizeof line, "x-amz-security-token: %s", token);
        h = curl_slist_append(h, line);
    }
    if (range) {
        snprintf(line, sizeof line, "Range: %s", range);
        h = curl_slist_append(h, line);
    }
    h = curl_slist_append(h, "Expect:");  // no 100-continue round trip
    // Without an explicit type curl labels bodies as form data, which servers may consume.
    if (body && !(extra_headers && strcasestr(extra_headers, "content-type:")))
        h = curl_slist_append(h, "Content-Type: application/octet-stream");
    h = append_header_lines(h, extra_headers);
    int rc = http_do(method, url, h, body, body_len, resp, err, errlen);
    curl_slist_free_all(h);
    if (rc == 0) s->bytes += (body ? body_len : 0) + resp->body.len;
    return rc;
}

int tc_s3_create_bucket(const char *endpoint, const char *region, const char *bucket, char *err, size_t errlen) {
    tc_s3 *s = tc_s3_create(endpoint, region, bucket, err, errlen);
    if (!s) return -1;
    char body[256] = "";
    size_t blen = 0;
    if (strcmp(s->region, "us-east-1") != 0)
        blen = (size_t)snprintf(body, sizeof body,
                                "<CreateBucketConfiguration><LocationConstraint>%s</LocationConstraint></CreateBucketConfiguration>",
                                s->region);
    tc_http_response r = {0};
    int rc = tc_s3_request(s, "PUT", "", NULL, blen ? body : NULL, blen, NULL, NULL, &r, err, errlen);
    if (rc == 0 && r.status != 200 && !(r.status == 409 && r.body.p && strstr((const char *)r.body.p, "BucketAlreadyOwnedByYou")))
        rc = tc_fail(err, errlen, "s3: creating bucket '%s' failed with HTTP %ld", bucket, r.status);
    tc_buf_free(&r.body);
    tc_s3_free(s);
    return rc;
}
