// python3 ssl on memory BIOs, for TLS peers that misbehave on purpose or watch each record.

/** Python helpers for a TLS endpoint on memory BIOs over a raw socket `raw`: `flush()` sends
 * what TLS wrote, `pump()` reads from the peer (exits quietly on EOF), `handshake()` runs one. */
export const PY_BIO = `
import os, socket, ssl, sys
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
def flush():
    data = out.read()
    if data:
        raw.sendall(data)
def pump():
    data = raw.recv(65536)
    if not data:
        sys.exit(0)
    inc.write(data)
def handshake():
    while True:
        try:
            tls.do_handshake()
            return
        except ssl.SSLWantReadError:
            flush()
            pump()
def read_line():
    got = b""
    while b"\\n" not in got:
        try:
            got += tls.read(65536)
        except ssl.SSLWantReadError:
            flush()
            pump()
    return got
def forge():
    raw.sendall(bytes([0x17, 3, 3, 0, 0x20]) + os.urandom(32))
`;

/** A python3 TLS server on memory BIOs with this certificate: it prints its port, accepts one
 * connection and does the handshake (`setup`: more lines for `ctx` first); the script goes on
 * from there with `tls`, `raw` and PY_BIO's helpers. */
export function pyTlsServer(pair: { cert: string; key: string }, setup = ""): string {
  return `${PY_BIO}
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(${JSON.stringify(pair.cert)}, ${JSON.stringify(pair.key)})
${setup}
ls = socket.create_server(("127.0.0.1", 0))
print(ls.getsockname()[1], flush=True)
raw, _ = ls.accept()
raw.settimeout(30)
tls = ctx.wrap_bio(inc, out, server_side=True)
handshake()
flush()
`;
}

/** Python (after PY_BIO): read_to_end() reads what the peer sends until its end, and says how
 * that came: "close_notify", "fin" (a bare FIN), or an OpenSSL error; send_close_notify() ends
 * our side with a close_notify alone (no FIN). */
export const READ_TO_END = `
def send_close_notify():
    try:
        tls.unwrap()
    except ssl.SSLWantReadError:
        pass
    flush()
def read_to_end():
    got, how = b"", None
    while how is None:
        try:
            data = tls.read(65536)
            if not data:
                # Python reads a close_notify as b"" (or SSLZeroReturnError).
                how = "close_notify"
            got += data
        except ssl.SSLWantReadError:
            flush()
            data = raw.recv(65536)
            if data:
                inc.write(data)
            else:
                how = "fin"
        except ssl.SSLZeroReturnError:
            how = "close_notify"
        except ssl.SSLError as e:
            how = "error: %s" % e.reason
    return got, how
`;

/** Python (after PY_BIO): a client of 127.0.0.1's `port` for localhost that trusts `ca` (in
 * `version` alone, if given), its handshake done; `tls` and `raw` (30 s a read) from there. */
export function pyHandshakeTo(ca: string, port: number, version?: string): string {
  return `ctx = ssl.create_default_context(cafile=${JSON.stringify(ca)})
${version ? `ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.${version}` : ""}
raw = socket.create_connection(("127.0.0.1", ${port}))
raw.settimeout(30)
tls = ctx.wrap_bio(inc, out, server_hostname="localhost")
handshake()
`;
}

/** Python, after `ctx = ...` at the top level: tells a FIN without close_notify from a clean
 * end (SSLEOFError), whatever the Python. Debian's python3 (3.11.2) sets
 * OP_IGNORE_UNEXPECTED_EOF on every context, so such a FIN reads as a clean end there, and
 * without it says ssl.SSLError, not SSLEOFError (pyenv's 3.11.7 does neither). */
export const PY_STRICT_EOF = `ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
_ssl_read = ssl.SSLSocket.read
def _strict_read(self, *args):
    try:
        return _ssl_read(self, *args)
    except ssl.SSLError as e:
        if isinstance(e, ssl.SSLEOFError) or e.reason != "UNEXPECTED_EOF_WHILE_READING":
            raise
        raise ssl.SSLEOFError(*e.args) from e
ssl.SSLSocket.read = _strict_read`;
