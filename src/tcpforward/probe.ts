// tcpforward --if-plain: does the service speak TLS itself? A client's ClientHello is offered to
// it: a service that answers in TLS gets the client's session as it is (its own certificate,
// its own TLS), one that answers anything else (a greeting, an error, nothing, a close) is a
// plaintext service, and the client goes to the --if-plain program instead (tlsd: TLS from us).
// The verdict is kept per service address and port for a while, so only the first client of a
// service waits for it; the others go straight to the one or the other.
import { writeSync } from "node:fs";
import { peekBytes } from "../stream/peek.ts";
import { MAX_SNIFF_BYTES, sniff } from "../tls-sniff/client-hello.ts";
import { connectionStream } from "../ucspi/chain.ts";
import { native } from "../ucspi/native.ts";
import type { Connection } from "../ucspi/stage.ts";

/** How long a verdict is kept: a service restarted with TLS on (or off) is found again by then. */
export const VERDICT_SECONDS = 300;
/** How long the client has to send its whole ClientHello (it has started: tls-sniff saw it). */
const HELLO_MS = 10_000;
/** How long the service has to answer the ClientHello; silence means plaintext. */
export const ANSWER_MS = 3000;
/** Services remembered at once; the oldest verdict goes first. An expired verdict stays until
 * the service is asked again, so that an answer that did not change is not news. */
const MAX_VERDICTS = 4096;

const verdicts = new Map<string, { tls: boolean; until: number }>();
/** The services being asked now: clients that come meanwhile wait for that answer rather than
 * ask again (a plaintext service would see a ClientHello from each). */
const asking = new Map<string, Promise<void>>();

/** What was found: the service speaks TLS (and, when it was asked just now, `service` is the
 * connection that already carries the client's ClientHello and the answer), or plaintext.
 * `changed`: asked just now, and the answer is new for this service (or not what it was). */
export type Probed =
  | { tls: true; service?: number; connection: Connection; asked: boolean; changed?: boolean }
  | { tls: false; connection: Connection; asked: boolean; changed?: boolean; why: string };

/** The verdict for a service, from memory or by asking it on a connection that `connect`
 * opens. The client's bytes stay in its connection except when the service takes its
 * ClientHello (then they are taken off it, since the service has them). */
export async function probeService(
  key: string,
  connection: Connection,
  connect: () => Promise<number>,
): Promise<Probed> {
  // One client at a time asks a service; the others wait for its answer.
  for (let other = asking.get(key); other; other = asking.get(key)) await other;
  const known = verdicts.get(key);
  if (known && known.until > Date.now())
    return known.tls
      ? { tls: true, connection, asked: false }
      : { tls: false, connection, asked: false, why: "known" };
  let release = () => {};
  const turn = new Promise<void>((resolve) => (release = resolve));
  asking.set(key, turn);
  try {
    return await askWithHello(key, connection, known?.tls, connect);
  } finally {
    asking.delete(key);
    release();
  }
}

/** This client's ClientHello offered to the service (when it sent one). */
async function askWithHello(
  key: string,
  connection: Connection,
  before: boolean | undefined,
  connect: () => Promise<number>,
): Promise<Probed> {
  const { look, connection: client } = await peekBytes(
    connection,
    { silenceMs: HELLO_MS, maxBytes: MAX_SNIFF_BYTES },
    (bytes) => {
      const result = sniff(bytes);
      return result.kind === "more" ? result.need : true;
    },
  );
  const result = look.kind === "done" ? sniff(look.bytes) : undefined;
  // Not a ClientHello after all (or none came): nothing to ask; the bytes go on as they are.
  if (look.kind !== "done" || result?.kind !== "tls")
    return { tls: true, connection: client, asked: false };
  const hello = look.bytes.subarray(0, result.length);
  const outcome = await ask(key, hello, connect);
  const changed = outcome.asked && before !== outcome.tls;
  if (!outcome.tls) {
    const why = outcome.answered ? "a plaintext answer" : "no answer";
    return { tls: false, connection: client, asked: outcome.asked, changed, why };
  }
  takeBytes(client, hello.length);
  return { tls: true, service: outcome.service, connection: client, asked: true, changed };
}

/** Offers the service `hello` on a new connection and keeps what it says. */
async function ask(
  key: string,
  hello: Buffer,
  connect: () => Promise<number>,
): Promise<{ tls: boolean; asked: boolean; answered: boolean; service: number }> {
  const service = await connect();
  const n = native();
  let answer: Buffer | undefined;
  let asked = true;
  try {
    // A hello larger than the new socket's buffer takes (none seen): this client goes to prog,
    // and the service is asked again by the next one.
    asked = writeSync(service, hello) === hello.length;
    if (asked) answer = await firstBytes(service);
  } catch {
    // The service went at once (a reset): not a TLS service that takes this client.
  }
  const tls = answer !== undefined && isTlsRecord(answer);
  if (asked) remember(key, tls);
  if (!tls) {
    // The service saw a ClientHello it cannot read: a reset ends that at once.
    n.abortOnClose(service);
    n.close(service);
  }
  return { tls, asked, answered: answer !== undefined, service };
}

/** The service's first bytes (peeked: the relay passes them on), or undefined when it closed,
 * failed, or said nothing within ANSWER_MS. */
async function firstBytes(fd: number): Promise<Buffer | undefined> {
  const { look } = await peekBytes(
    { fd },
    { silenceMs: ANSWER_MS, helloMs: ANSWER_MS, maxBytes: 3 },
    (bytes) => (bytes.length >= 3 ? true : 3),
  );
  return look.kind === "done" || look.kind === "unfinished" ? look.bytes : undefined;
}

/** A TLS record's header: a handshake (ServerHello) or an alert, version 3.x. */
export function isTlsRecord(bytes: Uint8Array): boolean {
  const type = bytes[0];
  return bytes.length >= 3 && (type === 0x16 || type === 0x15) && bytes[1] === 3;
}

function remember(key: string, tls: boolean): void {
  verdicts.delete(key);
  if (verdicts.size >= MAX_VERDICTS) {
    const oldest = verdicts.keys().next().value;
    if (oldest !== undefined) verdicts.delete(oldest);
  }
  verdicts.set(key, { tls, until: Date.now() + VERDICT_SECONDS * 1000 });
}

/** Takes `count` bytes off the front of the client's connection: they are all there already
 * (peeked on the socket, or put back in front of the stream). */
function takeBytes(connection: Connection, count: number): void {
  if (connection.fd !== undefined && !connection.stream) {
    native().recv(connection.fd, count, true);
    return;
  }
  connectionStream(connection).read(count);
}
