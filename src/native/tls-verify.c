/* Client certificates for the native TLS engine (tls-engine.c), as node:tls checks them for
 * tlsd: the trust anchors and revocation lists of a context (CAFILE/CADIR, CRLFILE), and the
 * chain verified by OpenSSL in the handshake. Where node:tls can only close after a handshake
 * that took a chain it refuses, -y here refuses it in the handshake, with OpenSSL's alert
 * (unknown_ca, certificate_revoked...); -Y takes any chain, and the facts say why it did not
 * verify. Each verification goes to its end, as node:tls's (a callback that says yes to every
 * error): the reason told is the last error found, the same as on that path. */
#include <node_api.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "tls-verify.h"

/* Every error is looked at, none stops the verification (node:tls's callback). */
static int keep_going(int ok, X509_STORE_CTX *x) {
  (void)ok, (void)x;
  return 1;
}

/* The whole chain is verified; under -y (SSL_VERIFY_FAIL_IF_NO_PEER_CERT) an error is then a
 * refusal: OpenSSL sends the alert for it. */
static int verify_chain(X509_STORE_CTX *x, void *arg) {
  (void)arg;
  SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
  X509_STORE_CTX_set_verify_cb(x, keep_going);
  int ok = X509_verify_cert(x);
  if (ok <= 0) return ok;
  int mandatory = ssl && (SSL_get_verify_mode(ssl) & SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
  return mandatory && X509_STORE_CTX_get_error(x) != X509_V_OK ? 0 : 1;
}

/* Each certificate of a PEM buffer into the store and the list of acceptable CAs (sent in the
 * CertificateRequest), as node:tls's addCACert; -1 when there is none. */
static int add_anchors(SSL_CTX *ctx, X509_STORE *store, void *pem, size_t len) {
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  if (!bio) return -1;
  int n = 0;
  X509 *cert;
  while ((cert = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL))) {
    X509_STORE_add_cert(store, cert);
    SSL_CTX_add_client_CA(ctx, cert);
    X509_free(cert);
    n++;
  }
  BIO_free(bio);
  ERR_clear_error(); /* the end of the buffer is a "no start line" */
  return n > 0 ? 0 : -1;
}

/* One CRL (one PEM block) into the store; -1 when it cannot be read. */
static int add_crl(X509_STORE *store, const char *pem) {
  BIO *bio = BIO_new_mem_buf(pem, -1);
  if (!bio) return -1;
  X509_CRL *crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
  BIO_free(bio);
  int ok = crl && X509_STORE_add_crl(store, crl) == 1;
  X509_CRL_free(crl);
  return ok ? 0 : -1;
}

const char *tls_trust(napi_env env, SSL_CTX *ctx, napi_value opts) {
  napi_value ca, crl;
  bool is = false;
  if (napi_get_named_property(env, opts, "ca", &ca) != napi_ok ||
      napi_is_array(env, ca, &is) != napi_ok || !is)
    return NULL;
  /* Only these anchors, as node:tls's `ca` (no system roots). */
  X509_STORE *store = X509_STORE_new();
  if (!store) return "cannot make a certificate store";
  SSL_CTX_set_cert_store(ctx, store);
  uint32_t n = 0;
  napi_get_array_length(env, ca, &n);
  for (uint32_t i = 0; i < n; i++) {
    napi_value item;
    void *data;
    size_t len;
    napi_get_element(env, ca, i, &item);
    if (get_buffer(env, item, &data, &len) != 0 || add_anchors(ctx, store, data, len) < 0)
      return "cannot use the trust anchors (PEM)";
  }
  if (napi_get_named_property(env, opts, "crl", &crl) == napi_ok &&
      napi_is_array(env, crl, &is) == napi_ok && is) {
    napi_get_array_length(env, crl, &n);
    for (uint32_t i = 0; i < n; i++) {
      napi_value item;
      napi_get_element(env, crl, i, &item);
      char *pem = get_string(env, item);
      int bad = !pem || add_crl(store, pem) < 0;
      free(pem);
      if (bad) return "cannot use the revocation lists (PEM)";
    }
    /* As node:tls with a crl: every CA of the chain needs its list. */
    if (n > 0) X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
  }
  SSL_CTX_set_cert_verify_callback(ctx, verify_chain, NULL);
  return NULL;
}

void tls_verify_mode(napi_env env, SSL *ssl, napi_value opts) {
  napi_value v;
  char *mode = NULL;
  napi_valuetype t = napi_undefined;
  if (napi_get_named_property(env, opts, "clientCert", &v) == napi_ok)
    napi_typeof(env, v, &t);
  if (t == napi_string) mode = get_string(env, v);
  if (mode && strcmp(mode, "optional") == 0)
    SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
  else if (mode && strcmp(mode, "mandatory") == 0)
    SSL_set_verify(ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  free(mode);
}

int tls_verify_refusal(SSL *ssl, char *cause, size_t size) {
  long result = SSL_get_verify_result(ssl);
  if (result == X509_V_OK || ERR_GET_REASON(ERR_peek_error()) != SSL_R_CERTIFICATE_VERIFY_FAILED)
    return 0;
  snprintf(cause, size, "client certificate refused: %s", X509_verify_cert_error_string(result));
  return 1;
}

void tls_verify_facts(napi_env env, SSL *ssl, napi_value facts) {
  if (SSL_get_verify_mode(ssl) == SSL_VERIFY_NONE) return;
  X509 *peer = SSL_get0_peer_certificate(ssl);
  if (!peer) return;
  napi_value v;
  long result = SSL_get_verify_result(ssl);
  if (result != X509_V_OK) {
    napi_create_string_utf8(env, X509_verify_cert_error_string(result), NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, facts, "verifyError", v);
    return;
  }
  /* The issuers the verification found, the trust anchor last (--mod-ssl's CERT_CHAIN_n). */
  STACK_OF(X509) *chain = SSL_get0_verified_chain(ssl);
  int n = chain ? sk_X509_num(chain) : 0;
  napi_value list;
  napi_create_array(env, &list);
  for (int i = 1; i < n; i++) {
    unsigned char *der = NULL;
    int len = i2d_X509(sk_X509_value(chain, i), &der);
    if (len > 0) {
      napi_create_buffer_copy(env, (size_t)len, der, NULL, &v);
      napi_set_element(env, list, (uint32_t)(i - 1), v);
    }
    OPENSSL_free(der);
  }
  napi_set_named_property(env, facts, "issuersDer", list);
}
