// A program of the site's own, run about one name: ACME_ASK (may this name be ordered?),
// ACME_HOOK (a certificate was installed for it) and ACME_DNS_HOOK (publish or remove its
// dns-01 record). UCSPI-style: the name is its argument (unless the caller gives others) and
// in ACME_NAME; its environment holds only that, PATH and what the caller adds; stdin is
// /dev/null, its stdout is dropped, its stderr is tlsd's. Its name, PATH and the name go to it
// as their bytes (src/ucspi/spawn-bytes.ts): through Node's spawn, a program named with a byte
// that is not ASCII named another file.
import { causeText } from "../ucspi/errors.ts";
import { osFromBytes } from "../ucspi/os-string.ts";
import { findProgram } from "../ucspi/path-search.ts";
import { spawnWithBytes } from "../ucspi/spawn-bytes.ts";

export type SiteProgramEnd =
  | { ran: true; code: number | null; signal: string | null }
  /** It could not be run, or did not end within its time (then it was killed): why. */
  | { ran: false; why: string };

/** Runs `program` (found on `searchPath`) about `name`, killing it after `timeoutMs`, or with
 * SIGTERM when `stop` aborts; `args` in place of the name as its arguments, `env` beside
 * ACME_NAME and PATH. */
export async function runSiteProgram(
  program: string,
  name: string,
  searchPath: string,
  timeoutMs: number,
  {
    env = {},
    args = [name],
    stop,
  }: { env?: Record<string, string>; args?: string[]; stop?: AbortSignal } = {},
): Promise<SiteProgramEnd> {
  let file: string;
  try {
    file = findProgram(osFromBytes(program), searchPath);
  } catch (error) {
    return { ran: false, why: `could not run: ${causeText(error)}` };
  }
  const child = spawnWithBytes(
    file,
    args,
    { ...env, PATH: searchPath, ACME_NAME: name },
    { argv0: osFromBytes(program), discardStdout: true },
  );
  let late = false;
  const timer = setTimeout(() => {
    late = true;
    child.kill("SIGKILL");
  }, timeoutMs);
  const stopped = () => child.kill("SIGTERM");
  stop?.addEventListener("abort", stopped);
  const end = await child.ended;
  clearTimeout(timer);
  stop?.removeEventListener("abort", stopped);
  if (end.error) return { ran: false, why: `could not run: ${causeText(end.error)}` };
  if (late) return { ran: false, why: `did not end in ${timeoutMs / 1000} s: killed` };
  if (stop?.aborted) return { ran: false, why: "stopped" };
  return { ran: true, code: end.code, signal: end.signal };
}

/** How a run ended, for a line: "exit 3", "ended by SIGTERM", or why it did not run. */
export function endText(end: SiteProgramEnd): string {
  if (!end.ran) return end.why;
  return end.signal ? `ended by ${end.signal}` : `exit ${String(end.code)}`;
}
