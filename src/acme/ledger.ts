// The orders of every tlsd that shares a CERTDIR, on disk: under djb's tcpserver each
// connection is a tlsd process of its own, so an order count or an "already ordering" flag in
// memory would bound nothing. Two files in CERTDIR/.acme/:
//   orders/NAME   created exclusively (O_EXCL) while NAME is being ordered: one order per name
//                 at a time. It holds its owner's token: only the owner releases it, and the
//                 owner touches it while its order runs (refresh), so that one older than
//                 STALE_MS was left by a crashed process and is taken over (CertMagic's way).
//                 It also names its owner's process (pid, start time, boot and pid namespace),
//                 so that a tlsd beside it sees at once that the owner is gone (SIGKILL, a
//                 crash) and takes over then, not STALE_MS later;
//   failures/NAME why the last order of NAME failed, written by its owner before it releases
//                 its claim: the tlsds that waited on that order say the cause too;
//   orders.log    "time name" per order, appended (one short write: atomic with O_APPEND);
//                 the orders of the last hour are counted from it.
import { randomBytes } from "node:crypto";
import {
  closeSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeSync,
} from "node:fs";
import { basename, join } from "node:path";
import { writeFileAtomic } from "../files/atomic-write.ts";
import { ownProcessId, ownUid, pidScope, stillRuns } from "../proc/process-id.ts";
import { osPath } from "../ucspi/os-string.ts";

export type Claim =
  /** Ours to order; release() when done. */
  | "claimed"
  /** Another tlsd orders it now. */
  | "busy"
  /** The hour's orders are used up. */
  | "limited";

const HOUR_MS = 3_600_000;
/** A claim older than this was left by a process that died while ordering: its owner touches
 * it every REFRESH_MS while the order runs. Three minutes, for the tlsds of other hosts that
 * share the CERTDIR (where the owner's pid says nothing): six touches missed, room for NFS's
 * attribute cache (60 s at most by default) and for clocks a little apart. */
export const STALE_MS = 3 * 60_000;
export const REFRESH_MS = STALE_MS / 6;
/** The log is rewritten with the last hour only once it grows past this. */
const LOG_TRIM_BYTES = 64 * 1024;

export class Ledger {
  private readonly dir: string;
  private readonly failures: string;
  private readonly log: string;
  private readonly limit: number;
  private readonly now: () => number;
  /** The tokens of this process's claims, by name. */
  private readonly tokens = new Map<string, string>();
  /** What a claim says of its owner after the token: this process, and where its pid counts. */
  private readonly owner: string;
  private readonly scope: string | undefined;

  constructor(acmeDir: string, ordersPerHour: number, now: () => number = Date.now) {
    this.dir = join(acmeDir, "orders");
    this.failures = join(acmeDir, "failures");
    this.log = join(acmeDir, "orders.log");
    this.limit = ordersPerHour;
    this.now = now;
    this.scope = pidScope();
    const self = ownProcessId();
    this.owner = self && this.scope ? ` ${self.pid} ${self.since} ${this.scope}` : "";
  }

  claim(name: string): Claim {
    mkdirSync(osPath(this.dir), { recursive: true, mode: 0o700 });
    const lock = join(this.dir, name);
    const token = randomBytes(16).toString("hex");
    if (!this.lock(lock, token) && !(this.takeOver(lock) && this.lock(lock, token))) return "busy";
    const recent = this.recent();
    if (recent.length >= this.limit) {
      rmSync(osPath(lock), { force: true });
      return "limited";
    }
    this.append(`${this.now()} ${name}\n`, recent);
    this.tokens.set(name, token);
    return "claimed";
  }

  /** Touches this process's claim of `name`: its order is still running. */
  refresh(name: string): void {
    if (!this.owns(name)) return;
    const at = new Date(this.now());
    try {
      utimesSync(osPath(join(this.dir, name)), at, at);
    } catch {
      // gone: taken over (we were too slow), nothing to keep fresh
    }
  }

  /** Ends this process's claim of `name`; another's (one that took a stale claim of ours
   * over) is left alone. */
  release(name: string): void {
    if (this.owns(name)) rmSync(osPath(join(this.dir, name)), { force: true });
    this.tokens.delete(name);
  }

  /** Says why this process's order of `name` failed (one line), for the tlsds waiting on it;
   * before release(). */
  failed(name: string, cause: string): void {
    if (!this.owns(name)) return;
    mkdirSync(osPath(this.failures), { recursive: true, mode: 0o700 });
    writeFileAtomic(join(this.failures, name), `${cause.split("\n")[0] ?? ""}\n`, {
      mode: 0o600,
      overwrite: true,
    });
  }

  /** Why an order of `name` that ended since `since` failed, as its owner said it. */
  failure(name: string, since: number): string | undefined {
    const file = join(this.failures, name);
    if (mtimeOf(file) < since) return undefined;
    try {
      return readFileSync(osPath(file), "latin1").trim() || undefined;
    } catch {
      return undefined;
    }
  }

  private owns(name: string): boolean {
    const token = this.tokens.get(name);
    if (token === undefined) return false;
    try {
      return readFileSync(osPath(join(this.dir, name)), "latin1").split(/\s/)[0] === token;
    } catch {
      return false;
    }
  }

  /** Whether the process that claimed `name` is known to have gone without releasing it
   * (killed outright, crashed). Only a claim made on this boot, in this pid namespace, by this
   * user (or looked at by root) can say so: /proc hides no process of theirs. */
  ownerGone(name: string): boolean {
    const lock = osPath(join(this.dir, name));
    let text;
    let uid;
    try {
      text = readFileSync(lock, "latin1");
      uid = statSync(lock).uid;
    } catch {
      return false;
    }
    const [, pid, since, scope] = text.trim().split(" ");
    const me = ownUid();
    if (!this.scope || scope !== this.scope || !pid || !since) return false;
    if (me === undefined || (me !== 0 && uid !== me)) return false;
    return !stillRuns({ pid: Number(pid), since });
  }

  /** Removes a stale claim, once, whoever else tries at the same moment: it is renamed aside
   * (only one rename of a file succeeds), and put back if what was moved was not the stale
   * file looked at (a fresh claim made meanwhile). True when it is gone. */
  private takeOver(lock: string): boolean {
    let seen;
    try {
      seen = statSync(osPath(lock));
    } catch {
      return true; // released meanwhile
    }
    if (this.now() - seen.mtimeMs < STALE_MS && !this.ownerGone(basename(lock))) return false;
    const aside = `${lock}.stale.${randomBytes(4).toString("hex")}`;
    try {
      renameSync(osPath(lock), osPath(aside));
    } catch {
      return false; // another took it over first
    }
    const moved = statSync(osPath(aside));
    if (moved.ino !== seen.ino || moved.mtimeMs !== seen.mtimeMs) {
      try {
        linkSync(osPath(aside), osPath(lock)); // fails if yet another claim is there: that one stands
      } catch {
        // nothing to put back
      }
      rmSync(osPath(aside), { force: true });
      return false;
    }
    rmSync(osPath(aside), { force: true });
    return true;
  }

  /** Whether some tlsd (maybe this one) is ordering `name` now. */
  ordering(name: string): boolean {
    return this.orderState(name) === "ordering";
  }

  /** One look at the claim of `name`: a fresh one whose owner is not known to be gone
   * ("ordering"), one whose owner is known to have gone without releasing it ("gone"), or none
   * that counts (released, stale). One look, so that an owner killed between two looks is not
   * taken for one that released its claim. */
  orderState(name: string): "ordering" | "gone" | "none" {
    if (this.ownerGone(name)) return "gone";
    const at = mtimeOf(join(this.dir, name));
    return at > 0 && this.now() - at < STALE_MS ? "ordering" : "none";
  }

  private lock(path: string, token: string): boolean {
    try {
      const fd = openSync(osPath(path), "wx", 0o600);
      writeSync(fd, `${token}${this.owner}\n`);
      closeSync(fd);
      return true;
    } catch (error) {
      if ((error as { code?: string }).code === "EEXIST") return false;
      throw error;
    }
  }

  /** The log's lines of the last hour. */
  private recent(): string[] {
    let text = "";
    try {
      text = readFileSync(osPath(this.log), "latin1");
    } catch {
      return [];
    }
    const since = this.now() - HOUR_MS;
    return text.split("\n").filter((line) => line !== "" && Number(line.split(" ")[0]) > since);
  }

  private append(line: string, recent: string[]): void {
    let size = 0;
    try {
      size = statSync(osPath(this.log)).size;
    } catch {
      // no log yet
    }
    if (size > LOG_TRIM_BYTES) {
      writeFileAtomic(this.log, recent.join("\n") + (recent.length ? "\n" : "") + line, {
        mode: 0o600,
        overwrite: true,
      });
      return;
    }
    const fd = openSync(osPath(this.log), "a", 0o600);
    try {
      writeSync(fd, line);
    } finally {
      closeSync(fd);
    }
  }
}

/** A file's mtime in ms; 0 when it is not there. */
export function mtimeOf(path: string): number {
  try {
    return statSync(osPath(path)).mtimeMs;
  } catch {
    return 0;
  }
}
