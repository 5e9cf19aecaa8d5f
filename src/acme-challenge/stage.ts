// acme-challenge: answers ACME http-01 validation requests (RFC 8555 section 8.3) on port 80
// from the key authorizations tlsd writes (CERTDIR/.acme-http-01/TOKEN, ACME_CHALLENGE=http-01),
// and passes every other connection on to the program it runs, untouched: the request line is
// peeked, not read, so the web server behind gets the socket itself with every byte.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { httpChallengeDir } from "../acme/config.ts";
import { connectionStream, exitStatus } from "../ucspi/chain.ts";
import { clientPrefix } from "../ucspi/env.ts";
import { FatalError, parseOrUsage } from "../ucspi/errors.ts";
import { osFromBytes, osPath } from "../ucspi/os-string.ts";
import { drain, peekBytes } from "../stream/peek.ts";
import type { Connection, Stage } from "../ucspi/stage.ts";
import { USAGE, parseChallengeArgs } from "./options.ts";
import { stageOptions } from "../ucspi/stage-options.ts";

/** The most bytes looked at for the request line. */
const MAX_LINE = 8192;
/** GET, or HEAD (RFC 9110 section 9.3.2: GET's answer without its body), of the challenge's
 * path in origin form, or in absolute form (RFC 9112 section 3.2.2: `http://host[:port]/...`,
 * as proxies and some clients send it; the scheme is case-insensitive; the host, which takes
 * the place of the Host header, is a name or an IP literal, never empty and without the
 * userinfo that RFC 9110 section 4.2.4 has recipients treat as an error). */
const CHALLENGE =
  /^(?<method>GET|HEAD) (?:[Hh][Tt][Tt][Pp]:\/\/(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%!$&'()*+,;=-]+)(?::[0-9]*)?)?\/\.well-known\/acme-challenge\/(?<token>[A-Za-z0-9_-]{1,256}) HTTP\/1\.[01]\r?$/;

export const challengeStage: Stage = {
  prepare(argv) {
    parseOrUsage(USAGE, () => parseChallengeArgs([...argv]));
  },

  chainsAfter(argv) {
    return [parseChallengeArgs([...argv]).program];
  },

  async run(ctx) {
    const o = stageOptions(ctx.argv, USAGE, parseChallengeArgs);
    const certDir = ctx.env["CERTDIR"];
    if (!certDir) throw new FatalError("CERTDIR not set (where tlsd writes the challenges)", 100);
    const { look, connection } = await peekBytes(
      ctx.connection,
      { silenceMs: o.timeoutMs, helloMs: o.timeoutMs, maxBytes: MAX_LINE },
      (bytes) => (bytes.includes(0x0a, lineStart(bytes)) ? true : bytes.length + 1),
    );
    const line = look.kind === "done" ? firstLine(look.bytes) : "";
    const match = CHALLENGE.exec(line);
    const token = match?.groups?.["token"];
    // A HEAD is answered without a body: a client reads the headers as the whole answer (a
    // body after them would be taken for the start of the next one).
    const head = /^HEAD /.test(line);
    const answer = token === undefined ? undefined : keyAuthorization(osFromBytes(certDir), token);
    if (answer !== undefined) {
      if (o.verbosity >= 2)
        ctx.log(`acme-challenge: info: ${clientPrefix(ctx.env)}answered ${token}\n`);
      await respond(connection, 200, answer, head);
      return exitStatus(0);
    }
    if (look.kind === "closed") return exitStatus(0);
    if (o.program.length > 0) return ctx.next(o.program, ctx.env, connection);
    await respond(connection, 404, "not found\n", head);
    return exitStatus(0);
  },
};

/** Where the request line starts: after the empty lines a client may send first (RFC 9112
 * section 2.2: a server SHOULD ignore them). */
function lineStart(bytes: Buffer): number {
  let at = 0;
  while (bytes[at] === 0x0d || bytes[at] === 0x0a) at++;
  return at;
}

function firstLine(bytes: Buffer): string {
  const start = lineStart(bytes);
  const end = bytes.indexOf(0x0a, start);
  return bytes.subarray(start, end < 0 ? bytes.length : end).toString("latin1");
}

/** The key authorization tlsd wrote for `token`, if it did. */
function keyAuthorization(certDir: string, token: string): string | undefined {
  try {
    return readFileSync(osPath(join(httpChallengeDir(certDir), token)), "latin1");
  } catch {
    return undefined;
  }
}

/** Answers (the headers alone for a HEAD) and closes. The request is taken off first: closing
 * a socket with unread bytes would reset it, and the client could lose the answer. */
async function respond(
  connection: Connection,
  status: 200 | 404,
  body: string,
  head: boolean,
): Promise<void> {
  drain(connection, MAX_LINE);
  const stream = connectionStream(connection);
  stream.on("error", () => {});
  stream.resume(); // what is left of the request (on a pipe) is read and dropped
  const reason = status === 200 ? "OK" : "Not Found";
  await new Promise<void>((resolve) =>
    stream.end(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain\r\n` +
        `Content-Length: ${Buffer.byteLength(body, "latin1")}\r\nConnection: close\r\n\r\n` +
        (head ? "" : body),
      "latin1",
      () => resolve(),
    ),
  );
  stream.destroy();
}
