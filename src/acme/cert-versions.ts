// A certificate and its key switched as one, for every tlsd that reads the cache: each version
// is a directory of its own, CERTDIR/.versions/NAME.TIME.RANDOM/{privkey.pem,fullchain.pem},
// written in full before anyone can see it, and CERTDIR/NAME is a symlink to the current one,
// replaced with one rename(2). A reader that resolves NAME once (cert-store.ts does) reads a key
// and the chain of the same version, never the new key beside the old chain. The version
// before the current one stays, for a reader that resolved NAME a moment before the switch.
import { randomBytes } from "node:crypto";
import { lstatSync, mkdirSync, readdirSync, renameSync, rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { writeFilesAtomic } from "../files/atomic-write.ts";
import { osPath } from "../ucspi/os-string.ts";
import { CHAIN_FILE, KEY_FILE } from "../tls/cert-dir.ts";

const VERSIONS = ".versions";
/** The current version and the one before it stay. */
const KEEP = 2;

/** Writes a new version of `name`'s key and chain and makes it the current one. */
export function installCertificate(
  cacheDir: string,
  name: string,
  key: Uint8Array | string,
  chain: Uint8Array | string,
  now = Date.now(),
): void {
  const versions = join(cacheDir, VERSIONS);
  mkdirSync(osPath(versions), { recursive: true, mode: 0o755 });
  const version = `${name}.${now}.${randomBytes(4).toString("hex")}`;
  const dir = join(versions, version);
  mkdirSync(osPath(dir), { mode: 0o755 });
  writeFilesAtomic([
    { path: join(dir, KEY_FILE), data: key, mode: 0o600 },
    { path: join(dir, CHAIN_FILE), data: chain, mode: 0o644 },
  ]);
  const link = join(cacheDir, name);
  // A directory of an older tlsd (or one made by hand) is moved aside once: a symlink cannot
  // be renamed over a directory.
  if (isRealDirectory(link)) renameSync(osPath(link), osPath(join(versions, `${name}.${now}.old`)));
  const temp = join(cacheDir, `.${name}.${randomBytes(4).toString("hex")}.link`);
  symlinkSync(join(VERSIONS, version), osPath(temp));
  try {
    renameSync(osPath(temp), osPath(link));
  } catch (error) {
    rmSync(osPath(temp), { force: true });
    throw error;
  }
  prune(versions, name);
}

/** Takes `name`'s certificate out of the cache (it was revoked): every tlsd stops serving it
 * at its next look at the directory, and orders a new one for the next client. Its versions
 * stay until the next install prunes them. */
export function withdrawCertificate(cacheDir: string, name: string, now = Date.now()): void {
  const link = join(cacheDir, name);
  if (isRealDirectory(link))
    renameSync(osPath(link), osPath(join(cacheDir, VERSIONS, `${name}.${now}.old`)));
  else rmSync(osPath(link), { force: true });
}

function isRealDirectory(path: string): boolean {
  try {
    return lstatSync(osPath(path)).isDirectory();
  } catch {
    return false;
  }
}

/** Removes `name`'s versions but the newest KEEP (by their time, then name). */
function prune(versions: string, name: string): void {
  const pattern = new RegExp(`^${name.replace(/[.*]/g, "\\$&")}\\.(\\d+)\\.[0-9a-z]+$`);
  const mine = readdirSync(osPath(versions))
    .map((entry) => ({ entry, time: Number(pattern.exec(entry)?.[1] ?? NaN) }))
    .filter((v) => !Number.isNaN(v.time))
    .sort((a, b) => b.time - a.time || (a.entry < b.entry ? 1 : -1));
  for (const { entry } of mine.slice(KEEP))
    rmSync(osPath(join(versions, entry)), { recursive: true, force: true });
}
