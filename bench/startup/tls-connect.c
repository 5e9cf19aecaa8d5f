/* tls-connect [-p] host port: one connection as a client, to time a server's start-up per
 * connection: connect, a TLS handshake (no certificate check), then read until the server's
 * side ends. With -p, no TLS: connect and read until EOF. Exits 0 when the handshake (or the
 * connection, with -p) worked, 1 otherwise. Build: cc tls-connect.c -lssl -lcrypto */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
  int plain = argc > 1 && strcmp(argv[1], "-p") == 0;
  if (argc != 3 + plain) {
    fprintf(stderr, "tls-connect: usage: tls-connect [-p] host port\n");
    return 100;
  }
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2 + plain]))};
  if (inet_pton(AF_INET, argv[1 + plain], &sa.sin_addr) != 1) return 100;
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    perror("tls-connect: fatal: connect");
    return 1;
  }
  char buf[16384];
  if (plain) {
    while (read(fd, buf, sizeof buf) > 0) {
    }
    return 0;
  }
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  SSL_set_tlsext_host_name(ssl, "localhost");
  if (SSL_connect(ssl) != 1) {
    fprintf(stderr, "tls-connect: fatal: handshake failed\n");
    return 1;
  }
  while (SSL_read(ssl, buf, sizeof buf) > 0) {
  }
  return 0;
}
