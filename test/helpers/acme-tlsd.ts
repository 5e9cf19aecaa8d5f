// tlsd with certificates on demand, as the ACME tests run it: under a tcpserver (ours or
// djb's) on 127.0.0.1, answering the CA's tls-alpn-01 on that port.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "./interop.ts";
import { startPebble } from "./pebble.ts";
import type { Pebble } from "./pebble.ts";
import { PATH_WITH_BIN } from "./programs.ts";
import { startServer } from "./server.ts";
import type { RunningServer } from "./server.ts";
import { scratchDir } from "./scratch.ts";

/** What each session runs: the name the client asked for, and how many ACME_ variables the
 * program was given (none: they are tlsd's, not the program's). */
const PROGRAM = ["sh", "-c", 'echo "hello $SSL_TLS_SNI_SERVERNAME"; env | grep -c ^ACME_ || true'];

/** `server` (a tcpserver) on `port` (of 127.0.0.1, or `host`) running tlsd -v2 with the default certificate `fallback`
 * and CERTDIR `cache`, `env` added; `wrap` runs it (WITH_BYTES and env(1), for variables that
 * are not UTF-8). */
export function serveAcmeTlsd(
  server: string,
  port: number,
  cache: string,
  env: Record<string, string>,
  options: { fallback: { cert: string; key: string }; wrap?: readonly string[]; host?: string },
) {
  const host = options.host ?? "127.0.0.1";
  return startServer(server, ["-vRHl0", host, String(port), "tlsd", "-v2", ...PROGRAM], {
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

/** pebble, and `tcpserver` running tlsd on a free port ordering from it, with a CERTDIR of its
 * own (`cache`) and pebble's root for this run in `rootFile`; stop() ends both. */
export interface AcmeSite {
  pebble: Pebble;
  server: RunningServer;
  port: number;
  cache: string;
  rootFile: string;
  stop(): Promise<void>;
}

/** An AcmeSite: pebble validates tls-alpn-01 on tlsd's port (on a port where nothing listens
 * with `deadTlsPort`); `env` (or what it makes of this pebble) is added to tlsd's. */
export async function acmeSite(
  tcpserver: string,
  env: Record<string, string> | ((pebble: Pebble) => Record<string, string>),
  options: {
    fallback: { cert: string; key: string };
    validitySeconds?: number;
    wrap?: readonly string[];
    deadTlsPort?: boolean;
    /** CERTDIR, in place of a scratch directory of its own. */
    cache?: string;
  },
): Promise<AcmeSite> {
  const port = await freePort();
  const pebble = await startPebble({
    tlsPort: options.deadTlsPort ? await freePort() : port,
    validitySeconds: options.validitySeconds,
  });
  const cache = options.cache ?? scratchDir("acme");
  const server = await serveAcmeTlsd(
    tcpserver,
    port,
    cache,
    {
      ACME_DIRECTORY: pebble.directory,
      ACME_CAFILE: pebble.listenerCa,
      ...(typeof env === "function" ? env(pebble) : env),
    },
    options,
  ).catch((error: unknown) => {
    pebble.stop();
    throw error;
  });
  // A dot entry: tlsd's CERTDIR scan skips it.
  const rootFile = join(cache, ".pebble-root.pem");
  writeFileSync(rootFile, await pebble.root());
  return {
    pebble,
    server,
    port,
    cache,
    rootFile,
    stop: async () => {
      await server.stop();
      pebble.stop();
    },
  };
}
