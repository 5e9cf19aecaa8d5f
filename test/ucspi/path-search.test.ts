// findProgram: execvp's search of PATH, remembered for a second per PATH and name. What is
// remembered for one PATH must never answer for another (an unset PATH is execvp's default,
// /bin:/usr/bin; an empty one is the current directory alone).
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ProgramNotFound, findProgram } from "../../src/ucspi/path-search.ts";

test("each PATH is searched on its own: unset, empty and a directory of one's own", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "ucspi-path-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cwd = process.cwd();
  process.chdir(dir);
  t.after(() => process.chdir(cwd));

  // Unset: execvp's default, where sh is.
  assert.equal(findProgram("sh", undefined), "/bin/sh");
  // Empty: this directory alone, which has no sh (the default's answer is not taken for it).
  assert.throws(
    () => findProgram("sh", ""),
    (error: unknown) => error instanceof ProgramNotFound && error.code === "ENOENT",
  );
  // A directory with an sh of its own: that one, though /bin/sh was found a moment ago.
  const own = join(dir, "sh");
  writeFileSync(own, "#!/bin/sh\n");
  chmodSync(own, 0o755);
  assert.equal(findProgram("sh", `${dir}:/bin`), own);
  assert.equal(findProgram("sh", "/bin"), "/bin/sh");
  // And each again, now from what was remembered.
  assert.equal(findProgram("sh", undefined), "/bin/sh");
  assert.equal(findProgram("sh", `${dir}:/bin`), own);
  // A name with a slash is not searched for.
  assert.equal(findProgram("./sh", ""), "./sh");
});

test("a file that is not executable is named as such (EACCES), as execvp does", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "ucspi-path-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "plain"), "data\n");
  assert.throws(
    () => findProgram("plain", dir),
    (error: unknown) => error instanceof ProgramNotFound && error.code === "EACCES",
  );
});
