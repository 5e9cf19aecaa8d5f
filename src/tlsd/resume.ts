// A session resumed after a STARTTLS hand-over (DESIGN.md section 5): the wrapper in front
// saw the client's upgrade command, answered it, and passed the client to us with a resume
// record in its PROXY header. The program we start is a fresh instance of the server, so its
// greeting, which the client saw already in plaintext, is swallowed; bytes the record says to
// replay reach the program before the client's.
import type { Duplex } from "node:stream";
import { capabilityFilter } from "../dialogue/after-tls.ts";
import { GREETING_PROTOCOLS, greetingVerdict } from "../dialogue/greeting.ts";
import type { ResumeRecord } from "../proxy/resume.ts";
import { FatalError } from "../ucspi/errors.ts";
import { FrontStream } from "../stream/front-stream.ts";

/** Checks a record before the handshake: one we could not honour is refused up front. */
export function checkResumeRecord(record: ResumeRecord): void {
  if (record.swallow === undefined) return;
  if (record.swallow !== "greeting")
    throw new FatalError(`resume record: unknown swallow '${record.swallow}'`, 100);
  if (!GREETING_PROTOCOLS.includes(record.protocol))
    throw new FatalError(`resume record: no greeting grammar for '${record.protocol}'`, 100);
}

/** The stream the program gets, in front of the TLS session `tls`; `onFail` hears why a
 * greeting could not be swallowed (the session is cut then). The program's upgrade capability
 * is taken out of what it says (after-tls.ts). */
export function resumedStream(
  tls: Duplex,
  record: ResumeRecord,
  onFail: (reason: string) => void,
): Duplex {
  let pending: Buffer | undefined = record.swallow === "greeting" ? Buffer.alloc(0) : undefined;
  const filter = capabilityFilter(record.protocol);
  const filtered = (bytes: Buffer) => (filter ? filter.fromServer(bytes) : bytes);
  const front = new FrontStream(tls, {
    write(chunk) {
      if (!pending) return filtered(chunk);
      const seen = Buffer.concat([pending, chunk]);
      const verdict = greetingVerdict(record.protocol, seen);
      switch (verdict.kind) {
        case "more":
          pending = seen;
          return Buffer.alloc(0);
        case "swallow":
          pending = undefined;
          return filtered(seen.subarray(verdict.length));
        case "forward":
          pending = undefined;
          return filtered(seen);
        case "fail":
          pending = undefined;
          onFail(verdict.reason);
          return new Error(verdict.reason);
      }
    },
    ...(filter ? { read: (chunk: Buffer) => filter.fromClient(chunk) } : {}),
  });
  if (record.data && record.data.length > 0) {
    filter?.fromClient(record.data);
    front.push(record.data);
  }
  return front;
}
