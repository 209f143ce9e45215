// A node's identity token for another cloud's trust (internal.h): read from a file, or asked
// of its cloud's metadata service for an audience — the GCE metadata server's identity
// endpoint (the service account's ID token), Azure IMDS's token endpoint (the user-assigned
// identity AZURE_CLIENT_ID's Entra token).
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tc_identity_from_environment(const char *file, const char *source, const char *default_audience, char source_out[16], char file_out[1024],
                                  char metadata_out[256], char audience_out[256], char client_id_out[128]) {
    if (file && file[0]) {
        snprintf(source_out, 16, "file");
        snprintf(file_out, 1024, "%s", file);
        return;
    }
    int gcp = strcmp(source, "gcp") == 0;
    snprintf(source_out, 16, "%s", gcp ? "gcp" : "azure");
    const char *host = getenv(gcp ? "GCE_METADATA_HOST" : "AZURE_POD_IDENTITY_AUTHORITY_HOST");
    const char *h = host && host[0] ? host : gcp ? "metadata.google.internal" : "169.254.169.254";
    snprintf(metadata_out, 256, "%s%s", strstr(h, "://") ? "" : "http://", h);
    size_t n = strlen(metadata_out);
    while (n && metadata_out[n - 1] == '/') metadata_out[--n] = 0;
    const char *aud = getenv("STRATUM_WEB_IDENTITY_AUDIENCE"), *cid = getenv("AZURE_CLIENT_ID");
    snprintf(audience_out, 256, "%s", aud && aud[0] ? aud : default_audience);
    snprintf(client_id_out, 128, "%s", cid ? cid : "");
}

int tc_identity_token(const tc_identity_source *s, char *token, size_t tokenlen, char *err, size_t errlen) {
    tc_http_response r = {0};
    char url[2048], aud[800], cid[400] = "";
    tc_uri_encode(s->audience, 0, aud, sizeof aud);
    int rc, gcp = strcmp(s->source, "gcp") == 0;
    if (strcmp(s->source, "file") == 0) {
        FILE *f = fopen(s->file, "r");
        if (!f) return tc_fail(err, errlen, "cannot read the identity token file '%s'", s->file);
        size_t n = fread(token, 1, tokenlen - 1, f);
        fclose(f);
        token[n] = 0;
        token[strcspn(token, "\r\n")] = 0;
        return token[0] ? 0 : tc_fail(err, errlen, "the identity token file '%s' is empty", s->file);
    } else if (gcp) {
        snprintf(url, sizeof url, "%s/computeMetadata/v1/instance/service-accounts/default/identity?audience=%s&format=full", s->metadata, aud);
        rc = tc_http_request("GET", url, "Metadata-Flavor: Google", NULL, 0, &r, err, errlen);
    } else {
        if (s->client_id[0]) {
            char e[300];
            tc_uri_encode(s->client_id, 0, e, sizeof e);
            snprintf(cid, sizeof cid, "&client_id=%s", e);
        }
        snprintf(url, sizeof url, "%s/metadata/identity/oauth2/token?api-version=2018-02-01&resource=%s%s", s->metadata, aud, cid);
        rc = tc_http_request("GET", url, "Metadata: true", NULL, 0, &r, err, errlen);
    }
    if (rc == 0) {
        tc_buf_append(&r.body, "", 1);
        const char *body = (const char *)r.body.p;
        if (r.status != 200) {
            rc = tc_fail(err, errlen, "the %s metadata service answered HTTP %ld to the identity token request for audience '%s'", gcp ? "GCE" : "Azure",
                         r.status, s->audience);
        } else if (gcp) {
            size_t n = strcspn(body, "\r\n");
            if (n == 0 || n >= tokenlen) rc = tc_fail(err, errlen, "the GCE metadata server's identity token is empty or too long");
            else snprintf(token, tokenlen, "%.*s", (int)n, body);
        } else if (!tc_json_string(body, "access_token", token, tokenlen)) {
            rc = tc_fail(err, errlen, "Azure IMDS answered without an access_token");
        }
    }
    if (r.body.p) memset(r.body.p, 0, r.body.len);
    tc_buf_free(&r.body);
    return rc;
}

int tc_exchange_token(const char *url, const char *form, const char *token, tc_http_response *r, char *err, size_t errlen) {
    size_t tl = strlen(token), fl = strlen(form), cap = fl + 3 * tl + 8;
    char *body = malloc(cap);
    if (!body) return tc_fail(err, errlen, "out of memory");
    memcpy(body, form, fl);
    tc_uri_encode(token, 0, body + fl, cap - fl);
    size_t n = strlen(body);
    memset(r, 0, sizeof *r);
    int rc = tc_http_request("POST", url, "Content-Type: application/x-www-form-urlencoded", body, n, r, err, errlen);
    memset(body, 0, cap);
    free(body);
    if (rc == 0) tc_buf_append(&r->body, "", 1);
    return rc;
}
