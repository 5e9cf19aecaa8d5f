// tlsd with certificates on demand, as the ACME tests run it: under a tcpserver (ours or
// djb's) on 127.0.0.1, answering the CA's tls-alpn-01 on that port.
import { PATH_WITH_BIN } from "./programs.ts";
import { startServer } from "./server.ts";

/** What each session runs: the name the client asked for, and how many ACME_ variables the
 * program was given (none: they are tlsd's, not the program's). */
const PROGRAM = ["sh", "-c", 'echo "hello $SSL_TLS_SNI_SERVERNAME"; env | grep -c ^ACME_ || true'];

/** `server` (a tcpserver) on `port` running tlsd -v2 with the default certificate `fallback`
 * and CERTDIR `cache`, `env` added; `wrap` runs it (WITH_BYTES and env(1), for variables that
 * are not UTF-8). */
export function serveAcmeTlsd(
  server: string,
  port: number,
  cache: string,
  env: Record<string, string>,
  options: { fallback: { cert: string; key: string }; wrap?: readonly string[] },
) {
  return startServer(server, ["-vRHl0", "127.0.0.1", String(port), "tlsd", "-v2", ...PROGRAM], {
    env: {
      ...process.env,
      PATH: PATH_WITH_BIN,
      CERTFILE: options.fallback.cert,
      KEYFILE: options.fallback.key,
      CERTDIR: cache,
      ...env,
    },
    wrap: options.wrap,
  });
}
