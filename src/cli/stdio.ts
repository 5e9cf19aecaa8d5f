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
    for (let done = 0; done < bytes.length;) {
      try {
        done += writeSync(1, bytes, done);
      } catch (error) {
        // A non-blocking pipe that is full for now: try again, as djb's buffer_flush does.
        if ((error as { code?: unknown }).code !== "EAGAIN") throw error;
      }
    }
  } catch (error) {
    throw new FatalError(`unable to write to stdout: ${causeText(error)}`, 111, { cause: error });
  }
}
