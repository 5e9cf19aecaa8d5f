// What the wrapper does for protocols whose client speaks first (PostgreSQL, LDAP), where the
// first packet is looked at without taking it (peek.ts) and either answered here, the TLS
// handshake following in this process, or passed to the server untouched.
import { writeSync } from "node:fs";
import { stripTlsConfig } from "../tls/peer-env.ts";
import { connectionStream, exitStatus } from "../ucspi/chain.ts";
import { clientPrefix, copyEnv } from "../ucspi/env.ts";
import { native } from "../ucspi/native.ts";
import { drain } from "../ucspi/peek.ts";
import type { Connection, StageContext } from "../ucspi/stage.ts";
import type { WrapperOptions } from "./options.ts";

/** The status of a connection refused here (bad input, as tls-sniff's). */
const REFUSED = exitStatus(100);
/** The most bytes any first packet looked at here may have. */
const MAX_LOOKED_AT = 64 * 1024;

/** The wrapper's warning and info lines for this client. */
export function logger(ctx: StageContext, options: WrapperOptions) {
  const who = clientPrefix(ctx.env);
  return {
    warn: (what: string) => {
      if (options.verbosity >= 1) ctx.log(`starttls-wrapper: warning: ${who}${what}\n`);
    },
    info: (what: string) => {
      if (options.verbosity >= 2) ctx.log(`starttls-wrapper: info: ${who}${what}\n`);
    },
  };
}

/** tlsd takes the connection here, and runs prog behind TLS. */
export async function tlsBehind(
  ctx: StageContext,
  options: WrapperOptions,
  connection: Connection,
): Promise<number> {
  const { tlsdStage } = await import("../tlsd/stage.ts");
  return tlsdStage.run({
    ...ctx,
    argv: ["tlsd", "-K", String(options.handshakeMs), "--", ...options.program],
    connection,
  });
}

/** The server gets the connection as it is: every byte still in it. */
export function plaintext(ctx: StageContext, options: WrapperOptions, connection: Connection) {
  const env = copyEnv(ctx.env);
  stripTlsConfig(env);
  return ctx.next(options.program, env, connection);
}

/** Takes n bytes off the connection (they were peeked). */
export function take(connection: Connection, n: number): void {
  if (connection.fd !== undefined && !connection.stream) native().recv(connection.fd, n, true);
  else connectionStream(connection).read(n);
}

export function send(connection: Connection, bytes: Buffer): void {
  if (connection.fd !== undefined && !connection.stream) writeSync(connection.fd, bytes);
  else connectionStream(connection).write(bytes);
}

/** The client's bytes are taken off (so that it gets a FIN, not a reset, and reads the
 * answer), the answer goes out, and the connection ends. */
export async function refuse(connection: Connection, answer?: Buffer): Promise<number> {
  drain(connection, MAX_LOOKED_AT);
  if (connection.fd !== undefined && !connection.stream) {
    if (answer) {
      try {
        writeSync(connection.fd, answer);
      } catch {
        // gone already
      }
    }
    return REFUSED;
  }
  const stream = connectionStream(connection);
  stream.on("error", () => {});
  stream.resume();
  await new Promise<void>((resolve) => stream.end(answer ?? Buffer.alloc(0), () => resolve()));
  stream.destroy();
  return REFUSED;
}
