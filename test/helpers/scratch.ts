// Scratch directories removed when the test file's process exits, so that it removes what it made
// even when a test fails or --test-force-exit ends it (with process.exit).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dirs = new Set<string>();
process.once("exit", () => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A fresh directory ucspi-NAME-XXXXXX under tmpdir, removed at process exit. */
export function scratchDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `ucspi-${name}-`));
  dirs.add(dir);
  return dir;
}
