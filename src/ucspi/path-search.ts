// execvp's search of PATH, done up front so that posix_spawn gets a full path and a failure
// can be named the way djb names it (the last interesting errno wins, as in pathexec_run).
import { accessSync, constants, statSync } from "node:fs";
import { join } from "node:path";
import { osFromBytes, osPath } from "./os-string.ts";
import { onReload } from "./reload.ts";

export class ProgramNotFound extends Error {
  readonly code: string;
  constructor(program: string, code: string) {
    super(`unable to run ${program}`);
    this.code = code;
  }
}

/** How long a program found stays found without a new search: a server under load runs the
 * same few programs thousands of times a second, and each search is two system calls per
 * directory tried; a program installed or removed is seen within this time all the same. */
const FOUND_MS = 1000;
/** By PATH (none: execvp's default), then by name: PATH is the same string on every
 * connection, whose hash V8 keeps, where one key of both would be a new string to hash each
 * time (a PATH is 100 bytes and more). */
const found = new Map<string | undefined, Map<string, { file: string; until: number }>>();
let foundCount = 0;
// SIGHUP: a program just installed or moved is searched for again at once.
onReload(() => forget());

function forget(): void {
  found.clear();
  foundCount = 0;
}

/** The file that `execvp(name)` would run with this PATH (a byte string, as the environment
 * holds it); the file as a command-line word is (src/ucspi/os-string.ts). */
export function findProgram(name: string, path: string | undefined): string {
  if (name.includes("/")) return name;
  const now = Date.now();
  const known = found.get(path)?.get(name);
  if (known && now < known.until) return known.file;
  const file = searchPath(name, path);
  if (foundCount > 1000) forget();
  let names = found.get(path);
  if (!names) found.set(path, (names = new Map()));
  if (!names.has(name)) foundCount++;
  names.set(name, { file, until: now + FOUND_MS });
  return file;
}

function searchPath(name: string, path: string | undefined): string {
  let code = "ENOENT";
  for (const dir of osFromBytes(path ?? "/bin:/usr/bin").split(":")) {
    const file = join(dir === "" ? "." : dir, name);
    try {
      accessSync(osPath(file), constants.X_OK);
      if (statSync(osPath(file)).isFile()) return file;
      code = "EACCES";
    } catch (error) {
      const c = (error as { code?: string }).code;
      if (c && c !== "ENOENT" && c !== "ENOTDIR") code = c;
    }
  }
  throw new ProgramNotFound(name, code);
}
