// A Node TLS client for tests: connects to 127.0.0.1 as "localhost", verifying against a CA.
import { readFileSync } from "node:fs";
import { connect } from "node:tls";
import { run } from "./programs.ts";

/** Sends `send` once the handshake is done, ends its side once `enough(got)` holds (never by
 * default), and resolves with all it read when the connection closes; `ecdhCurve` limits the
 * key exchange groups it offers. */
export function tlsExchange(
  port: number,
  caFile: string,
  options: { send?: string; enough?: (got: string) => boolean; ecdhCurve?: string } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect({
      port,
      host: "127.0.0.1",
      servername: "localhost",
      ca: [readFileSync(caFile)],
      ...(options.ecdhCurve !== undefined && { ecdhCurve: options.ecdhCurve }),
    });
    let got = "";
    c.setEncoding("latin1");
    c.on("data", (d: string) => {
      got += d;
      if (options.enough?.(got)) c.end();
    });
    c.once("secureConnect", () => {
      if (options.send !== undefined) c.write(options.send);
    });
    c.once("close", () => resolve(got));
    c.once("error", reject);
  });
}

/** One `openssl s_client` session to 127.0.0.1:port as "localhost" (`name`; false: no SNI),
 * verifying against `caFile`, that saves its session to `saveTo` and, with `resume`, starts
 * from the one saved in `file`; what it printed (`New, TLSv1.3` or `Reused, TLSv1.3`, and what
 * the server sent). */
export async function sClientSession(
  port: number,
  caFile: string,
  file: string,
  version: string,
  resume: boolean,
  saveTo = file,
  name: string | false = "localhost",
): Promise<string> {
  const r = await run("openssl", [
    "s_client",
    version,
    "-ign_eof",
    "-verify_return_error",
    "-CAfile",
    caFile,
    ...(name === false ? ["-noservername"] : ["-servername", name]),
    "-connect",
    `127.0.0.1:${port}`,
    ...(resume ? ["-sess_in", file] : []),
    "-sess_out",
    saveTo,
  ]);
  return r.stdout;
}

/** openssl s_client to 127.0.0.1:port, verifying against caFile, with this client certificate
 * (or none), `extra` arguments and nothing to say: what the program behind printed. */
export async function answerWithCertificate(
  port: number,
  caFile: string,
  pair: { cert: string; key: string } | undefined,
  extra: readonly string[] = [],
): Promise<string> {
  const r = await run(
    "openssl",
    [
      "s_client",
      "-quiet",
      "-connect",
      `127.0.0.1:${port}`,
      "-CAfile",
      caFile,
      ...(pair ? ["-cert", pair.cert, "-key", pair.key] : []),
      ...extra,
    ],
    { input: "", timeoutMs: 20_000 },
  );
  return r.stdout;
}

/** The first certificate in openssl s_client's output (PEM): the leaf the server sent. */
export function servedPem(stdout: string): string | undefined {
  return /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(stdout)?.[0];
}

/** openssl s_client to 127.0.0.1:port asking for `name` and verifying against `caFile` a
 * certificate for `verify` (a failure fails the run), with nothing to say; `showcerts` prints
 * the chain. */
export function sClientVerified(
  port: number,
  name: string,
  caFile: string,
  options: { verify?: string; showcerts?: boolean } = {},
) {
  return run(
    "openssl",
    [
      "s_client",
      "-connect",
      `127.0.0.1:${port}`,
      "-servername",
      name,
      "-CAfile",
      caFile,
      "-verify_hostname",
      options.verify ?? name,
      "-verify_return_error",
      ...(options.showcerts ? ["-showcerts"] : []),
      "-ign_eof",
    ],
    { input: "", timeoutMs: 30_000 },
  );
}
