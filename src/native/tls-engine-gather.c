/* Write gathering for the native TLS engine's relay (tls-engine.c): while the relay moves
 * bytes, the records of one pass go into a buffer in front of the client's socket and leave in
 * one write, not one write a record. The buffer is there only while the relay has work: pump()
 * puts it on when it allocates its own buffers and takes it off when it frees them, so an idle
 * session holds no more than its SSL. */
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>

#include "common.h"

/* Four records and more of plaintext's worth: a 64 KiB read from the program is one write. */
#define GATHER_BUF 65536

/* The write BIO we set: OpenSSL's own buffer of a handshake's flight is in front of it then,
 * and SSL_get_wbio looks past that one. */
static BIO *gather_of(SSL *ssl) {
  BIO *w = SSL_get_wbio(ssl);
  return BIO_method_type(w) == BIO_TYPE_BUFFER ? w : NULL;
}

void gather_on(SSL *ssl) {
  /* In a handshake (a post-handshake message half-written) OpenSSL has pushed its own buffer,
   * and SSL_set0_wbio would take it for ours: the next pass puts ours on. */
  if (gather_of(ssl) || SSL_in_init(ssl)) return;
  BIO *sock = SSL_get_wbio(ssl), *buf = BIO_new(BIO_f_buffer());
  if (!buf) return; /* no memory: records go out one write each, as without it */
  if (BIO_set_write_buffer_size(buf, GATHER_BUF) <= 0 || !BIO_up_ref(sock)) {
    BIO_free(buf);
    return;
  }
  SSL_set0_wbio(ssl, BIO_push(buf, sock)); /* drops the wbio's reference: the chain holds one */
}

int gather_flush(SSL *ssl) {
  BIO *buf = gather_of(ssl);
  if (!buf || BIO_wpending(buf) == 0) return 0;
  errno = 0;
  if (BIO_flush(buf) == 1) return 0;
  if (BIO_should_retry(buf)) return 1;
  if (!errno) errno = EPIPE;
  return -1;
}

void gather_off(SSL *ssl) {
  BIO *buf = gather_of(ssl);
  if (!buf || BIO_wpending(buf) > 0 || SSL_in_init(ssl)) return;
  SSL_set0_wbio(ssl, BIO_pop(buf)); /* the socket BIO, with the chain's reference; frees buf */
}

long gather_pending(SSL *ssl) {
  BIO *buf = gather_of(ssl);
  return buf ? (long)BIO_wpending(buf) : 0;
}
