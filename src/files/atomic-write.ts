// Files written so that a reader, a crash or a power cut sees the old content or the new one,
// never a part of it and never trailing bytes: each file goes to a temp file beside it (created
// with O_EXCL and its final mode, so a key is never readable by others, not even for a moment),
// is written in full and fsync'ed, then renamed over the target (or hard-linked to it when an
// existing file must not be replaced: link(2) fails atomically if the name exists), and the
// directory is fsync'ed so the new name survives a crash.
import { randomBytes } from "node:crypto";
import {
  closeSync,
  constants,
  fchownSync,
  fsyncSync,
  linkSync,
  lstatSync,
  openSync,
  renameSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { FatalError, causeText } from "../ucspi/errors.ts";
import { osPath } from "../ucspi/os-string.ts";

/** The system calls the writer makes; tests inject failures through it. */
export interface FileSystem {
  open(path: string, flags: number, mode: number): number;
  write(fd: number, data: Uint8Array, offset: number, length: number): number;
  fsync(fd: number): void;
  close(fd: number): void;
  rename(from: string, to: string): void;
  link(existing: string, path: string): void;
  unlink(path: string): void;
  /** Owner of a path (not following a symlink), or undefined if there is nothing there. */
  owner(path: string): { uid: number; gid: number } | undefined;
  fchown(fd: number, uid: number, gid: number): void;
}

/** The real one: a name is a command-line word's bytes (osPath, src/ucspi/os-string.ts). */
export const nodeFileSystem: FileSystem = {
  open: (path, flags, mode) => openSync(osPath(path), flags, mode),
  write: (fd, data, offset, length) => writeSync(fd, data, offset, length),
  fsync: (fd) => fsyncSync(fd),
  close: (fd) => closeSync(fd),
  rename: (from, to) => renameSync(osPath(from), osPath(to)),
  link: (existing, path) => linkSync(osPath(existing), osPath(path)),
  unlink: (path) => unlinkSync(osPath(path)),
  owner: (path) => {
    try {
      const s = lstatSync(osPath(path));
      return { uid: s.uid, gid: s.gid };
    } catch (error) {
      if ((error as { code?: unknown }).code === "ENOENT") return undefined;
      throw error;
    }
  },
  fchown: (fd, uid, gid) => fchownSync(fd, uid, gid),
};

/** One file to write. */
export interface AtomicFile {
  path: string;
  data: string | Uint8Array;
  /** Permission bits the file is created with (the umask still applies): 0o600 for keys. */
  mode: number;
}

export interface AtomicWriteOptions {
  /** Replace existing files (rename); without it an existing target is an EEXIST error. */
  overwrite?: boolean;
  fs?: FileSystem;
}

/** The step that failed, for messages and tests. */
export type AtomicStep = "create" | "write" | "sync" | "replace" | "link" | "sync-dir";

/** A failed write: `code` is the system's (EEXIST, ENOENT, ENOSPC...), `path` the target. */
export class AtomicWriteError extends FatalError {
  override name = "AtomicWriteError";
  readonly code: string;
  readonly path: string;
  readonly step: AtomicStep;
  constructor(step: AtomicStep, path: string, cause: unknown, note = "") {
    super(`unable to ${VERBS[step]} ${path}: ${reasonOf(step, path, cause)}${note}`, 111, {
      cause,
    });
    this.code = String((cause as { code?: unknown } | undefined)?.code ?? "EIO");
    this.path = path;
    this.step = step;
  }
}

const VERBS: Record<AtomicStep, string> = {
  create: "create",
  write: "write",
  sync: "sync",
  replace: "replace",
  link: "create",
  "sync-dir": "sync the directory of",
};

function reasonOf(step: AtomicStep, path: string, cause: unknown): string {
  const code = (cause as { code?: unknown } | undefined)?.code;
  if (step === "create" && code === "ENOENT") return `directory ${dirname(path)} does not exist`;
  if (step === "create" && code === "ENOTDIR") return `${dirname(path)} is not a directory`;
  return causeText(cause);
}

/** Writes one file atomically (see writeFilesAtomic). */
export function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions & { mode?: number } = {},
): void {
  writeFilesAtomic([{ path, data, mode: options.mode ?? 0o644 }], options);
}

/**
 * Writes every file in full to its temp file first, then moves them into place in order, then
 * syncs their directories. If anything fails, the temp files are removed; without `overwrite`
 * the files this call already put in place are removed too, so nothing is left half done. With
 * `overwrite` a failure between two moves can leave the earlier files new and the later ones
 * old (the error says which): each file on its own is always whole.
 */
export function writeFilesAtomic(
  files: readonly AtomicFile[],
  options: AtomicWriteOptions = {},
): void {
  const fs = options.fs ?? nodeFileSystem;
  const overwrite = options.overwrite ?? false;
  const temps: string[] = [];
  const placed: string[] = [];
  try {
    for (const file of files) temps.push(writeTemp(fs, file, overwrite));
    for (const [i, file] of files.entries()) {
      const temp = temps[i] ?? "";
      moveIntoPlace(fs, temp, file.path, overwrite, placed);
      placed.push(file.path);
    }
    for (const dir of new Set(files.map((f) => dirname(f.path)))) syncDirectory(fs, dir, files);
  } catch (error) {
    for (const temp of temps) removeQuietly(fs, temp);
    if (!overwrite) for (const path of placed) removeQuietly(fs, path);
    throw error;
  }
}

/** The temp file's name: hidden (readers of a directory skip dot files), beside the target. */
function tempNameFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
}

function writeTemp(fs: FileSystem, file: AtomicFile, overwrite: boolean): string {
  const temp = tempNameFor(file.path);
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  let fd: number;
  try {
    fd = fs.open(temp, flags, file.mode);
  } catch (error) {
    throw new AtomicWriteError("create", file.path, error);
  }
  let step: AtomicStep = "write";
  try {
    if (overwrite) keepOwner(fs, fd, file.path);
    const bytes = typeof file.data === "string" ? Buffer.from(file.data) : file.data;
    for (let done = 0; done < bytes.length;) {
      const n = fs.write(fd, bytes, done, bytes.length - done);
      if (n <= 0) throw Object.assign(new Error("short write"), { code: "EIO" });
      done += n;
    }
    step = "sync";
    fs.fsync(fd);
  } catch (error) {
    closeQuietly(fs, fd);
    removeQuietly(fs, temp);
    throw new AtomicWriteError(step, file.path, error);
  }
  try {
    fs.close(fd);
  } catch (error) {
    removeQuietly(fs, temp);
    throw new AtomicWriteError("write", file.path, error);
  }
  return temp;
}

function moveIntoPlace(
  fs: FileSystem,
  temp: string,
  path: string,
  overwrite: boolean,
  placed: readonly string[],
): void {
  const note = overwrite && placed.length > 0 ? ` (${placed.join(", ")} already replaced)` : "";
  if (overwrite) {
    try {
      fs.rename(temp, path);
    } catch (error) {
      throw new AtomicWriteError("replace", path, error, note);
    }
    return;
  }
  try {
    fs.link(temp, path);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    // File systems without hard links: check, then rename (a small race, but no clobbering
    // of a file that was there before this call began).
    if (code === "EPERM" || code === "ENOTSUP" || code === "EOPNOTSUPP" || code === "ENOSYS") {
      if (fs.owner(path) !== undefined) {
        throw new AtomicWriteError("link", path, Object.assign(new Error(), { code: "EEXIST" }));
      }
      try {
        fs.rename(temp, path);
        return;
      } catch (renameError) {
        throw new AtomicWriteError("replace", path, renameError);
      }
    }
    throw new AtomicWriteError("link", path, error);
  }
  removeQuietly(fs, temp);
}

function syncDirectory(fs: FileSystem, dir: string, files: readonly AtomicFile[]): void {
  let fd: number;
  const target = files.find((f) => dirname(f.path) === dir)?.path ?? dir;
  try {
    fd = fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY, 0);
  } catch (error) {
    throw new AtomicWriteError("sync-dir", target, error);
  }
  try {
    fs.fsync(fd);
  } catch (error) {
    // Some file systems cannot sync a directory; the rename is done, so that is not fatal.
    if ((error as { code?: unknown }).code !== "EINVAL") {
      closeQuietly(fs, fd);
      throw new AtomicWriteError("sync-dir", target, error);
    }
  }
  closeQuietly(fs, fd);
}

/** Over an existing file, the new one keeps its owner and group where we may set them. */
function keepOwner(fs: FileSystem, fd: number, path: string): void {
  const owner = fs.owner(path);
  if (!owner) return;
  try {
    fs.fchown(fd, owner.uid, owner.gid);
  } catch {
    // Not ours to give away (not root): the file will be the writer's, as a new one would.
  }
}

function closeQuietly(fs: FileSystem, fd: number): void {
  try {
    fs.close(fd);
  } catch {
    // Nothing more to do with it.
  }
}

function removeQuietly(fs: FileSystem, path: string): void {
  try {
    fs.unlink(path);
  } catch {
    // Already gone.
  }
}
