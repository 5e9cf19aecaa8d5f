// Two tcpservers running starttls-wrapper for a client-first protocol in local mode, in front
// of a server on its own port (tcpforward to it): one opportunistic, one with -r.
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
      ...(protocol === "xmpp" ? ["-xmpphost", name] : []),
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
}
