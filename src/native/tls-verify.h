/* Client certificates for the native TLS engine (tls-verify.c). */
#ifndef UCSPI_NATIVE_TLS_VERIFY_H
#define UCSPI_NATIVE_TLS_VERIFY_H

#include <node_api.h>
#include <openssl/ssl.h>

/* opts.ca (PEM Buffers) and opts.crl (PEM strings, one CRL each) as the context's only trust
 * anchors and revocation lists, chains verified by OpenSSL in the handshake; nothing without
 * opts.ca. NULL, or what could not be used. */
const char *tls_trust(napi_env env, SSL_CTX *ctx, napi_value opts);
/* opts.clientCert of a session: "optional" (-Y, any chain or none), "mandatory" (-y). */
void tls_verify_mode(napi_env env, SSL *ssl, napi_value opts);
/* A handshake that failed on the client's chain: 1 with the cause as the node:tls path says
 * it ("client certificate refused: self-signed certificate"), else 0. */
int tls_verify_refusal(SSL *ssl, char *cause, size_t size);
/* The verification's facts of a session that asked for a client certificate: verifyError
 * (OpenSSL's words) for one that did not verify, issuersDer for one that did. */
void tls_verify_facts(napi_env env, SSL *ssl, napi_value facts);

#endif
