// What a file looks like from outside (inode, size, modification time): a file whose stamp
// changed is read again. "-" for one that cannot be looked at.
import { statSync } from "node:fs";
import { osPath } from "../ucspi/os-string.ts";

export function stampOf(files: readonly string[]): string {
  return files
    .map((f) => {
      try {
        const s = statSync(osPath(f));
        return `${s.ino}:${s.size}:${s.mtimeMs}`;
      } catch {
        return "-";
      }
    })
    .join("|");
}

type Outcome<T> =
  { stamp: string; ok: true; value: T } | { stamp: string; ok: false; error: unknown };

/** What `read` makes of a file (parsed, checked), made again only when the file's stamp changes
 * or after forget(): every context of a store shares one read of CAFILE. What `read` threw is
 * kept as well, and thrown again until then. */
export class StampedRead<T> {
  readonly file: string;
  private readonly read: () => T;
  private last: Outcome<T> | undefined;

  constructor(file: string, read: () => T) {
    this.file = file;
    this.read = read;
  }

  /** The content, and the stamp of the file it was made from (taken before the read: a file
   * that changes meanwhile is read again next time). */
  get(): { value: T; stamp: string } {
    const stamp = stampOf([this.file]);
    if (this.last?.stamp !== stamp) {
      try {
        this.last = { stamp, ok: true, value: this.read() };
      } catch (error) {
        this.last = { stamp, ok: false, error };
      }
    }
    if (!this.last.ok) throw this.last.error;
    return { value: this.last.value, stamp };
  }

  /** A file rewritten in place can keep its stamp: the next get() reads it whatever it says. */
  forget(): void {
    this.last = undefined;
  }
}
