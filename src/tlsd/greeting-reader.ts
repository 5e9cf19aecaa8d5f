// A resumed session (resume.ts) on the engine, when nothing the fresh program says after its
// greeting needs a filter: its greeting, which the client saw already in plaintext, is read off
// the socketpair here before the engine's relay begins, and the relay then runs from the
// program to the client with no stream of ours between them. What came after the greeting in
// the same read is the client's first (tlsRelay's `first`).
import { MAX_GREETING, greetingVerdict } from "../dialogue/greeting.ts";
import { native } from "../ucspi/native.ts";

export type GreetingRead =
  /** Swallowed, or not a greeting to swallow (a refusal, passed on in `first`), or the
   * program's end or failure before one came (the relay meets it). */
  | { kind: "relay"; first?: Buffer }
  /** A greeting that cannot be resumed (resume.ts's "fail"): why. */
  | { kind: "fail"; reason: string }
  /** `stop` came first (the session ended): nothing was decided. */
  | { kind: "stopped" };

/** Reads `protocol`'s greeting from `fd` (non-blocking), until its grammar decides or `stop`
 * settles. */
export function readGreeting(
  fd: number,
  protocol: string,
  stop: Promise<unknown>,
): Promise<GreetingRead> {
  const n = native();
  return new Promise((resolve) => {
    let seen: Buffer = Buffer.alloc(0);
    let wait: number | undefined;
    let done = false;
    const settle = (read: GreetingRead) => {
      if (done) return;
      done = true;
      if (wait !== undefined) n.cancelWait(fd, wait);
      resolve(read);
    };
    void stop.then(() => settle({ kind: "stopped" }));
    const attempt = () => {
      wait = undefined;
      if (done) return;
      let bytes: Buffer | undefined | null;
      try {
        // Never more than the grammar may need: the verdict is "fail" past MAX_GREETING.
        bytes = n.recv(fd, MAX_GREETING + 1 - seen.length, true);
      } catch {
        return settle({ kind: "relay" });
      }
      // The program ended without a whole greeting: the part it sent goes nowhere (as on the
      // stream path), and the relay passes its end on.
      if (bytes === null) return settle({ kind: "relay" });
      if (bytes !== undefined) {
        seen = seen.length > 0 ? Buffer.concat([seen, bytes]) : bytes;
        const verdict = greetingVerdict(protocol, seen);
        switch (verdict.kind) {
          case "swallow": {
            const rest = seen.subarray(verdict.length);
            return settle({ kind: "relay", ...(rest.length > 0 && { first: rest }) });
          }
          case "forward":
            return settle({ kind: "relay", first: seen });
          case "fail":
            return settle({ kind: "fail", reason: verdict.reason });
          case "more":
            break;
        }
      }
      wait = n.whenReadable(fd, attempt);
    };
    attempt();
  });
}
