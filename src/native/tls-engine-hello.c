/* What a ClientHello asks for, read by the native TLS engine's client-hello callback for
 * onClientHello(serverName, alpn) (tls-engine.c): the policy (certificates on demand) may hold
 * the handshake there while it orders a certificate, and tlsResume goes on with it. And the
 * server name as OpenSSL would take it, for onHello asked there rather than in the servername
 * callback (a handshake whose rest goes to a thread). */
#include <node_api.h>
#include <openssl/ssl.h>
#include <openssl/tls1.h>
#include <string.h>

#include "common.h"

/* The host name of the server_name extension, as a string, or undefined. */
static napi_value hello_name(napi_env env, SSL *ssl) {
  const unsigned char *p;
  size_t len;
  napi_value v;
  napi_get_undefined(env, &v);
  if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len)) return v;
  /* A list (2 bytes of length) of entries: a type (0, host_name), 2 bytes of length, a name. */
  if (len < 5 || p[2] != TLSEXT_NAMETYPE_host_name) return v;
  size_t name_len = (size_t)p[3] << 8 | p[4];
  if (name_len == 0 || name_len > len - 5) return v;
  napi_create_string_latin1(env, (const char *)p + 5, name_len, &v);
  return v;
}

int hello_server_name(SSL *ssl, const char **name, size_t *name_len) {
  const unsigned char *p;
  size_t len;
  *name = NULL, *name_len = 0;
  if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len)) return 0;
  /* OpenSSL's own parse: one entry filling the list, which fills the extension; a host name of
   * 1 to 255 bytes with no zero byte. Anything else is left to it (and to its alert). */
  if (len < 5 || ((size_t)p[0] << 8 | p[1]) != len - 2 || p[2] != TLSEXT_NAMETYPE_host_name)
    return -1;
  size_t n = (size_t)p[3] << 8 | p[4];
  if (n != len - 5 || n == 0 || n > TLSEXT_MAXLEN_host_name || memchr(p + 5, 0, n)) return -1;
  *name = (const char *)p + 5, *name_len = n;
  return 1;
}

/* The protocols of the ALPN extension, in the client's order: an array, empty for none. */
static napi_value hello_alpn(napi_env env, SSL *ssl) {
  const unsigned char *p;
  size_t len;
  napi_value list, v;
  napi_create_array(env, &list);
  if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &p,
                                 &len) ||
      len < 2)
    return list;
  size_t end = 2 + ((size_t)p[0] << 8 | p[1]);
  if (end > len) end = len;
  uint32_t n = 0;
  for (size_t at = 2; at < end && at + 1 + p[at] <= end; at += 1 + p[at]) {
    napi_create_string_latin1(env, (const char *)p + at + 1, p[at], &v);
    napi_set_element(env, list, n++, v);
  }
  return list;
}

int hello_hold_ask(napi_env env, SSL *ssl, napi_ref on_client_hello) {
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value fn, recv, argv[2], result;
  napi_get_reference_value(env, on_client_hello, &fn);
  napi_get_global(env, &recv);
  argv[0] = hello_name(env, ssl);
  argv[1] = hello_alpn(env, ssl);
  bool hold = false;
  if (napi_call_function(env, recv, fn, 2, argv, &result) == napi_ok)
    napi_get_value_bool(env, result, &hold);
  js_uncaught_if_thrown(env);
  napi_close_handle_scope(env, scope);
  return hold;
}
