// The atomic writer: modes from creation, no clobbering without overwrite, no trailing bytes on
// overwrite, and after any failure or crash at any system call the target holds the old content
// or the new one, never a part (fast-check over injected failures; a real SIGKILL loop).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import {
  AtomicWriteError,
  nodeFileSystem,
  writeFileAtomic,
  writeFilesAtomic,
} from "../../src/files/atomic-write.ts";
import type { FileSystem } from "../../src/files/atomic-write.ts";
import { ROOT } from "../helpers/programs.ts";
import { scratchDir } from "../helpers/scratch.ts";

const base = scratchDir("atomic-write");
let serial = 0;
const freshDir = () => {
  const dir = join(base, String(serial++));
  mkdirSync(dir);
  return dir;
};
const modeOf = (path: string) => statSync(path).mode & 0o777;
const umask = process.umask();

test("a new file gets its content and its mode from creation, and no temp file is left", () => {
  const dir = freshDir();
  writeFileAtomic(join(dir, "key.pem"), "secret\n", { mode: 0o600 });
  writeFileAtomic(join(dir, "cert.pem"), Buffer.from("public\n"), { mode: 0o644 });
  assert.equal(readFileSync(join(dir, "key.pem"), "utf8"), "secret\n");
  assert.equal(modeOf(join(dir, "key.pem")), 0o600 & ~umask);
  assert.equal(modeOf(join(dir, "cert.pem")), 0o644 & ~umask);
  assert.deepEqual(readdirSync(dir).sort(), ["cert.pem", "key.pem"]);
});

test("the temp file is created with the final mode (open's mode, not a chmod after)", () => {
  const dir = freshDir();
  const modes: number[] = [];
  const fs: FileSystem = {
    ...nodeFileSystem,
    open: (path, flags, mode) => {
      if (path.endsWith(".tmp")) modes.push(mode);
      return nodeFileSystem.open(path, flags, mode);
    },
  };
  writeFileAtomic(join(dir, "key.pem"), "k", { mode: 0o600, fs });
  assert.deepEqual(modes, [0o600]);
});

test("without overwrite an existing file is an EEXIST error and stays as it was", () => {
  const dir = freshDir();
  const path = join(dir, "cert.pem");
  writeFileSync(path, "old");
  assert.throws(
    () => writeFileAtomic(path, "new"),
    (error: unknown) =>
      error instanceof AtomicWriteError &&
      error.code === "EEXIST" &&
      error.exitCode === 111 &&
      error.message === `unable to create ${path}: file already exists`,
  );
  assert.equal(readFileSync(path, "utf8"), "old");
  assert.deepEqual(readdirSync(dir), ["cert.pem"]);
});

test("overwriting a big file with a small one leaves exactly the small one", () => {
  const dir = freshDir();
  const path = join(dir, "key.pem");
  writeFileSync(path, Buffer.alloc(1 << 20, 0x41));
  writeFileAtomic(path, "short\n", { overwrite: true, mode: 0o600 });
  assert.equal(readFileSync(path, "utf8"), "short\n");
  assert.equal(statSync(path).size, 6);
  assert.equal(modeOf(path), 0o600 & ~umask);
});

test("a missing directory is named in the error", () => {
  const dir = join(freshDir(), "nope");
  assert.throws(
    () => writeFileAtomic(join(dir, "x.pem"), "x"),
    (error: unknown) =>
      error instanceof AtomicWriteError &&
      error.code === "ENOENT" &&
      error.message === `unable to create ${dir}/x.pem: directory ${dir} does not exist`,
  );
});

test("several files: if one is already there, none of the others is left behind", () => {
  const dir = freshDir();
  writeFileSync(join(dir, "b"), "old b");
  assert.throws(() =>
    writeFilesAtomic([
      { path: join(dir, "a"), data: "new a", mode: 0o600 },
      { path: join(dir, "b"), data: "new b", mode: 0o644 },
    ]),
  );
  assert.deepEqual(readdirSync(dir), ["b"]);
  assert.equal(readFileSync(join(dir, "b"), "utf8"), "old b");
});

/** A file system that fails (or crashes: nothing after it runs) at call number `failAt`, and
 * writes at most `chunk` bytes per write call (short writes). */
function faulty(failAt: number, crash: boolean, chunk: number, code: string) {
  let calls = 0;
  let dead = false;
  let failed = "";
  const wrap =
    <A extends unknown[], R>(f: (...args: A) => R, name = "") =>
    (...args: A): R => {
      if (dead) throw Object.assign(new Error("crashed"), { code: "EIO" });
      if (++calls === failAt) {
        if (crash) dead = true;
        failed = name;
        throw Object.assign(new Error(`injected ${code}`), { code });
      }
      return f(...args);
    };
  const fs: FileSystem = {
    open: wrap(nodeFileSystem.open),
    write: wrap((fd: number, data: Uint8Array, offset: number, length: number) =>
      nodeFileSystem.write(fd, data, offset, Math.min(length, chunk)),
    ),
    fsync: wrap(nodeFileSystem.fsync),
    close: wrap(nodeFileSystem.close),
    rename: wrap(nodeFileSystem.rename),
    link: wrap(nodeFileSystem.link),
    unlink: wrap(nodeFileSystem.unlink, "unlink"),
    owner: wrap(nodeFileSystem.owner),
    fchown: wrap(nodeFileSystem.fchown),
  };
  /** Whether the failure hit a clean-up call (then leftovers are expected). */
  return { fs, cleanupFailed: () => failed === "unlink" };
}

test("property: after a failure or a crash at any call, each target is old or new, whole", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 3000 }),
      fc.uint8Array({ maxLength: 3000 }),
      fc.uint8Array({ maxLength: 200 }),
      fc.boolean(),
      fc.boolean(),
      fc.boolean(),
      fc.integer({ min: 1, max: 40 }),
      fc.integer({ min: 1, max: 4096 }),
      fc.constantFrom("EIO", "ENOSPC", "EPERM", "EINVAL", "EEXIST"),
      (oldData, newData, otherNew, hadOld, overwrite, crash, failAt, chunk, code) => {
        const dir = freshDir();
        const path = join(dir, "target");
        const other = join(dir, "other");
        if (hadOld) writeFileSync(path, oldData);
        const { fs, cleanupFailed } = faulty(failAt, crash, chunk, code);
        let failed = false;
        try {
          writeFilesAtomic(
            [
              { path: other, data: otherNew, mode: 0o600 },
              { path, data: newData, mode: 0o600 },
            ],
            { overwrite, fs },
          );
        } catch {
          failed = true;
        }
        const now = existsSync(path) ? readFileSync(path) : undefined;
        const isOld = hadOld ? now !== undefined && Buffer.from(oldData).equals(now) : !now;
        const isNew = now !== undefined && Buffer.from(newData).equals(now);
        assert.ok(isOld || isNew, "target is neither the old nor the new content");
        if (!failed) {
          assert.ok(overwrite || !hadOld ? isNew : false, "success without the new content");
          assert.deepEqual(Buffer.from(otherNew), readFileSync(other));
        }
        if (hadOld && !overwrite) assert.ok(isOld, "an existing file was replaced");
        if (!crash && !cleanupFailed()) {
          // A failure the writer saw: it cleaned up its temp files, and (without overwrite)
          // took back what it had put in place.
          const left = readdirSync(dir).filter((n) => n.endsWith(".tmp"));
          assert.deepEqual(left, []);
          if (failed && !overwrite) {
            assert.equal(existsSync(other), false);
            if (!hadOld) assert.equal(existsSync(path), false);
          }
        }
        rmSync(dir, { recursive: true, force: true });
      },
    ),
    { numRuns: 300 },
  );
});

test("a writer killed with SIGKILL at random moments leaves the old file or the new one", async () => {
  const dir = freshDir();
  const path = join(dir, "big.pem");
  const versions = ["A", "B", "C", "D"].map((c, i) => Buffer.alloc((4 - i) << 20, c));
  writeFileSync(path, versions[0] ?? "");
  const script = `
    import { writeFileAtomic } from ${JSON.stringify(join(ROOT, "src/files/atomic-write.ts"))};
    const sizes = [${versions.map((v) => v.length).join(",")}];
    const letters = "ABCD";
    process.stdout.write("go\\n");
    for (let i = 1; ; i = (i % 3) + 1) {
      writeFileAtomic(${JSON.stringify(path)}, Buffer.alloc(sizes[i], letters[i]), { overwrite: true });
    }
  `;
  for (let round = 0; round < 6; round++) {
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    await new Promise<void>((resolve) => child.stdout.once("data", () => resolve()));
    await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 150));
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("close", resolve));
    const now = readFileSync(path);
    assert.ok(
      versions.some((v) => v.equals(now)),
      `round ${round}: ${now.length} bytes, not one whole version`,
    );
  }
});
