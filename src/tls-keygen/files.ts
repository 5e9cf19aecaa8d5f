// The files tls-keygen reads and writes: outputs checked before any key is made (directory
// there, no file to replace without --force), inputs read with errors that name them.
import { lstatSync, readFileSync, realpathSync, statSync } from "node:fs";
import type { Stats } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { FatalError, causeText } from "../ucspi/errors.ts";
import { decodeOs, osPath } from "../ucspi/os-string.ts";

/** Codes that mean the name given is wrong (exit 100), not that the system failed (111). */
const BAD_NAME = new Set(["ENOENT", "ENOTDIR", "EISDIR", "ENAMETOOLONG", "ELOOP"]);

/** Whether something is at `path` (a dangling symlink counts: it would be replaced). */
export function exists(path: string): boolean {
  return statOrFail(path) !== undefined;
}

function statOrFail(path: string): Stats | undefined {
  try {
    return lstatSync(osPath(path), { throwIfNoEntry: false });
  } catch (error) {
    throw new FatalError(`unable to stat ${path}: ${causeText(error)}`, codeOf(error));
  }
}

/** Checks that `path` can be created: its directory exists, and (without force) it does not. */
export function checkOutput(path: string, force: boolean): void {
  const dir = dirname(path);
  let dirStat;
  try {
    dirStat = statSync(osPath(dir));
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const reason = code === "ENOENT" ? `directory ${dir} does not exist` : causeText(error);
    throw new FatalError(`unable to create ${path}: ${reason}`, codeOf(error));
  }
  if (!dirStat.isDirectory()) {
    throw new FatalError(`unable to create ${path}: ${dir} is not a directory`, 100);
  }
  const target = statOrFail(path);
  if (target?.isDirectory()) throw new FatalError(`unable to create ${path}: is a directory`, 100);
  if (!force && target !== undefined) {
    throw new FatalError(`${path} exists: use --force to replace it`, 100);
  }
}

/** The directory entry a name stands for: its directory resolved (symlinks, `.`, `..`), its last
 * component as given (an output replaces a symlink there; it does not follow it). */
function entryOf(path: string): string {
  const dir = dirname(path);
  let real: string;
  try {
    // As the kernel resolves it (`link/..` is link's parent), by its bytes: Node's own
    // realpathSync read them as UTF-8, failed for a byte ff, and the name was taken unresolved.
    real = decodeOs(realpathSync.native(osPath(dir), { encoding: "buffer" }));
  } catch {
    real = resolve(dir); // no such directory: checkOutput says so
  }
  return join(real, basename(path));
}

/**
 * Refuses two names for one file among the outputs, or an output that is also an input (`what`:
 * "certfile", "CA key"): `./k.pem` and `k.pem`, or `dir/k.pem` and `link-to-dir/k.pem`. The
 * string comparison of the options missed them, and the second write replaced the first (with
 * -r, the request or certificate replaced the very key it was made for; with -f, the key itself
 * was gone). Inputs may share a file (a CA's certificate and key in one PEM).
 */
export function checkDistinct(
  outputs: readonly { path: string; what: string }[],
  inputs: readonly { path: string; what: string }[],
): void {
  const seen = new Map<string, { path: string; what: string }>();
  for (const file of outputs) {
    const entry = entryOf(file.path);
    const first = seen.get(entry);
    if (first) throw sameFile(first, file);
    seen.set(entry, file);
  }
  for (const file of inputs) {
    const output = seen.get(entryOf(file.path));
    if (output) throw sameFile(output, file);
  }
}

function sameFile(a: { path: string; what: string }, b: { path: string; what: string }) {
  return new FatalError(`${a.what} ${a.path} and ${b.what} ${b.path} are the same file`, 100);
}

/** Checks that a file `ensure` keeps (or `ticket` rotates) is one (a symlink to nothing, or a
 * directory, would be kept and the server would fail at start, after `ensure` said all was
 * well); `advice`: what to do instead. */
export function checkKept(path: string, advice: string): void {
  let target: Stats;
  try {
    target = statSync(osPath(path));
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const reason = code === "ENOENT" ? "is a symbolic link to nothing" : causeText(error);
    throw new FatalError(`${path} ${reason}: ${advice}`, codeOf(error));
  }
  if (!target.isFile()) throw new FatalError(`${path} is not a file`, 100);
}

/** A file's bytes; `what` says what it should be ("CA certificate"). */
export function readInput(path: string, what: string): Buffer {
  try {
    return readFileSync(osPath(path));
  } catch (error) {
    throw new FatalError(`unable to read ${what} ${path}: ${causeText(error)}`, codeOf(error));
  }
}

function codeOf(error: unknown): number {
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" && BAD_NAME.has(code) ? 100 : 111;
}
