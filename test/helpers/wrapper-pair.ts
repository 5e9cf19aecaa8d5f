// Two tcpservers running starttls-wrapper for a client-first protocol in local mode, in front
// of a server on its own port (tcpforward to it): one opportunistic, one with -r.
import assert from "node:assert/strict";
import type { Pair } from "./certs.ts";
import { PATH_WITH_BIN, ours, run } from "./programs.ts";
import { startServer } from "./server.ts";
import type { RunningServer } from "./server.ts";

export interface WrapperPair {
  opportunistic: RunningServer;
  required: RunningServer;
  stop(): Promise<void>;
}

export async function startWrapperPair(
  protocol: string,
  servicePort: number,
  certificate: Pair,
  options: string[] = [],
): Promise<WrapperPair> {
  const env = {
    ...process.env,
    PATH: PATH_WITH_BIN,
    CERTFILE: certificate.cert,
    KEYFILE: certificate.key,
  };
  const chain = (policy: string[]) => [
    "-vRHl0",
    "127.0.0.1",
    "0",
    "starttls-wrapper",
    "-v2",
    "-p",
    protocol,
    ...options,
    ...policy,
    "tcpforward",
    "127.0.0.1",
    String(servicePort),
  ];
  const opportunistic = await startServer(ours("tcpserver"), chain([]), { env });
  const required = await startServer(ours("tcpserver"), chain(["-r"]), { env });
  return {
    opportunistic,
    required,
    stop: async () => {
      await opportunistic.stop();
      await required.stop();
    },
  };
}

/** openssl s_client -starttls `protocol` to `port` (stdin empty: it quits once the handshake is
 * done): its -brief lines, which say the protocol version and whether the chain verified. */
export function opensslStartTls(port: number, protocol: string, ca: string, name: string) {
  return run(
    "openssl",
    [
      ...["s_client", "-brief", "-starttls", protocol, "-connect", `127.0.0.1:${port}`],
      ...["-CAfile", ca, "-verify_return_error", "-verify_hostname", name],
      ...(protocol.startsWith("xmpp") ? ["-xmpphost", name] : []),
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
}

/** What a python3 client's script has: `s`, its socket connected to the port in argv[1], and
 * `read(n)`, exactly n bytes from it (the script exits with "closed" when they do not come). */
export const CLIENT_PRELUDE = `
import socket, struct, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def read(n):
    got = b""
    while len(got) < n:
        chunk = s.recv(n - len(got))
        if not chunk:
            sys.exit("closed")
        got += chunk
    return got
`;

/** Python's `Tls(raw, ca, name, first)`: TLS made by hand (memory BIOs) over the socket `raw`,
 * the name verified, whose ClientHello goes out in one write behind the bytes `first` (an
 * upgrade request, whitespace); then `sendall`, `recv` and `read` (exactly n bytes) as a
 * socket's, and a client whose peer closes exits with "closed". */
export const TLS_BY_HAND = `
import ssl, sys
class Tls:
    def __init__(self, raw, ca, name, first=b""):
        self.raw, self.first = raw, first
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        ctx = ssl.create_default_context(cafile=ca)
        self.tls = ctx.wrap_bio(self.inc, self.out, server_hostname=name)
        self.pump(self.tls.do_handshake)
    def flush(self):
        data, self.first = self.first + self.out.read(), b""
        if data:
            self.raw.sendall(data)
    def pump(self, op):
        while True:
            try:
                result = op()
                self.flush()
                return result
            except ssl.SSLWantReadError:
                self.flush()
                data = self.raw.recv(65536)
                if not data:
                    sys.exit("closed")
                self.inc.write(data)
    def sendall(self, data):
        self.tls.write(data)
        self.flush()
    def recv(self, n):
        return self.pump(lambda: self.tls.read(n))
    def read(self, n):
        got = b""
        while len(got) < n:
            got += self.recv(n - len(got))
        return got
`;

/** A python3 client (`script`, after CLIENT_PRELUDE) that waits past the wrapper pair's
 * pre-TLS limit of 1 s before its first packet: the opportunistic wrapper serves it in
 * plaintext (its output is `served`, and it logs an info line ending in `why: plaintext`); the
 * one with -r closes with a warning, `why`. */
export async function lateFirstPacket(
  protocol: string,
  servicePort: number,
  certificate: Pair,
  script: string,
  expected: { served: string; why: string },
) {
  const pair = await startWrapperPair(protocol, servicePort, certificate, ["-t", "1"]);
  const client = (port: number) => run("python3", ["-c", CLIENT_PRELUDE + script, String(port)]);
  try {
    const served = await client(pair.opportunistic.port);
    assert.equal(served.code, 0, served.stderr + pair.opportunistic.log());
    assert.equal(served.stdout, expected.served);
    await pair.opportunistic.waitForLog(/^tcpserver: end \d+ status \d+$/);
    assert.match(
      pair.opportunistic.log(),
      new RegExp(`^starttls-wrapper: info: 127\\.0\\.0\\.1: ${expected.why}: plaintext$`, "m"),
    );
    assert.doesNotMatch(pair.opportunistic.log(), /starttls-wrapper: warning/);
    const refused = await client(pair.required.port);
    assert.notEqual(refused.code, 0, refused.stdout);
    await pair.required.waitForLog(
      new RegExp(`^starttls-wrapper: warning: 127\\.0\\.0\\.1: ${expected.why}$`),
    );
    await pair.required.waitForLog(/^tcpserver: end \d+ status 25600$/);
  } finally {
    await pair.stop();
  }
}
