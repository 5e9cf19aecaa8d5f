// What a file looks like from outside (inode, size, modification time): a file whose stamp
// changed is read again. "-" for one that cannot be looked at.
import { statSync } from "node:fs";

export function stampOf(files: readonly string[]): string {
  return files
    .map((f) => {
      try {
        const s = statSync(f);
        return `${s.ino}:${s.size}:${s.mtimeMs}`;
      } catch {
        return "-";
      }
    })
    .join("|");
}
