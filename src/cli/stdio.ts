// Fds 0-2 as the launcher left them, and what a program prints on stdout (--help,
// tls-everywhere --dry-run): all of it, or one fatal line that says why not, never Node's
// stack trace for a stdout that is full, a pipe nobody reads, or closed.
import { writeSync } from "node:fs";
import { FatalError, causeText } from "../ucspi/errors.ts";

/** The fds the launcher found closed and holds with /dev/null (launcher.c), taken out of the
 * environment here so that no program this one starts takes the list for its own. */
export const fdsNotOpen: readonly number[] = (process.env["UCSPI_FD_NOT_OPEN"] ?? "")
  .split(",")
  .filter(Boolean)
  .map(Number);
delete process.env["UCSPI_FD_NOT_OPEN"];

/** All of `text` to fd 1; a FatalError (exit 111) when it cannot be written. */
export function writeStdout(text: string): void {
  const bytes = Buffer.from(text);
  try {
    // Closed when we started: what we wrote would go to the launcher's /dev/null, lost.
    if (fdsNotOpen.includes(1)) throw Object.assign(new Error("fd 1"), { code: "EBADF" });
    writeAll(1, bytes);
  } catch (error) {
    throw new FatalError(`unable to write to stdout: ${causeText(error)}`, 111, { cause: error });
  }
}

/** For writeAll's waits: nothing ever wakes it, so each wait lasts its whole time. */
const PAUSE = new Int32Array(new SharedArrayBuffer(4));

/** All of `bytes` to `fd`; throws what the write meets but a pipe or socket that is full for
 * now (EAGAIN): that one is waited out, as a blocking write waits, and as djb's programs wait
 * for a log reader that falls behind. Our fd 2 is non-blocking from the first socket Node
 * destroys on (its net.Socket reads process.stderr, which opens a pipe or socket on fd 2
 * non-blocking), so without the wait a line written while the reader lags is lost. */
export function writeAll(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) {
    try {
      done += writeSync(fd, bytes, done);
    } catch (error) {
      if ((error as { code?: unknown }).code !== "EAGAIN") throw error;
      Atomics.wait(PAUSE, 0, 0, 1);
    }
  }
}
