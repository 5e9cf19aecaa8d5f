// What the CA said of renewing each certificate of the cache (ARI), kept on disk in
// CERTDIR/.acme/renewal/NAME: every tlsd of the cache reads it (under djb's tcpserver each
// connection is a tlsd of its own), so the CA is asked once per Retry-After, not once per
// connection, and the moment chosen in a window stays the same across them.
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../files/atomic-write.ts";
import { osPath } from "../ucspi/os-string.ts";

export interface RenewalRecord {
  /** The certificate's serial (hex): a record of another certificate of the name is not its. */
  serial: string;
  /** When to ask the CA again. */
  askAt: number;
  /** The window the CA suggested and the moment chosen in it (ms since the epoch), with the
   * certificate's ARI identifier; none when the CA has no ARI or did not answer. */
  certificateId?: string;
  start?: number;
  end?: number;
  moment?: number;
}

export class RenewalRecords {
  private readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** The record of `name`'s certificate whose serial is `serial`, or undefined when there is
   * none, it cannot be read as one, or it is another certificate's. */
  read(name: string, serial: string): RenewalRecord | undefined {
    let record: unknown;
    try {
      record = JSON.parse(readFileSync(osPath(join(this.dir, name)), "utf8"));
    } catch {
      return undefined;
    }
    const r = record as Record<string, unknown> | null;
    if (r?.["serial"] !== serial || !isTime(r["askAt"])) return undefined;
    const window = ["start", "end", "moment"].every((k) => isTime(r[k]));
    return {
      serial,
      askAt: r["askAt"],
      ...(window && typeof r["certificateId"] === "string"
        ? {
            certificateId: r["certificateId"],
            start: r["start"] as number,
            end: r["end"] as number,
            moment: r["moment"] as number,
          }
        : {}),
    };
  }

  write(name: string, record: RenewalRecord): void {
    mkdirSync(osPath(this.dir), { recursive: true, mode: 0o700 });
    writeFileAtomic(join(this.dir, name), `${JSON.stringify(record)}\n`, {
      mode: 0o600,
      overwrite: true,
    });
  }
}

function isTime(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value);
}
