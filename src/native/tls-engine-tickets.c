/* Session tickets of the native TLS engine under keys from JavaScript (src/tls/tickets.ts):
 * TICKETFILE's, or the process's own, in node:tls's layout (a 16-byte name, an HMAC-SHA256
 * secret and an AES-128-CBC key), so that a ticket made by either path resumes on the other.
 *
 *   tlsTicketKeys(keys, encrypt)          a key set: keys is 48 bytes a key, `encrypt` the index
 *                                         of the one that encrypts; every one decrypts
 *   tlsSetTicketKeys(set, keys, encrypt)  new keys for the set (a rotation, TICKETFILE read
 *                                         again): every context made with it takes them now
 *   tlsContext's opts.ticketKeys          the set whose keys the context's tickets use
 *
 * A set is shared by the contexts of a store and the JavaScript handle, counted on the thread
 * of the JavaScript that made it. Its keys are read by handshakes on the engine's pool threads
 * too (offload.c), so a rotation swaps them under a lock. */
#include <errno.h>
#include <node_api.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define KEY_LEN 48
#define NAME_LEN 16

static const napi_type_tag KEYS_TAG = {0x5d2b7e91c4a03f68ULL, 0x0c8e6f4a2b1d9735ULL};

typedef struct {
  int refs;
  int count, encrypt;
  unsigned char *keys; /* count * KEY_LEN: name, HMAC secret, AES key */
} ticket_keys_t;

static int keys_index = -1;
static pthread_once_t keys_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t keys_lock = PTHREAD_MUTEX_INITIALIZER;

static void keys_unref(ticket_keys_t *k) {
  if (!k || --k->refs > 0) return;
  OPENSSL_cleanse(k->keys, (size_t)k->count * KEY_LEN);
  free(k->keys);
  free(k);
}

static void keys_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                      void *argp) {
  (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
  keys_unref(ptr);
}

static void keys_init(void) {
  keys_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, keys_free);
}

/* The HMAC of node:tls's tickets: SHA-256 under the key's 16-byte secret. */
static int mac_init(EVP_MAC_CTX *mac, const unsigned char *secret) {
  static char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)secret, 16),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  return EVP_MAC_CTX_set_params(mac, params) == 1 ? 0 : -1;
}

/* OpenSSL's ticket key callback: 1 to encrypt under the key of the moment; to decrypt, 2 (the
 * client gets a new ticket, as node:tls's path renews one) or 0 for a name no key has. */
static int ticket_key_locked(ticket_keys_t *k, unsigned char *name, unsigned char *iv,
                             EVP_CIPHER_CTX *cipher, EVP_MAC_CTX *mac, int enc) {
  if (enc) {
    const unsigned char *key = k->keys + (size_t)k->encrypt * KEY_LEN;
    memcpy(name, key, NAME_LEN);
    if (RAND_bytes(iv, 16) != 1 || mac_init(mac, key + 16) < 0 ||
        EVP_EncryptInit_ex(cipher, EVP_aes_128_cbc(), NULL, key + 32, iv) != 1)
      return -1;
    return 1;
  }
  for (int i = 0; i < k->count; i++) {
    const unsigned char *key = k->keys + (size_t)i * KEY_LEN;
    if (memcmp(name, key, NAME_LEN) != 0) continue;
    if (mac_init(mac, key + 16) < 0 ||
        EVP_DecryptInit_ex(cipher, EVP_aes_128_cbc(), NULL, key + 32, iv) != 1)
      return -1;
    return 2;
  }
  return 0;
}

static int ticket_key(SSL *ssl, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *cipher,
                      EVP_MAC_CTX *mac, int enc) {
  ticket_keys_t *k = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), keys_index);
  if (!k) return 0;
  pthread_mutex_lock(&keys_lock);
  int rc = ticket_key_locked(k, name, iv, cipher, mac, enc);
  pthread_mutex_unlock(&keys_lock);
  return rc;
}

/* keys (a Buffer of whole keys) and encrypt (an index into them) into k; -1 when they are not
 * that (a TypeError thrown). */
static int keys_read(napi_env env, napi_value buffer, napi_value index, ticket_keys_t *k) {
  void *data;
  size_t len;
  int32_t encrypt;
  if (get_buffer(env, buffer, &data, &len) != 0 || len == 0 ||
      len % KEY_LEN != 0 || get_int(env, index, &encrypt) != 0 || encrypt < 0 ||
      (size_t)encrypt >= len / KEY_LEN) {
    napi_throw_type_error(env, NULL, "ticket keys: a Buffer of 48 bytes a key, and an index");
    return -1;
  }
  unsigned char *copy = malloc(len);
  if (!copy) {
    throw_errno(env, ENOMEM, "tlsTicketKeys");
    return -1;
  }
  memcpy(copy, data, len);
  pthread_mutex_lock(&keys_lock);
  unsigned char *old = k->keys;
  size_t old_len = (size_t)k->count * KEY_LEN;
  k->keys = copy;
  k->count = (int)(len / KEY_LEN);
  k->encrypt = encrypt;
  pthread_mutex_unlock(&keys_lock);
  if (old) OPENSSL_cleanse(old, old_len);
  free(old);
  return 0;
}

static void keys_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  keys_unref(data);
}

static ticket_keys_t *keys_of(napi_env env, napi_value v) { return tagged(env, v, &KEYS_TAG); }

napi_value tls_ticket_keys(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2], handle;
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  ticket_keys_t *k = calloc(1, sizeof *k);
  if (!k) return throw_errno(env, ENOMEM, "tlsTicketKeys");
  if (argc < 2 || keys_read(env, args[0], args[1], k) < 0) {
    if (argc < 2) napi_throw_type_error(env, NULL, "tlsTicketKeys(keys, encrypt)");
    free(k);
    return NULL;
  }
  k->refs = 1;
  if (napi_create_external(env, k, keys_finalize, NULL, &handle) != napi_ok) {
    keys_unref(k);
    return NULL;
  }
  napi_type_tag_object(env, handle, &KEYS_TAG);
  return handle;
}

napi_value tls_set_ticket_keys(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  ticket_keys_t *k = argc == 3 ? keys_of(env, args[0]) : NULL;
  if (!k) {
    napi_throw_type_error(env, NULL, "tlsSetTicketKeys(keySet, keys, encrypt)");
    return NULL;
  }
  keys_read(env, args[1], args[2], k);
  return NULL;
}

int tls_context_tickets(napi_env env, SSL_CTX *ctx, napi_value opts) {
  napi_value v;
  napi_valuetype t = napi_undefined;
  if (napi_get_named_property(env, opts, "ticketKeys", &v) == napi_ok) napi_typeof(env, v, &t);
  if (t == napi_undefined) return 0; /* OpenSSL's own keys, made for this context alone */
  ticket_keys_t *k = keys_of(env, v);
  if (!k) return -1;
  pthread_once(&keys_once, keys_init);
  if (keys_index < 0 || SSL_CTX_set_ex_data(ctx, keys_index, k) != 1) return -1;
  k->refs++;
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key);
  return 0;
}
