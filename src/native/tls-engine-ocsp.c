/* OCSP for the native TLS engine: the responses it staples, and the requests tls-keygen ocsp
 * sends for them.
 *
 * ocspCheck(der, chainPem) reads an OCSP response for a certificate chain (leaf first): a
 * successful basic response, with a status for the leaf (named by its issuer, which must be in
 * the chain), signed by that issuer or by a responder it certified for OCSP, and valid now. It
 * returns { status: "good" | "revoked" | "unknown", thisUpdate, nextUpdate, revokedAt? }
 * (seconds since the epoch), or throws an Error whose message says, in our words, why the
 * response is not one. Only a good one is stapled.
 *
 * ocspRequest(chainPem) makes the request for the chain's leaf (its id by SHA-1, as CAs'
 * responders expect; no nonce, as responders that pre-sign ignore it) and gives the responder's
 * URL the leaf names (its first), or "".
 *
 * ocspMustStaple(chainPem) says whether the chain's leaf carries the TLS Feature extension
 * (RFC 7633) with status_request: "must staple", which clients that honour it enforce by
 * refusing a handshake that brings no response.
 *
 * A context made with opts.ocsp (that response) and opts.ocspUntil (its nextUpdate) gives it to
 * every client that asks (the status_request extension) until then; after that, none: the
 * client asks the CA itself, as it would without stapling. */
#include <node_api.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"

typedef struct {
  unsigned char *der;
  long len;
  time_t until;
} staple_t;

static int staple_index = -1;

static void staple_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                        void *argp) {
  (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
  staple_t *s = ptr;
  if (!s) return;
  free(s->der);
  free(s);
}

/* Called for a client that asks, on the context its name chose. */
static int status_request(SSL *ssl, void *arg) {
  (void)arg;
  staple_t *s = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), staple_index);
  if (!s || time(NULL) >= s->until) return SSL_TLSEXT_ERR_NOACK;
  unsigned char *copy = OPENSSL_malloc((size_t)s->len); /* OpenSSL frees it with the SSL */
  if (!copy) return SSL_TLSEXT_ERR_NOACK;
  memcpy(copy, s->der, (size_t)s->len);
  if (SSL_set_tlsext_status_ocsp_resp(ssl, copy, s->len) != 1) {
    OPENSSL_free(copy);
    return SSL_TLSEXT_ERR_NOACK;
  }
  return SSL_TLSEXT_ERR_OK;
}

int tls_context_ocsp(napi_env env, SSL_CTX *ctx, napi_value opts) {
  if (staple_index < 0)
    staple_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, staple_free);
  /* Every context answers: a handshake may move to another one by the client's name. */
  SSL_CTX_set_tlsext_status_cb(ctx, status_request);
  napi_value der_v, until_v;
  napi_valuetype t = napi_undefined;
  if (napi_get_named_property(env, opts, "ocsp", &der_v) != napi_ok) return -1;
  napi_typeof(env, der_v, &t);
  if (t == napi_undefined) return 0;
  void *der;
  size_t len;
  double until;
  if (get_buffer(env, der_v, &der, &len) != 0 || len == 0 ||
      napi_get_named_property(env, opts, "ocspUntil", &until_v) != napi_ok ||
      napi_get_value_double(env, until_v, &until) != napi_ok)
    return -1;
  staple_t *s = calloc(1, sizeof *s);
  if (!s || !(s->der = malloc(len))) {
    free(s);
    return -1;
  }
  memcpy(s->der, der, len);
  s->len = (long)len;
  s->until = (time_t)until;
  SSL_CTX_set_ex_data(ctx, staple_index, s);
  return 0;
}

static long long epoch_of(const ASN1_GENERALIZEDTIME *t) {
  struct tm tm;
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return (long long)timegm(&tm);
}

static void text_of(const ASN1_GENERALIZEDTIME *t, char *out, size_t size) {
  struct tm tm;
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1 || !strftime(out, size, "%Y-%m-%d %H:%M:%S UTC", &tm))
    snprintf(out, size, "an unreadable time");
}

/* The responder may name the certificate by any hash: each single response is compared with
 * the leaf's id made with its own. */
static int status_of(OCSP_BASICRESP *bs, X509 *leaf, X509 *issuer, ASN1_GENERALIZEDTIME **rev,
                     ASN1_GENERALIZEDTIME **thisupd, ASN1_GENERALIZEDTIME **nextupd) {
  for (int i = 0; i < OCSP_resp_count(bs); i++) {
    OCSP_SINGLERESP *single = OCSP_resp_get0(bs, i);
    const OCSP_CERTID *cid = OCSP_SINGLERESP_get0_id(single);
    ASN1_OBJECT *md_oid = NULL;
    if (!cid || !OCSP_id_get0_info(NULL, &md_oid, NULL, NULL, (OCSP_CERTID *)cid)) continue;
    const EVP_MD *md = EVP_get_digestbyname(OBJ_nid2sn(OBJ_obj2nid(md_oid)));
    if (!md) continue;
    OCSP_CERTID *mine = OCSP_cert_to_id(md, leaf, issuer);
    int same = mine && OCSP_id_cmp(mine, cid) == 0;
    OCSP_CERTID_free(mine);
    int reason;
    if (same) return OCSP_single_get0_status(single, &reason, rev, thisupd, nextupd);
  }
  return -2;
}

/* The issuer itself, or a responder it issued (and signed) with the OCSPSigning extended key
 * usage. */
static int may_answer(X509 *signer, X509 *issuer) {
  if (X509_cmp(signer, issuer) == 0) return 1;
  return X509_check_issued(issuer, signer) == X509_V_OK &&
         (X509_get_extended_key_usage(signer) & XKU_OCSP_SIGN) != 0 &&
         X509_verify(signer, X509_get0_pubkey(issuer)) == 1;
}

/* The chain's leaf and the issuer that follows it; NULL (and *cause) when either is missing. */
static X509 *leaf_and_issuer(STACK_OF(X509) *chain, void *pem, size_t len, X509 **issuer,
                             const char **cause) {
  BIO *b = BIO_new_mem_buf(pem, (int)len);
  X509 *x;
  while (b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)))
    if (!sk_X509_push(chain, x)) X509_free(x);
  BIO_free(b);
  *issuer = NULL;
  if (sk_X509_num(chain) == 0) {
    *cause = "no certificate in the chain";
    return NULL;
  }
  X509 *leaf = sk_X509_value(chain, 0);
  for (int i = 1; i < sk_X509_num(chain) && !*issuer; i++)
    if (X509_check_issued(sk_X509_value(chain, i), leaf) == X509_V_OK)
      *issuer = sk_X509_value(chain, i);
  if (!*issuer) {
    *cause = "the certificate's issuer is not in its chain file (a response names the "
             "certificate by its issuer)";
    return NULL;
  }
  return leaf;
}

/* The one argument of a call that takes a chain (PEM): -1 (a TypeError thrown, naming `usage`)
 * when it is not a Buffer OpenSSL can read whole. */
static int chain_arg(napi_env env, napi_callback_info info, const char *usage, void **pem,
                     size_t *len) {
  size_t argc = 1;
  napi_value arg;
  if (napi_get_cb_info(env, info, &argc, &arg, NULL, NULL) != napi_ok || argc < 1 ||
      get_buffer(env, arg, pem, len) != 0 || *len > INT_MAX) {
    napi_throw_type_error(env, NULL, usage);
    return -1;
  }
  return 0;
}

napi_value ocsp_request(napi_env env, napi_callback_info info) {
  napi_value result = NULL, v;
  void *pem;
  size_t pem_len;
  if (chain_arg(env, info, "ocspRequest(chainPem: Buffer)", &pem, &pem_len) != 0) return NULL;
  const char *cause = NULL;
  STACK_OF(X509) *chain = sk_X509_new_null();
  OCSP_REQUEST *req = OCSP_REQUEST_new();
  STACK_OF(OPENSSL_STRING) *urls = NULL;
  unsigned char *der = NULL;
  X509 *issuer = NULL;
  X509 *leaf = chain && req ? leaf_and_issuer(chain, pem, pem_len, &issuer, &cause) : NULL;
  if (!chain || !req) cause = "out of memory";
  if (leaf) {
    OCSP_CERTID *id = OCSP_cert_to_id(NULL, leaf, issuer);
    if (!id || !OCSP_request_add0_id(req, id)) {
      OCSP_CERTID_free(id);
      cause = "cannot make the request";
    }
  }
  int len = cause ? 0 : i2d_OCSP_REQUEST(req, &der);
  if (!cause && len <= 0) cause = "cannot make the request";
  if (!cause && napi_create_object(env, &result) == napi_ok) {
    void *copy;
    if (napi_create_buffer_copy(env, (size_t)len, der, &copy, &v) == napi_ok)
      napi_set_named_property(env, result, "der", v);
    urls = X509_get1_ocsp(leaf);
    const char *url =
        urls && sk_OPENSSL_STRING_num(urls) > 0 ? sk_OPENSSL_STRING_value(urls, 0) : "";
    if (napi_create_string_utf8(env, url, NAPI_AUTO_LENGTH, &v) == napi_ok)
      napi_set_named_property(env, result, "url", v);
  }
  ERR_clear_error();
  X509_email_free(urls);
  OPENSSL_free(der);
  OCSP_REQUEST_free(req);
  sk_X509_pop_free(chain, X509_free);
  if (cause) napi_throw_error(env, NULL, cause);
  return result;
}

napi_value ocsp_check(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  void *der = NULL, *pem = NULL;
  size_t der_len = 0, pem_len = 0;
  if (argc < 2 || get_buffer(env, args[0], &der, &der_len) != 0 ||
      get_buffer(env, args[1], &pem, &pem_len) != 0 || pem_len > INT_MAX || der_len > LONG_MAX) {
    napi_throw_type_error(env, NULL, "ocspCheck(der: Buffer, chainPem: Buffer)");
    return NULL;
  }
  char because[200];
  const char *cause = NULL;
  STACK_OF(X509) *chain = sk_X509_new_null();
  X509_STORE *none = X509_STORE_new();
  OCSP_RESPONSE *resp = NULL;
  OCSP_BASICRESP *bs = NULL;
  ASN1_GENERALIZEDTIME *rev = NULL, *thisupd = NULL, *nextupd = NULL;
  X509 *leaf = NULL, *issuer = NULL, *signer = NULL;
  int status = -2;
  if (!chain || !none) {
    cause = "out of memory";
    goto out;
  }
  if (!(leaf = leaf_and_issuer(chain, pem, pem_len, &issuer, &cause))) goto out;
  const unsigned char *p = der;
  resp = d2i_OCSP_RESPONSE(NULL, &p, (long)der_len);
  if (!resp || p != (const unsigned char *)der + der_len) {
    cause = "not an OCSP response (DER)";
    goto out;
  }
  int rs = OCSP_response_status(resp);
  if (rs != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
    /* RFC 6960's names (tryLater, unauthorized, ...); a code it does not define by its number. */
    const char *name = OCSP_response_status_str(rs);
    if (strcmp(name, "(UNKNOWN)") == 0)
      snprintf(because, sizeof because,
               "the responder answered with code %d instead of the certificate's status", rs);
    else
      snprintf(because, sizeof because,
               "the responder answered \"%s\" instead of the certificate's status", name);
    cause = because;
    goto out;
  }
  if (!(bs = OCSP_response_get1_basic(resp))) {
    cause = "not a basic OCSP response";
    goto out;
  }
  status = status_of(bs, leaf, issuer, &rev, &thisupd, &nextupd);
  if (status == -2) {
    cause = "it holds no status for this certificate";
    goto out;
  }
  if (OCSP_resp_get0_signer(bs, &signer, chain) != 1 || !signer) {
    cause = "its signer's certificate is neither in it nor in the chain";
    goto out;
  }
  if (!may_answer(signer, issuer)) {
    cause = "it is signed by a certificate that may not answer for the issuer";
    goto out;
  }
  /* The signature alone: whom it is from was settled above. */
  if (OCSP_basic_verify(bs, chain, none, OCSP_NOVERIFY) != 1) {
    cause = "its signature does not verify";
    goto out;
  }
  char when[64];
  if (!nextupd) {
    cause = "it has no nextUpdate, so no end to its validity";
    goto out;
  }
  if (!OCSP_check_validity(thisupd, nextupd, 300, -1)) {
    int days = 0, secs = 0;
    int expired = ASN1_TIME_diff(&days, &secs, NULL, nextupd) && (days < 0 || secs < 0);
    text_of(expired ? nextupd : thisupd, when, sizeof when);
    snprintf(because, sizeof because,
             expired ? "it expired at %s" : "it is not valid before %s (or its times are wrong)",
             when);
    cause = because;
    goto out;
  }
out:
  ERR_clear_error();
  napi_value result = NULL;
  if (!cause && napi_create_object(env, &result) == napi_ok) {
    napi_value v;
    const char *word = status == V_OCSP_CERTSTATUS_GOOD      ? "good"
                       : status == V_OCSP_CERTSTATUS_REVOKED ? "revoked"
                                                             : "unknown";
    if (napi_create_string_utf8(env, word, NAPI_AUTO_LENGTH, &v) == napi_ok)
      napi_set_named_property(env, result, "status", v);
    if (napi_create_double(env, (double)epoch_of(thisupd), &v) == napi_ok)
      napi_set_named_property(env, result, "thisUpdate", v);
    if (napi_create_double(env, (double)epoch_of(nextupd), &v) == napi_ok)
      napi_set_named_property(env, result, "nextUpdate", v);
    if (rev && napi_create_double(env, (double)epoch_of(rev), &v) == napi_ok)
      napi_set_named_property(env, result, "revokedAt", v);
  }
  OCSP_BASICRESP_free(bs);
  OCSP_RESPONSE_free(resp);
  X509_STORE_free(none);
  sk_X509_pop_free(chain, X509_free);
  if (cause) napi_throw_error(env, NULL, cause);
  return result;
}

/* TLS Feature values (RFC 7633, the TLS extension numbers) that ask for a stapled response. */
#define FEATURE_STATUS_REQUEST 5
#define FEATURE_STATUS_REQUEST_V2 17

napi_value ocsp_must_staple(napi_env env, napi_callback_info info) {
  napi_value result;
  void *pem;
  size_t pem_len;
  if (chain_arg(env, info, "ocspMustStaple(chainPem: Buffer)", &pem, &pem_len) != 0) return NULL;
  int must = 0;
  BIO *b = BIO_new_mem_buf(pem, (int)pem_len);
  X509 *leaf = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
  TLS_FEATURE *features = leaf ? X509_get_ext_d2i(leaf, NID_tlsfeature, NULL, NULL) : NULL;
  for (int i = 0; features && i < sk_ASN1_INTEGER_num(features); i++) {
    long feature = ASN1_INTEGER_get(sk_ASN1_INTEGER_value(features, i));
    if (feature == FEATURE_STATUS_REQUEST || feature == FEATURE_STATUS_REQUEST_V2) must = 1;
  }
  sk_ASN1_INTEGER_pop_free(features, ASN1_INTEGER_free);
  X509_free(leaf);
  BIO_free(b);
  ERR_clear_error();
  CHECK(napi_get_boolean(env, must, &result));
  return result;
}
