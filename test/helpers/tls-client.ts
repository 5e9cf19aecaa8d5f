// A Node TLS client for tests: connects to 127.0.0.1 as "localhost", verifying against a CA.
import { readFileSync } from "node:fs";
import { connect } from "node:tls";

/** Sends `send` once the handshake is done, ends its side once `enough(got)` holds (never by
 * default), and resolves with all it read when the connection closes. */
export function tlsExchange(
  port: number,
  caFile: string,
  options: { send?: string; enough?: (got: string) => boolean } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect({
      port,
      host: "127.0.0.1",
      servername: "localhost",
      ca: [readFileSync(caFile)],
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
