// The orders of every tlsd that shares a CERTDIR, on disk: under djb's tcpserver each
// connection is a tlsd process of its own, so an order count or an "already ordering" flag in
// memory would bound nothing. Two files in CERTDIR/.acme/:
//   orders/NAME   created exclusively (O_EXCL) while NAME is being ordered: one order per name
//                 at a time; older than STALE_MS it is taken to be left by a crashed process;
//   orders.log    "time name" per order, appended (one short write: atomic with O_APPEND);
//                 the orders of the last hour are counted from it.
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../ucspi/atomic-write.ts";

export type Claim =
  /** Ours to order; release() when done. */
  | "claimed"
  /** Another tlsd orders it now. */
  | "busy"
  /** The hour's orders are used up. */
  | "limited";

const HOUR_MS = 3_600_000;
/** A claim older than this was left by a process that died while ordering. */
export const STALE_MS = 10 * 60_000;
/** The log is rewritten with the last hour only once it grows past this. */
const LOG_TRIM_BYTES = 64 * 1024;

export class Ledger {
  private readonly dir: string;
  private readonly log: string;
  private readonly limit: number;
  private readonly now: () => number;

  constructor(acmeDir: string, ordersPerHour: number, now: () => number = Date.now) {
    this.dir = join(acmeDir, "orders");
    this.log = join(acmeDir, "orders.log");
    this.limit = ordersPerHour;
    this.now = now;
  }

  claim(name: string): Claim {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const lock = join(this.dir, name);
    if (!this.lock(lock)) {
      if (this.now() - mtimeOf(lock) < STALE_MS) return "busy";
      rmSync(lock, { force: true });
      if (!this.lock(lock)) return "busy";
    }
    const recent = this.recent();
    if (recent.length >= this.limit) {
      rmSync(lock, { force: true });
      return "limited";
    }
    this.append(`${this.now()} ${name}\n`, recent);
    return "claimed";
  }

  release(name: string): void {
    rmSync(join(this.dir, name), { force: true });
  }

  /** Whether some tlsd (maybe this one) is ordering `name` now. */
  ordering(name: string): boolean {
    const at = mtimeOf(join(this.dir, name));
    return at > 0 && this.now() - at < STALE_MS;
  }

  private lock(path: string): boolean {
    try {
      const fd = openSync(path, "wx", 0o600);
      writeSync(fd, `${new Date(this.now()).toISOString()}\n`);
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
      text = readFileSync(this.log, "latin1");
    } catch {
      return [];
    }
    const since = this.now() - HOUR_MS;
    return text.split("\n").filter((line) => line !== "" && Number(line.split(" ")[0]) > since);
  }

  private append(line: string, recent: string[]): void {
    let size = 0;
    try {
      size = statSync(this.log).size;
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
    const fd = openSync(this.log, "a", 0o600);
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
    return statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}
