/* The native TLS engine: the server side of a TLS session driven from C on Node's own loop,
 * with the OpenSSL inside the node binary (the SSL_* symbols resolve to it; nothing is linked).
 * JavaScript keeps the policy (which certificate, the environment, timeouts, logs); C does the
 * handshake and the relay of the bytes, which node:tls did at about twice haproxy's CPU.
 *
 *   tlsContext(certPem, keyPem, opts)   an SSL_CTX as an external (SSL_CTX_free when collected)
 *   tlsServe(fd, ctx, callbacks)        a session on a connected TCP socket: the handshake is
 *       driven by the addon's epoll set (watch.c); onHello(name) is called from OpenSSL's
 *       servername callback and returns a context to switch to, undefined to keep the default,
 *       or null to refuse; onHandshake(facts) once it is done; onEnd(cause | undefined) once;
 *       onPeerEnd(closeNotify) when the client's end is read: true ends the whole session (our
 *       close_notify, and what the program still writes is dropped until it ends or tlsClose).
 *   tlsRelay(session, plainFd, writeFd?, first?)  TLS <-> plainFd (one end of a socketpair),
 *       both ways, a bounded buffer per direction, half-closes passed on, a failure ends both
 *       at once; `first`, bytes of the program's read before, go to the client first.
 *   tlsPending(session)                 the program's bytes still on their way to the client
 *   tlsAdopt(session, fd, staleFd)      the relay's plaintext side moves from the socketpair
 *       to fd (the stage behind's own socket: tcpforward's service), one hop less.
 *   tlsClose(session, cause, afterPlain?) ends it now (a handshake timeout): onEnd(cause);
 *                                       afterPlain: once what the plaintext side wrote is out
 *                                       (a relay's peer reset), with no close_notify.
 *
 * The fds stay open: the caller closes them after onEnd, as with relay.c. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <node_api.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "tls-verify.h"

/* One TLS record's worth of plaintext per direction: SSL_read gives at most that much. */
#define TLS_BUF 16384
/* The program's side is read 64 KiB at a time: four records, gathered into one write. */
#define DOWN_BUF 65536
#define NEED_IN 1
#define NEED_OUT 2

/* napi type tags, so that a context is never taken for a session or the other way round. */
static const napi_type_tag CTX_TAG = {0x7c3e0a61b2d94f18ULL, 0x9a4f2c7e15d0b836ULL};
static const napi_type_tag SESSION_TAG = {0x1f6b8e2d4c3a5970ULL, 0xe2c4a6b8d0f13579ULL};

enum { S_HANDSHAKE, S_READY, S_RELAY, S_ENDED };

typedef struct {
  napi_env env;
  SSL *ssl;
  int fd, pfd;
  int state;
  int close_notify;     /* the program's end is a close_notify, then FIN (-S); else a FIN (-s) */
  watch_t tcp, plain;   /* the two sockets in the addon's epoll set */
  int quiet[3];         /* a side hung up with no error: out of the set until it is wanted */
  int wfd;              /* the plaintext side written to: pfd, or tlsRelay's second fd (tlsd -n) */
  watch_t plain_out;    /* wfd in the set, when it is not pfd */
  int hs_need;          /* what SSL_do_handshake waits for */
  int rd_need, wr_need; /* what SSL_read and SSL_write (or SSL_shutdown) wait for */
  int pin, pout;        /* the plaintext side: read or write would block */
  int tls_dry;          /* SSL_read wanted the socket's bytes: none until epoll says so */
  /* A short read empties a socket: the next read of that side waits for epoll's word rather
   * than fail with EAGAIN (the set is level-triggered, so bytes that came meanwhile wake it).
   * On a request and answer relayed each way, that was 3 of every 9 system calls. */
  int tls_short;        /* OpenSSL's last read of the client's socket was short (tls_read_seen) */
  int tls_drained;      /* ... and SSL_read has handed out all it read */
  int plain_drained;    /* the plaintext side's last read was short */
  int in_step, again;   /* step() is running: a nested call only asks it to go round again */
  int peer_notify;      /* the client's close_notify came (a bare FIN reads the same in SSL_read) */
  int discard;          /* onPeerEnd ended the session: what the program still writes is dropped */
  int notify_sent;      /* SSL_shutdown has put our close_notify in the gathering buffer */
  int tls_closed;       /* our close_notify (or bare FIN) has gone out */
  int up_drop;          /* the program has stopped reading: what the client sends is dropped */
  int adopted;          /* tlsAdopt: the plaintext side is a service's socket, its errors a reset */
  int plain_errno;      /* the adopted side's failure, told to onEnd */
  char *carry;          /* tlsAdopt: what the socketpair held for its reader, sent first */
  int carry_len, carry_off;
  char *abort_cause;    /* tlsClose's */
  char *reset_cause;    /* tlsClose's with afterPlain: the session ends at the program's EOF */
  char *hello_cause;    /* the hello callback's refusal: the handshake's failure */
  /* TLS -> plain; the two buffers are one block, allocated by pump() when the relay has work
   * and freed when both are empty, with the buffer that gathers the records (gather_on,
   * gather_off): a session in its handshake, or an idle one, costs no more than its SSL (whose
   * own buffers SSL_MODE_RELEASE_BUFFERS frees). */
  char *up;
  int up_len, up_off, up_eof, up_done;
  /* plain -> TLS */
  char *down;
  int down_len, down_off, down_eof, down_done;
  napi_ref on_hello; /* NULL when there is none: no JavaScript in the handshake */
  napi_ref on_peer_end; /* NULL when there is none: the client's end is a half-close */
  napi_ref on_client_hello; /* NULL when there is none: no hold of the ClientHello */
  int hello_hold;           /* 1: held until tlsResume; 2: asked, or resumed */
  js_callback_t on_handshake, on_end;
  int refs; /* the JavaScript handle and the live session */
  deferred_t freeing;
  /* A handshake step on a pool thread (offload.c): the session is the thread's until its done,
   * which hands over SSL_do_handshake's outcome, with the errno and the first error of the
   * queue, both of that thread. */
  offload_job_t job;
  int offloaded, hs_taken;
  /* onHello asked in the client-hello callback, so that the rest can go to a thread: 1 wanted,
   * 2 asked (the servername callback has nothing left to do). */
  int hello_early;
  int hs_r, hs_e, hs_errno;
  unsigned long hs_err;
} session_t;

/* Sessions in their handshake: a step moves to a pool thread only when the loop has another. */
static int handshaking;
/* Handshake steps taken on the loop thread and on a pool thread (tlsHandshakeSteps). */
static double steps_on_loop, steps_on_pool;

/* ---------------------------------------------------------------- contexts */

static int alpn_index = -1;

typedef struct {
  unsigned char *wire; /* ALPN's wire format: length-prefixed names */
  unsigned len;
} alpn_t;

static void alpn_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                      void *argp) {
  (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
  alpn_t *a = ptr;
  if (!a) return;
  free(a->wire);
  free(a);
}

/* The server's preference, as node:tls: no name in common is a no_application_protocol alert. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg) {
  (void)arg;
  alpn_t *a = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), alpn_index);
  if (!a) return SSL_TLSEXT_ERR_NOACK;
  unsigned char *chosen;
  if (SSL_select_next_proto(&chosen, outlen, a->wire, a->len, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

static int servername(SSL *ssl, int *alert, void *arg);
static int client_hello(SSL *ssl, int *alert, void *arg);

static void ctx_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  SSL_CTX_free(data); /* the sessions that use it hold their own references */
}

/* OpenSSL's reason for the latest error, or `otherwise`. */
static const char *ssl_reason(const char *otherwise) {
  const char *r = ERR_reason_error_string(ERR_peek_last_error());
  return r ? r : otherwise;
}

static napi_value throw_tls(napi_env env, SSL_CTX *ctx, const char *what, int openssl) {
  char message[256];
  if (openssl)
    snprintf(message, sizeof message, "%s: %s", what, ssl_reason("unknown error"));
  else
    snprintf(message, sizeof message, "%s", what);
  ERR_clear_error();
  if (ctx) SSL_CTX_free(ctx);
  napi_throw_error(env, NULL, message);
  return NULL;
}

/* A string property of opts, malloc'd; NULL when it is not there. */
static char *opt_string(napi_env env, napi_value opts, const char *name) {
  napi_value v;
  napi_valuetype t;
  if (napi_get_named_property(env, opts, name, &v) != napi_ok) return NULL;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) return NULL;
  return get_string(env, v);
}

/* The leaf and its chain from one PEM buffer; 0, or -1 with nothing loaded. */
static int use_chain(SSL_CTX *ctx, void *pem, size_t len) {
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  if (!bio) return -1;
  X509 *leaf = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL);
  int ok = leaf && SSL_CTX_use_certificate(ctx, leaf) == 1;
  X509_free(leaf);
  X509 *ca;
  while (ok && (ca = PEM_read_bio_X509(bio, NULL, NULL, NULL)))
    if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
      X509_free(ca);
      ok = 0;
    }
  BIO_free(bio);
  if (!ok) return -1;
  ERR_clear_error(); /* the end of the chain is a "no start line" */
  return 0;
}

static int use_key(SSL_CTX *ctx, void *pem, size_t len) {
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  if (!bio) return -1;
  EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
  BIO_free(bio);
  int ok = key && SSL_CTX_use_PrivateKey(ctx, key) == 1;
  EVP_PKEY_free(key);
  return ok ? 0 : -1;
}

/* ALPN's wire format from opts.alpn (an array of names): 0, or -1 for a bad list. */
static int set_alpn(napi_env env, SSL_CTX *ctx, napi_value opts) {
  napi_value list;
  bool is;
  if (napi_get_named_property(env, opts, "alpn", &list) != napi_ok) return 0;
  if (napi_is_array(env, list, &is) != napi_ok || !is) return 0;
  uint32_t n;
  napi_get_array_length(env, list, &n);
  if (n == 0) return 0;
  alpn_t *a = calloc(1, sizeof *a);
  if (!a || !(a->wire = malloc(n * 256))) {
    free(a);
    return -1;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value item;
    napi_get_element(env, list, i, &item);
    char *name = get_string(env, item);
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > 255) {
      free(name);
      alpn_free(NULL, a, NULL, 0, 0, NULL);
      return -1;
    }
    a->wire[a->len++] = (unsigned char)len;
    memcpy(a->wire + a->len, name, len);
    a->len += len;
    free(name);
  }
  SSL_CTX_set_ex_data(ctx, alpn_index, a);
  SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
  return 0;
}

napi_value tls_context(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  void *cert = NULL, *key = NULL;
  size_t cert_len = 0, key_len = 0;
  napi_valuetype t = napi_undefined, t0 = napi_undefined, t1 = napi_undefined;
  if (argc == 3) {
    napi_typeof(env, args[2], &t);
    napi_typeof(env, args[0], &t0);
    napi_typeof(env, args[1], &t1);
  }
  /* Both null: a context with no certificate, to begin a handshake whose certificate the
   * client's name chooses (onHello switches; certificates on demand before the first). */
  int bare = t0 == napi_null && t1 == napi_null;
  if (argc < 3 || t != napi_object ||
      (!bare && (get_buffer(env, args[0], &cert, &cert_len) ||
                 get_buffer(env, args[1], &key, &key_len)))) {
    napi_throw_type_error(env, NULL,
                          "tlsContext(certPem: Buffer | null, keyPem: Buffer | null, opts)");
    return NULL;
  }
  if (alpn_index < 0)
    alpn_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, alpn_free);
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) return throw_tls(env, NULL, "cannot make a TLS context", 1);
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  /* src/tls/protocol.ts: the server's preference, no renegotiation. A bare FIN is an end of
   * input as with node:tls (tlsd tells a close_notify from it by policy, not by failing). */
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  /* One read(2) for what the socket holds, not a record's 5-byte header and then its body: half
   * the reads per record. Safe here: pump() calls SSL_read again whenever its buffer is empty,
   * and WANT_READ still means the socket must be read. OpenSSL 3 applies it from the
   * application level on only (its record layer ignores it before): a handshake still reads
   * header and body apart (SSL_set_read_ahead on the session changes nothing, tried). */
  SSL_CTX_set_read_ahead(ctx, 1);
  /* Tickets only (as node:tls and tlsd): no session cache in the server. */
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  char *ciphers = opt_string(env, args[2], "ciphers");
  char *groups = opt_string(env, args[2], "groups");
  char *sid = opt_string(env, args[2], "sessionIdContext");
  int bad_ciphers = ciphers && SSL_CTX_set_cipher_list(ctx, ciphers) != 1;
  int bad_groups = groups && SSL_CTX_set1_groups_list(ctx, groups) != 1;
  if (sid)
    SSL_CTX_set_session_id_context(ctx, (unsigned char *)sid,
                                   strlen(sid) > SSL_MAX_SID_CTX_LENGTH ? SSL_MAX_SID_CTX_LENGTH
                                                                         : strlen(sid));
  free(ciphers), free(groups), free(sid);
  if (bad_ciphers) return throw_tls(env, ctx, "no usable TLS 1.2 cipher in the list", 0);
  if (bad_groups) return throw_tls(env, ctx, "no usable group in the list", 0);
  napi_value v;
  int32_t timeout;
  if (napi_get_named_property(env, args[2], "sessionTimeout", &v) == napi_ok &&
      get_int(env, v, &timeout) == 0 && timeout > 0)
    SSL_CTX_set_timeout(ctx, timeout);
  if (set_alpn(env, ctx, args[2]) < 0)
    return throw_tls(env, ctx, "an ALPN protocol name must be 1 to 255 bytes", 0);
  if (tls_context_tickets(env, ctx, args[2]) < 0)
    return throw_tls(env, ctx, "ticketKeys is not a key set of tlsTicketKeys", 0);
  if (tls_context_ocsp(env, ctx, args[2]) < 0)
    return throw_tls(env, ctx, "ocsp must be a Buffer, with ocspUntil a number", 0);
  if (!bare && use_chain(ctx, cert, cert_len) < 0)
    return throw_tls(env, ctx, "cannot use the certificate (PEM)", 1);
  if (!bare && use_key(ctx, key, key_len) < 0)
    return throw_tls(env, ctx, "cannot use the private key (PEM)", 1);
  if (!bare && SSL_CTX_check_private_key(ctx) != 1)
    return throw_tls(env, ctx, "the private key does not match the certificate", 0);
  const char *untrusted = tls_trust(env, ctx, args[2]);
  if (untrusted) return throw_tls(env, ctx, untrusted, 1);
  SSL_CTX_set_tlsext_servername_callback(ctx, servername);
  SSL_CTX_set_client_hello_cb(ctx, client_hello, NULL);
  napi_value handle;
  if (napi_create_external(env, ctx, ctx_finalize, NULL, &handle) != napi_ok) {
    SSL_CTX_free(ctx);
    return NULL;
  }
  napi_type_tag_object(env, handle, &CTX_TAG);
  return handle;
}

/* The pointer of an external made here with `tag`, else NULL. */
void *tagged(napi_env env, napi_value v, const napi_type_tag *tag) {
  bool is = false;
  void *data = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external) return NULL;
  if (napi_check_object_type_tag(env, v, tag, &is) != napi_ok || !is) return NULL;
  napi_get_value_external(env, v, &data);
  return data;
}

static SSL_CTX *ctx_of(napi_env env, napi_value v) { return tagged(env, v, &CTX_TAG); }

/* ---------------------------------------------------------------- sessions */

static void step(session_t *s);

static void session_unref(void *arg) {
  session_t *s = arg;
  if (--s->refs > 0) return;
  free(s->abort_cause);
  free(s->reset_cause);
  free(s->hello_cause);
  free(s->carry);
  free(s);
}

static void session_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  session_unref(data);
}

static void release_callbacks(void *arg) {
  session_t *s = arg;
  if (s->on_hello) napi_delete_reference(s->env, s->on_hello);
  if (s->on_peer_end) napi_delete_reference(s->env, s->on_peer_end);
  if (s->on_client_hello) napi_delete_reference(s->env, s->on_client_hello);
  js_callback_free(&s->on_handshake);
  js_callback_free(&s->on_end);
  session_unref(s);
}

/* The end, once: out of the set, the plaintext side told at once on a failure (its EOF; what
 * it writes after stays readable, for the caller to learn that it wrote on), onEnd. */
static void session_end(session_t *s, const char *cause) {
  if (s->state == S_ENDED) return;
  if (s->state == S_HANDSHAKE) handshaking--;
  /* What the program wrote that the client will never get: in the engine's buffer, or still
   * in the socketpair (node:tls's path calls that "connection lost before the program was
   * done"). */
  int queued = 0;
  bool unsent = s->state == S_RELAY && ((s->down_len > 0 && !s->discard) ||
                                        (ioctl(s->pfd, FIONREAD, &queued) == 0 && queued > 0));
  s->state = S_ENDED;
  /* Records gathered and not out yet (an alert, or the program's before a tlsClose): one try,
   * as they would have had without the buffer. */
  if (s->ssl) gather_flush(s->ssl);
  watch_change(&s->tcp, 0);
  if (s->pfd >= 0) watch_change(&s->plain, 0);
  if (s->wfd != s->pfd) watch_change(&s->plain_out, 0);
  watch_hold(-1);
  /* An adopted side is the stage's to end (a reset, for a client lost): no FIN first. */
  if (cause && s->wfd >= 0 && !s->adopted) shutdown(s->wfd, SHUT_WR);
  SSL_free(s->ssl);
  s->ssl = NULL;
  free(s->up);
  s->up = s->down = NULL;
  ERR_clear_error();
  napi_handle_scope scope;
  napi_open_handle_scope(s->env, &scope);
  napi_value args[3];
  if (cause)
    napi_create_string_utf8(s->env, cause, NAPI_AUTO_LENGTH, &args[0]);
  else
    napi_get_undefined(s->env, &args[0]);
  napi_get_boolean(s->env, unsent, &args[1]);
  napi_create_int32(s->env, s->plain_errno, &args[2]);
  js_callback_call(&s->on_end, 3, args);
  napi_close_handle_scope(s->env, scope);
  /* After the current pass: a later event of it may name this session's watches. */
  watch_defer(&s->freeing, release_callbacks, s);
}

/* A failed SSL call's cause, in `phase`'s words; a failure of the socket's own is the client's
 * once the handshake is done. */
static void fail_ssl(session_t *s, int err, const char *phase) {
  char cause[256];
  /* The first error of the queue is the cause, as node:tls says it ("decryption failed or
   * bad record mac"); the last is OpenSSL's summary ("record layer failure"). */
  const char *first = ERR_reason_error_string(s->hs_err ? s->hs_err : ERR_peek_error());
  if (err == SSL_ERROR_SSL)
    snprintf(cause, sizeof cause, "%s: %s", phase, first ? first : "protocol error");
  else if (err == SSL_ERROR_SYSCALL && errno != 0)
    snprintf(cause, sizeof cause, "%s: %s", s->state == S_HANDSHAKE ? phase : "client",
             strerror(errno));
  else
    snprintf(cause, sizeof cause, "%s: the client closed the connection", phase);
  session_end(s, cause);
}

static void fail_errno(session_t *s, const char *side, int err) {
  char cause[256];
  snprintf(cause, sizeof cause, "%s: %s", side, strerror(err));
  session_end(s, cause);
}

static napi_value facts_of(session_t *s) {
  napi_env env = s->env;
  napi_value facts, v;
  napi_create_object(env, &facts);
  napi_create_string_utf8(env, SSL_get_version(s->ssl), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, facts, "version", v);
  napi_create_string_utf8(env, SSL_CIPHER_get_name(SSL_get_current_cipher(s->ssl)),
                          NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, facts, "cipher", v);
  const char *group = SSL_get0_group_name(s->ssl);
  if (group) {
    napi_create_string_latin1(env, group, NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, facts, "group", v);
  }
  napi_get_boolean(env, SSL_session_reused(s->ssl) == 1, &v);
  napi_set_named_property(env, facts, "resumed", v);
  const char *name = SSL_get_servername(s->ssl, TLSEXT_NAMETYPE_host_name);
  if (name) {
    napi_create_string_latin1(env, name, NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, facts, "servername", v);
  }
  const unsigned char *alpn;
  unsigned alpn_len;
  SSL_get0_alpn_selected(s->ssl, &alpn, &alpn_len);
  if (alpn_len > 0) {
    napi_create_string_latin1(env, (const char *)alpn, alpn_len, &v);
    napi_set_named_property(env, facts, "alpn", v);
  }
  X509 *peer = SSL_get1_peer_certificate(s->ssl);
  if (peer) {
    unsigned char *der = NULL;
    int len = i2d_X509(peer, &der);
    if (len > 0) {
      napi_create_buffer_copy(env, (size_t)len, der, NULL, &v);
      napi_set_named_property(env, facts, "peerCertificateDer", v);
    }
    OPENSSL_free(der);
    X509_free(peer);
  }
  tls_verify_facts(env, s->ssl, facts);
  return facts;
}

/* onHello(name), the policy, picks the context: 0, with the one it chose in place; -1 when it
 * refused the name by a throw or a null (its words are the handshake's failure). */
static int ask_hello(session_t *s, const char *name, size_t name_len) {
  SSL *ssl = s->ssl;
  napi_env env = s->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value fn, recv, argv[1], result;
  napi_get_reference_value(env, s->on_hello, &fn);
  napi_get_global(env, &recv);
  if (name)
    napi_create_string_latin1(env, name, name_len, &argv[0]);
  else
    napi_get_undefined(env, &argv[0]);
  char cause[256] = "";
  if (napi_call_function(env, recv, fn, 1, argv, &result) != napi_ok) {
    napi_value error, message;
    char text[200] = "the server name callback failed";
    size_t len;
    if (napi_get_and_clear_last_exception(env, &error) == napi_ok &&
        napi_coerce_to_string(env, error, &message) == napi_ok)
      napi_get_value_string_utf8(env, message, text, sizeof text, &len);
    snprintf(cause, sizeof cause, "TLS handshake failed: %s", text);
  } else {
    napi_valuetype t;
    napi_typeof(env, result, &t);
    SSL_CTX *ctx = t == napi_undefined ? NULL : ctx_of(env, result);
    if (ctx)
      SSL_set_SSL_CTX(ssl, ctx);
    else if (t != napi_undefined && name)
      snprintf(cause, sizeof cause, "TLS handshake failed: no certificate for %.*s",
               (int)name_len, name);
    else if (t != napi_undefined)
      snprintf(cause, sizeof cause, "TLS handshake failed: no certificate for (no server name)");
  }
  napi_close_handle_scope(env, scope);
  if (!cause[0]) return 0;
  free(s->hello_cause);
  s->hello_cause = strdup(cause);
  return -1;
}

/* OpenSSL's servername callback, called for every ClientHello (name or not), unless the
 * client-hello callback has asked the policy already (hello_early). A refusal is an
 * unrecognized_name alert. */
static int servername(SSL *ssl, int *alert, void *arg) {
  (void)arg;
  session_t *s = SSL_get_app_data(ssl);
  if (!s || !s->on_hello || s->hello_early == 2) return SSL_TLSEXT_ERR_OK;
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (ask_hello(s, name, name ? strlen(name) : 0) == 0) return SSL_TLSEXT_ERR_OK;
  *alert = SSL_AD_UNRECOGNIZED_NAME;
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* OpenSSL's client-hello callback, before the servername one: onClientHello may hold the
 * handshake (certificates on demand order one meanwhile) until tlsResume; OpenSSL calls this
 * again then. With hello_early, onHello is asked here too and the step retried, so that its
 * rest (the servername callback with nothing left to ask, the key exchange, the signature)
 * can go to a thread. */
static int client_hello(SSL *ssl, int *alert, void *arg) {
  (void)arg;
  session_t *s = SSL_get_app_data(ssl);
  if (!s) return SSL_CLIENT_HELLO_SUCCESS;
  if (s->on_client_hello && s->hello_hold != 2) {
    if (s->hello_hold == 1 || hello_hold_ask(s->env, ssl, s->on_client_hello)) {
      s->hello_hold = 1;
      return SSL_CLIENT_HELLO_RETRY;
    }
    s->hello_hold = 2;
  }
  if (s->hello_early == 1) {
    /* The policy now, on the loop; the rest of the step on a thread, after this retry. */
    const char *name;
    size_t len;
    int found = hello_server_name(ssl, &name, &len);
    if (found < 0) { /* OpenSSL judges it, and the servername callback asks as always */
      s->hello_early = 0;
      return SSL_CLIENT_HELLO_SUCCESS;
    }
    s->hello_early = 2;
    if (s->on_hello && ask_hello(s, found ? name : NULL, len) < 0) {
      *alert = SSL_AD_UNRECOGNIZED_NAME;
      return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_RETRY;
  }
  return SSL_CLIENT_HELLO_SUCCESS;
}

/* Records a close_notify from the client: with SSL_OP_IGNORE_UNEXPECTED_EOF, SSL_read says the
 * same of a bare FIN, and -J (and the TLS 1.2 rule) must tell them apart. */
static void on_message(int write_p, int version, int content_type, const void *buf, size_t len,
                       SSL *ssl, void *arg) {
  (void)version, (void)arg;
  const unsigned char *alert = buf;
  if (write_p || content_type != SSL3_RT_ALERT || len < 2 || alert[1] != SSL_AD_CLOSE_NOTIFY)
    return;
  session_t *s = SSL_get_app_data(ssl);
  if (s) s->peer_notify = 1;
}

/* onPeerEnd(closeNotify): the client's end has been read; true ends the whole session (the
 * TLS 1.2 close_notify rule), and it may call tlsClose (-J). A throw is Node's uncaught
 * exception, and the end a half-close. */
static int peer_end(session_t *s) {
  napi_env env = s->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value fn, recv, arg, result;
  napi_get_reference_value(env, s->on_peer_end, &fn);
  napi_get_global(env, &recv);
  napi_get_boolean(env, s->peer_notify, &arg);
  bool finish = false;
  if (napi_call_function(env, recv, fn, 1, &arg, &result) == napi_ok)
    napi_get_value_bool(env, result, &finish);
  js_uncaught_if_thrown(env);
  napi_close_handle_scope(env, scope);
  return finish;
}

static int need_of(int err) {
  return err == SSL_ERROR_WANT_READ ? NEED_IN : err == SSL_ERROR_WANT_WRITE ? NEED_OUT : 0;
}

/* An adopted plaintext side failed (the service reset): as a relay's peer reset passed on
 * (tlsClose's afterPlain), what it sent before still reaches the client, then the session ends,
 * with no close_notify; nothing more goes to it. */
static void plain_broke(session_t *s, int err) {
  if (s->plain_errno) return;
  char cause[256];
  snprintf(cause, sizeof cause, "plaintext side: %s", strerror(err));
  free(s->reset_cause);
  s->reset_cause = strdup(cause);
  s->plain_errno = err;
  s->down_eof = 1;
  s->up_drop = 1;
  s->up_len = 0;
  s->carry_len = 0;
}

/* A plaintext-side call's outcome: 1 it moved bytes (or met the end), 0 it would block
 * (*blocked set) or the adopted side broke, -1 it failed (the session has ended). */
static int plain_outcome(session_t *s, ssize_t n, int *blocked) {
  if (n >= 0) return 1;
  if (errno == EAGAIN || errno == EINTR) {
    *blocked = 1;
    return 0;
  }
  if (s->adopted) {
    plain_broke(s, errno);
    s->again = 1;
    return 0;
  }
  fail_errno(s, "plaintext side", errno);
  return -1;
}

/* The records gathered go out: 0 all out, 1 the rest waits for EPOLLOUT, -1 the session
 * failed. */
static int flush_gathered(session_t *s) {
  int f = gather_flush(s->ssl);
  if (f > 0) s->wr_need |= NEED_OUT;
  if (f < 0) fail_errno(s, "client", errno);
  return f;
}

/* The client's socket BIO's reads, as they return: whether OpenSSL got less than it asked for
 * (with read-ahead it asks for all its buffer holds). */
static long tls_read_seen(BIO *b, int oper, const char *argp, size_t len, int argi, long argl,
                          int ret, size_t *processed) {
  (void)argp;
  (void)argi;
  (void)argl;
  if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
    session_t *s = (session_t *)BIO_get_callback_arg(b);
    if (s) s->tls_short = ret <= 0 || (processed && *processed < len);
  }
  return oper & BIO_CB_RETURN ? ret : 1;
}

/* Moves what can move without blocking, both ways; -1 when it failed (the session ended). */
static int pump(session_t *s) {
  if (!s->up && (s->up = malloc(TLS_BUF + DOWN_BUF))) s->down = s->up + TLS_BUF;
  if (!s->up) {
    fail_errno(s, "relay", ENOMEM);
    return -1;
  }
  gather_on(s->ssl);
  for (;;) {
    int progress = 0, r, e, f = 0;
    ssize_t n;
    /* TLS -> plain */
    /* A download goes round this loop once a record: an SSL_read of a client that has sent
     * nothing would cost a read() that fails each time (a third of the system calls). */
    if (!s->tls_dry) s->rd_need = 0;
    int want_up = !s->up_eof && s->up_len == 0 && !s->tls_dry; /* room, and not waiting */
    if (want_up && s->tls_drained) {
      s->rd_need = NEED_IN;
      s->tls_dry = 1;
    } else if (want_up) {
      ERR_clear_error();
      r = SSL_read(s->ssl, s->up, TLS_BUF);
      if (r > 0) {
        s->up_len = s->up_drop ? 0 : r;
        s->up_off = 0;
        s->tls_drained = s->tls_short && !SSL_has_pending(s->ssl);
        progress = 1;
      } else if ((e = SSL_get_error(s->ssl, r)) == SSL_ERROR_ZERO_RETURN) {
        s->up_eof = 1; /* close_notify, or a bare FIN */
        progress = 1;
        if (s->on_peer_end) {
          int finish = peer_end(s);
          if (s->abort_cause) return 0; /* tlsClose from it: step() ends the session */
          s->discard = finish;
        }
      } else if (!(s->rd_need = need_of(e))) {
        fail_ssl(s, e, "TLS");
        return -1;
      }
      s->tls_dry = s->rd_need == NEED_IN;
    }
    s->pout = 0;
    if (s->carry_len > 0) {
      n = send(s->wfd, s->carry + s->carry_off, (size_t)s->carry_len, MSG_NOSIGNAL);
      if ((r = plain_outcome(s, n, &s->pout)) < 0) return -1;
      if (r > 0) {
        s->carry_off += (int)n;
        s->carry_len -= (int)n;
        progress = 1;
      }
    }
    if (s->up_len > 0 && s->carry_len == 0) {
      n = send(s->wfd, s->up + s->up_off, (size_t)s->up_len, MSG_NOSIGNAL);
      if (n < 0 && !s->adopted && (errno == EPIPE || errno == ECONNRESET)) {
        /* The program is gone, or shut its reading side: its output, and our goodbye, still
         * go out, as node:tls's session does when the program has ended. */
        s->up_drop = 1;
        s->up_len = 0;
        progress = 1;
      } else if ((r = plain_outcome(s, n, &s->pout)) < 0) {
        return -1;
      } else if (r > 0) {
        s->up_off += (int)n;
        s->up_len -= (int)n;
        progress = 1;
      }
    }
    if (s->up_eof && s->up_len == 0 && s->carry_len == 0 && !s->up_done) {
      shutdown(s->wfd, SHUT_WR);
      s->up_done = 1;
      progress = 1;
    }
    /* plain -> TLS */
    s->pin = 0;
    int want_down = !s->down_eof && s->down_len == 0;
    if (want_down && s->plain_drained) {
      s->pin = 1;
    } else if (want_down) {
      n = recv(s->pfd, s->down, DOWN_BUF, 0);
      if (n < 0 && errno == ECONNRESET && !s->adopted) {
        /* A socketpair has no reset: the program closed its end with bytes of ours unread
         * (it answered without reading, `echo`). That is its end: a close_notify follows. */
        n = 0;
        s->up_drop = 1;
        s->up_len = 0;
      }
      if ((r = plain_outcome(s, n, &s->pin)) < 0) return -1;
      if (r > 0) {
        s->down_len = (int)n;
        s->down_off = 0;
        s->down_eof = n == 0;
        s->plain_drained = n > 0 && n < DOWN_BUF;
        progress = 1;
      }
    }
    if (s->discard) s->down_len = 0; /* the session is over: the program's words go nowhere */
    if (s->reset_cause && s->down_eof && s->down_len == 0) {
      if ((f = flush_gathered(s)) != 0) return f; /* out first: on EPOLLOUT */
      session_end(s, s->reset_cause); /* what the program wrote is out; no goodbye */
      return -1;
    }
    s->wr_need = 0;
    if (s->down_len > 0) {
      ERR_clear_error();
      r = SSL_write(s->ssl, s->down + s->down_off, s->down_len);
      if (r > 0) {
        s->down_off += r;
        s->down_len -= r;
        progress = 1;
      } else if (!(s->wr_need = need_of(e = SSL_get_error(s->ssl, r)))) {
        fail_ssl(s, e, "TLS");
        return -1;
      }
    }
    if ((s->discard || (s->down_eof && s->down_len == 0)) && !s->tls_closed) {
      r = 1;
      /* Once: a second SSL_shutdown would read the client's close_notify, or its data. */
      if ((s->close_notify || s->discard) && !s->notify_sent) {
        ERR_clear_error();
        r = SSL_shutdown(s->ssl); /* 0: sent, the client's is not here yet */
        if (r < 0 && !(s->wr_need = need_of(e = SSL_get_error(s->ssl, r)))) {
          fail_ssl(s, e, "TLS");
          return -1;
        }
        s->notify_sent = r >= 0;
      }
      /* The FIN after the last record: what is gathered goes out first. */
      if (r >= 0 && (f = flush_gathered(s)) < 0) return -1;
      if (r >= 0 && f == 0) {
        shutdown(s->fd, SHUT_WR);
        s->tls_closed = 1;
        progress = 1;
      }
    }
    if (s->tls_closed && s->down_eof && !s->down_done) {
      s->down_done = 1;
      progress = 1;
    }
    if (!progress) break;
  }
  if (flush_gathered(s) < 0) return -1;
  if (s->up_len == 0 && s->down_len == 0) { /* nothing held: idle, or blocked with none */
    free(s->up);
    s->up = s->down = NULL;
    gather_off(s->ssl); /* once its records are out: else at the pass after EPOLLOUT */
  }
  return 0;
}

/* Each socket is in the set for what the session waits for, else for its errors alone (a reset
 * while the other side is slow ends the session at once), unless it hung up cleanly. */
static void update_watches(session_t *s) {
  int tcp = s->hs_need | s->rd_need | s->wr_need;
  uint32_t ev = (tcp & NEED_IN ? EPOLLIN : 0) | (tcp & NEED_OUT ? EPOLLOUT : 0);
  watch_change(&s->tcp, ev ? ev : s->quiet[0] ? 0 : EPOLLERR);
  if (s->state != S_RELAY) return;
  uint32_t out = s->pout ? EPOLLOUT : 0;
  int split = s->wfd != s->pfd;
  ev = (s->pin ? EPOLLIN : 0) | (split ? 0 : out);
  watch_change(&s->plain, ev ? ev : s->quiet[1] ? 0 : EPOLLERR);
  if (split) watch_change(&s->plain_out, out ? out : s->quiet[2] ? 0 : EPOLLERR);
}

/* On a pool thread: one SSL_do_handshake, and what the loop thread needs to read of it. */
static void handshake_work(offload_job_t *job) {
  session_t *s = (session_t *)((char *)job - offsetof(session_t, job));
  ERR_clear_error();
  errno = 0;
  s->hs_r = SSL_do_handshake(s->ssl);
  s->hs_e = SSL_get_error(s->ssl, s->hs_r);
  s->hs_errno = errno;
  s->hs_err = ERR_peek_error();
  ERR_clear_error();
}

static void handshake_done(offload_job_t *job) {
  session_t *s = (session_t *)((char *)job - offsetof(session_t, job));
  s->offloaded = 0;
  s->hs_taken = 1;
  steps_on_pool++;
  step(s);
}

/* Whether this handshake step goes to a pool thread: not while the loop has no other session
 * in its handshake (one client at a time gains nothing from the hand-over), nor when the
 * threads have enough waiting. A session whose handshake asks the policy (onClientHello,
 * onHello) asks it on the loop first, in the client-hello callback (hello_early). */
static int hand_over(session_t *s) {
  if (handshaking < 2 || !offload_room(s->env)) return 0;
  if ((!s->on_hello && !s->on_client_hello) || s->hello_early == 2) return 1;
  s->hello_early = 1; /* this step on the loop, up to the ClientHello's policy */
  return 0;
}

static void step(session_t *s) {
  if (s->offloaded) return; /* its done steps it */
  if (s->in_step) {
    s->again = 1;
    return;
  }
  s->in_step = 1;
  do {
    s->again = 0;
    if (s->state == S_ENDED) break;
    if (s->abort_cause) {
      session_end(s, s->abort_cause);
      break;
    }
    if (s->state == S_HANDSHAKE) {
      int r, e;
      if (s->hs_taken) {
        s->hs_taken = 0;
        r = s->hs_r, e = s->hs_e;
        errno = s->hs_errno;
      } else if (hand_over(s)) {
        s->offloaded = 1;
        s->hs_need = 0;
        watch_change(&s->tcp, 0); /* the thread's until it is done */
        s->job = (offload_job_t){.work = handshake_work, .done = handshake_done};
        offload_submit(&s->job);
        s->in_step = 0;
        return;
      } else {
        ERR_clear_error();
        s->hs_err = 0;
        steps_on_loop++;
        r = SSL_do_handshake(s->ssl);
        e = SSL_get_error(s->ssl, r);
      }
      if (s->abort_cause) { /* tlsClose from the hello callback, or while on a thread */
        session_end(s, s->abort_cause);
        break;
      }
      if (r == 1) {
        s->hs_need = 0;
        s->hs_err = 0;
        s->state = S_READY;
        handshaking--;
        napi_handle_scope scope;
        napi_open_handle_scope(s->env, &scope);
        napi_value facts = facts_of(s);
        js_callback_call(&s->on_handshake, 1, &facts); /* it may call tlsRelay or tlsClose */
        napi_close_handle_scope(s->env, scope);
        s->again = 1;
        continue;
      }
      if (e == SSL_ERROR_WANT_CLIENT_HELLO_CB && s->hello_early == 2) {
        s->again = 1; /* the policy has chosen: the rest of the step, on a thread if it can */
        continue;
      }
      if (e == SSL_ERROR_WANT_CLIENT_HELLO_CB) { /* held: tlsResume goes on */
        s->hs_need = 0;
        break;
      }
      if (!(s->hs_need = need_of(e))) {
        char refused[256];
        if (s->hello_cause)
          session_end(s, s->hello_cause);
        else if (tls_verify_refusal(s->ssl, refused, sizeof refused))
          session_end(s, refused);
        else
          fail_ssl(s, e, "TLS handshake failed");
        break;
      }
    } else if (s->state == S_RELAY) {
      if (pump(s) < 0) break;
      if (s->up_done && s->down_done) {
        session_end(s, NULL);
        break;
      }
    }
  } while (s->again);
  s->in_step = 0;
  if (s->state != S_ENDED) update_watches(s);
}

/* A socket's events: an error or a hang-up the session was not waiting for is looked at here
 * (what it waits for meets it in its own calls). */
static void session_event(watch_t *w, uint32_t events) {
  session_t *s = w->owner;
  if (s->state == S_ENDED) return;
  if (w->index == 0) s->tls_dry = s->tls_drained = 0;
  if (w->index == 1 && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
    s->plain_drained = 0;
  if ((events & (EPOLLERR | EPOLLHUP)) && !(w->added & (EPOLLIN | EPOLLOUT))) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err && w->index != 0 && s->adopted) {
      plain_broke(s, err);
    } else if (err) {
      fail_errno(s, w->index == 0 ? "client" : "plaintext side", err);
      return;
    } else {
      s->quiet[w->index] = 1;
    }
  }
  step(s);
}

static session_t *session_of(napi_env env, napi_value v) {
  return tagged(env, v, &SESSION_TAG);
}

static int callback_arg(napi_env env, napi_value obj, const char *name, napi_value *fn,
                        int optional) {
  napi_valuetype t = napi_undefined;
  if (napi_get_named_property(env, obj, name, fn) == napi_ok) napi_typeof(env, *fn, &t);
  if (t == napi_function) return 1;
  if (optional && t == napi_undefined) return 0;
  return -1;
}

napi_value tls_serve(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3], hello, handshake, end, v;
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  int32_t fd;
  if (argc < 3 || number_arg(env, args[0], &fd)) return NULL;
  SSL_CTX *ctx = ctx_of(env, args[1]);
  napi_valuetype t = napi_undefined;
  napi_typeof(env, args[2], &t);
  int has_hello = t == napi_object ? callback_arg(env, args[2], "onHello", &hello, 1) : -1;
  napi_value peer_end_fn;
  int has_peer_end =
      t == napi_object ? callback_arg(env, args[2], "onPeerEnd", &peer_end_fn, 1) : -1;
  napi_value client_hello_fn;
  int has_client_hello =
      t == napi_object ? callback_arg(env, args[2], "onClientHello", &client_hello_fn, 1) : -1;
  if (!ctx || has_hello < 0 || has_peer_end < 0 || has_client_hello < 0 || callback_arg(env, args[2], "onHandshake", &handshake, 0) < 0 ||
      callback_arg(env, args[2], "onEnd", &end, 0) < 0) {
    napi_throw_type_error(
        env, NULL,
        "tlsServe(fd, context, { onHello?, onClientHello?, onHandshake, onEnd, onPeerEnd?, "
        "closeNotify? })");
    return NULL;
  }
  if (watch_open(env) < 0) return throw_errno(env, errno, "epoll_create1");
  session_t *s = calloc(1, sizeof *s);
  if (!s || !(s->ssl = SSL_new(ctx))) {
    free(s);
    return throw_errno(env, ENOMEM, "tlsServe");
  }
  s->env = env;
  s->fd = fd;
  s->pfd = s->wfd = -1;
  s->close_notify = 1;
  bool b;
  if (napi_get_named_property(env, args[2], "closeNotify", &v) == napi_ok &&
      napi_get_value_bool(env, v, &b) == napi_ok)
    s->close_notify = b;
  int on = 1;
  ioctl(fd, FIONBIO, &on);
  /* Whole records go at once: with Nagle the one after the tickets waited for a delayed ACK. */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  SSL_set_fd(s->ssl, fd);
  BIO_set_callback_ex(SSL_get_rbio(s->ssl), tls_read_seen);
  BIO_set_callback_arg(SSL_get_rbio(s->ssl), (char *)s);
  SSL_set_accept_state(s->ssl);
  SSL_set_app_data(s->ssl, s);
  tls_verify_mode(env, s->ssl, args[2]);
  s->tcp = (watch_t){.fd = fd, .owner = s, .index = 0, .ready = session_event};
  s->plain = (watch_t){.fd = -1, .owner = s, .index = 1, .ready = session_event};
  s->plain_out = (watch_t){.fd = -1, .owner = s, .index = 2, .ready = session_event};
  /* The ClientHello is rarely there yet: wait for it rather than read EAGAIN first. */
  s->hs_need = NEED_IN;
  if (watch_change(&s->tcp, EPOLLIN) < 0) {
    int e = errno;
    SSL_free(s->ssl);
    free(s);
    return throw_errno(env, e, "epoll_ctl");
  }
  watch_hold(1);
  handshaking++;
  if (has_hello) napi_create_reference(env, hello, 1, &s->on_hello);
  if (has_client_hello) napi_create_reference(env, client_hello_fn, 1, &s->on_client_hello);
  if (has_peer_end) {
    napi_create_reference(env, peer_end_fn, 1, &s->on_peer_end);
    SSL_set_msg_callback(s->ssl, on_message);
  }
  js_callback_init(&s->on_handshake, env, handshake, "ucspi.tlsHandshake");
  js_callback_init(&s->on_end, env, end, "ucspi.tlsEnd");
  s->refs = 2;
  napi_value handle;
  napi_create_external(env, s, session_finalize, NULL, &handle);
  napi_type_tag_object(env, handle, &SESSION_TAG);
  return handle;
}

napi_value tls_relay(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value args[4];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  session_t *s = argc >= 2 ? session_of(env, args[0]) : NULL;
  int32_t pfd, wfd;
  if (!s) {
    napi_throw_type_error(env, NULL, "tlsRelay(session, plainFd, writeFd?, first?)");
    return NULL;
  }
  /* first: the program's bytes read before the relay (a resumed session's greeting, and what
   * followed it): they go to the client before anything read from plainFd. */
  void *first = NULL;
  size_t first_len = 0;
  bool is_buffer = false;
  if (argc == 4) napi_is_buffer(env, args[3], &is_buffer);
  if (is_buffer) CHECK(napi_get_buffer_info(env, args[3], &first, &first_len));
  if (first_len > DOWN_BUF) {
    napi_throw_range_error(env, NULL, "tlsRelay: first is longer than the relay's buffer");
    return NULL;
  }
  if (number_arg(env, args[1], &pfd)) return NULL;
  /* tlsd -n: the program's two pairs, one read (plainFd), one written (writeFd). */
  napi_valuetype t = napi_undefined;
  if (argc >= 3) napi_typeof(env, args[2], &t);
  if (t == napi_undefined)
    wfd = pfd;
  else if (number_arg(env, args[2], &wfd))
    return NULL;
  if (s->state == S_ENDED) return NULL; /* onEnd has said why */
  if (s->state != S_READY) {
    napi_throw_error(env, NULL, "tlsRelay: the handshake is not done, or the relay has begun");
    return NULL;
  }
  int on = 1;
  ioctl(pfd, FIONBIO, &on);
  if (wfd != pfd) ioctl(wfd, FIONBIO, &on);
  s->pfd = pfd;
  s->plain.fd = pfd;
  s->wfd = wfd;
  s->plain_out.fd = wfd;
  if (first_len > 0) {
    if (!s->up && (s->up = malloc(TLS_BUF + DOWN_BUF))) s->down = s->up + TLS_BUF;
    if (!s->up) {
      fail_errno(s, "relay", ENOMEM);
      return NULL;
    }
    memcpy(s->down, first, first_len);
    s->down_len = (int)first_len;
    s->down_off = 0;
  }
  s->state = S_RELAY;
  /* Nothing to read there yet (a program is not even spawned): epoll says when there is, which
   * saves a recv that fails on every connection. */
  s->plain_drained = 1;
  if (watch_change(&s->plain, EPOLLERR) < 0 ||
      (wfd != pfd && watch_change(&s->plain_out, EPOLLERR) < 0)) {
    fail_errno(s, "plaintext side", errno);
    return NULL;
  }
  step(s);
  return NULL;
}

/* tlsPending(session): whether the program's bytes are still on their way to the client (in
 * the relay's buffer, gathered, or waiting in the socket pair) and will go once the client
 * reads: tlsd's goodbye, which follows the program's exit, waits for those rather than cut
 * them off. False once the session is over, or when what it waits for is the program's side. */
napi_value tls_pending(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg, out;
  CHECK(napi_get_cb_info(env, info, &argc, &arg, NULL, NULL));
  session_t *s = argc == 1 ? session_of(env, arg) : NULL;
  if (!s) {
    napi_throw_type_error(env, NULL, "tlsPending(session)");
    return NULL;
  }
  int queued = 0;
  bool pending = s->state == S_RELAY && !s->discard && !s->tls_closed &&
                 (s->down_len > 0 || gather_pending(s->ssl) > 0 ||
                  (ioctl(s->pfd, FIONREAD, &queued) == 0 && queued > 0));
  CHECK(napi_get_boolean(env, pending, &out));
  return out;
}

/* tlsAdopt(session, fd, staleFd): the relay's plaintext side moves from one end of the
 * socketpair to fd, the stage behind's own socket (tcpforward's service), and the bytes take one
 * hop less. What the engine wrote to the pair and its reader (staleFd, the other end) never read
 * goes first; a client's end already passed on is passed on again, to fd. The caller closes
 * both ends of the pair after; fd's failures are a reset of the service (plain_broke). */
napi_value tls_adopt(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  session_t *s = argc == 3 ? session_of(env, args[0]) : NULL;
  int32_t fd, stale;
  if (!s || number_arg(env, args[1], &fd) || number_arg(env, args[2], &stale)) {
    if (!s) napi_throw_type_error(env, NULL, "tlsAdopt(session, fd, staleFd)");
    return NULL;
  }
  if (s->state == S_ENDED) return NULL; /* onEnd has said why */
  if (s->state != S_RELAY || s->adopted || s->pfd != s->wfd) {
    napi_throw_error(env, NULL, "tlsAdopt: no relay to one socket, or adopted already");
    return NULL;
  }
  int queued = 0;
  if (ioctl(stale, FIONREAD, &queued) == 0 && queued > 0 && (s->carry = malloc(queued))) {
    while (s->carry_len < queued) {
      ssize_t n = recv(stale, s->carry + s->carry_len, (size_t)(queued - s->carry_len),
                       MSG_DONTWAIT);
      if (n <= 0) break;
      s->carry_len += (int)n;
    }
  }
  watch_change(&s->plain, 0);
  int on = 1;
  ioctl(fd, FIONBIO, &on);
  s->pfd = s->wfd = s->plain.fd = fd;
  s->quiet[1] = 0;
  s->plain_drained = 0;
  s->adopted = 1;
  s->up_done = 0; /* the client's end, if it came, goes to fd too */
  if (watch_change(&s->plain, EPOLLERR) < 0) {
    plain_broke(s, errno);
    s->plain.fd = -1;
  }
  step(s);
  return NULL;
}

napi_value tls_close(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  session_t *s = argc >= 1 ? session_of(env, args[0]) : NULL;
  if (!s) {
    napi_throw_type_error(env, NULL, "tlsClose(session, cause?, afterPlain?)");
    return NULL;
  }
  if (s->state == S_ENDED) return NULL;
  char *cause = argc >= 2 ? get_string(env, args[1]) : NULL;
  bool after_plain = false;
  if (argc == 3) napi_get_value_bool(env, args[2], &after_plain);
  if (after_plain && s->state == S_RELAY && !s->down_eof) {
    /* A relay's peer was reset: what the program side wrote before it still goes out. */
    free(s->reset_cause);
    s->reset_cause = cause ? cause : strdup("closed");
    step(s);
    return NULL;
  }
  free(s->abort_cause);
  s->abort_cause = cause ? cause : strdup("closed");
  if (s->in_step || s->offloaded) {
    /* From a callback of its own, or in a step on a pool thread: step() ends it when it is
     * back. */
    s->again = 1;
    return NULL;
  }
  session_end(s, s->abort_cause);
  return NULL;
}

/* tlsHandshakeSteps(): [on the loop thread, on a pool thread], since the process started. */
napi_value tls_handshake_steps(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value list, v;
  napi_create_array_with_length(env, 2, &list);
  napi_create_double(env, steps_on_loop, &v);
  napi_set_element(env, list, 0, v);
  napi_create_double(env, steps_on_pool, &v);
  napi_set_element(env, list, 1, v);
  return list;
}

/* tlsShareCores(processes): the engine's handshake threads take this process's share of the
 * cores (tcpserver --workers); before the first handshake. */
napi_value tls_share_cores(napi_env env, napi_callback_info info) {
  int32_t processes;
  if (int_args(env, info, 1, &processes) < 0) return NULL;
  offload_share(processes);
  return NULL;
}

/* tlsResume(session): the handshake that onClientHello held goes on. */
napi_value tls_resume(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  CHECK(napi_get_cb_info(env, info, &argc, &arg, NULL, NULL));
  session_t *s = argc == 1 ? session_of(env, arg) : NULL;
  if (!s) {
    napi_throw_type_error(env, NULL, "tlsResume(session)");
    return NULL;
  }
  if (s->state != S_HANDSHAKE || s->hello_hold != 1) return NULL; /* ended, or not held */
  s->hello_hold = 2;
  step(s);
  return NULL;
}
