// tcprules rules.cdb rules.tmp: compile the rules on stdin into rules.tmp, then rename it over
// rules.cdb, so tcpserver always sees the old rules or the new ones. Messages and exit codes are
// djb's; unlike djb, rules.tmp is removed when something goes wrong after it was created.
import {
  closeSync,
  fsyncSync,
  openSync,
  readSync,
  renameSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { cdbMake } from "../rules/cdb.ts";
import { osPath } from "../ucspi/os-string.ts";
import { FatalError, UsageError, causeText } from "../ucspi/errors.ts";
import { helpAsked } from "../cli/help.ts";
import { fdsNotOpen, programArgs, reportError, writeStderr } from "../cli/main.ts";
import { RuleLineError, parseRuleLines } from "../rules/tcprules-parse.ts";

const USAGE = "tcprules rules.cdb rules.tmp";

/** All of stdin, read with read(2) as djb does (so a directory on stdin is an error). */
async function readInput(): Promise<Buffer> {
  // Closed, fd 0 is /dev/null (the launcher's): an empty input would allow every client.
  if (fdsNotOpen.includes(0))
    throw new FatalError("unable to read input: file descriptor not open", 111);
  const chunks: Buffer[] = [];
  const buffer = Buffer.allocUnsafe(65536);
  for (;;) {
    let n: number;
    try {
      n = readSync(0, buffer, 0, buffer.length, null);
    } catch (error) {
      if ((error as { code?: unknown }).code === "EAGAIN") {
        // A non-blocking pipe inherited from the parent: wait for more.
        await new Promise((resolve) => setTimeout(resolve, 5));
        continue;
      }
      throw new FatalError(`unable to read input: ${causeText(error)}`, 111, { cause: error });
    }
    if (n === 0) return Buffer.concat(chunks);
    chunks.push(Buffer.from(buffer.subarray(0, n)));
  }
}

function writeAll(fd: number, bytes: Buffer): void {
  for (let done = 0; done < bytes.length;) done += writeSync(fd, bytes, done);
}

async function main(args: readonly string[]): Promise<number> {
  if (helpAsked("tcprules", args, USAGE)) return 0;
  const [cdbPath, tmpPath] = args;
  if (cdbPath === undefined || tmpPath === undefined) throw new UsageError("");
  let fd: number;
  try {
    fd = openSync(osPath(tmpPath), "w", 0o644);
  } catch (error) {
    throw new FatalError(`unable to create ${tmpPath}: ${causeText(error)}`, 111, { cause: error });
  }
  let moved = false;
  try {
    const records = parseRuleLines(await readInput());
    try {
      writeAll(fd, cdbMake(records));
      fsyncSync(fd);
    } catch (error) {
      throw new FatalError(`unable to write to ${tmpPath}: ${causeText(error)}`, 111, {
        cause: error,
      });
    } finally {
      closeSync(fd);
    }
    try {
      renameSync(osPath(tmpPath), osPath(cdbPath));
      moved = true;
    } catch (error) {
      const cause = causeText(error);
      throw new FatalError(`unable to move ${tmpPath} to ${cdbPath}: ${cause}`, 111, {
        cause: error,
      });
    }
  } finally {
    if (!moved) removeQuietly(tmpPath);
  }
  return 0;
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(osPath(path));
  } catch {
    // Already gone, or not ours to remove.
  }
}

main(programArgs()).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof RuleLineError) {
      // The line goes out byte for byte, as djb's does.
      const prefix = Buffer.from("tcprules: fatal: unable to parse this line: ", "latin1");
      writeStderr(Buffer.concat([prefix, error.line, Buffer.from("\n", "latin1")]));
      process.exitCode = 100;
      return;
    }
    process.exitCode = reportError("tcprules", error, writeStderr, USAGE);
  },
);
