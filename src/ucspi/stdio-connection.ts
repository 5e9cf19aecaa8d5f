// A standalone program's Connection: fds 0/1 (server side) or 6/7 (client side). When both fds
// are one socket (the usual case under tcpserver) one socket handle serves both directions.
import { fstatSync } from "node:fs";
import { Socket } from "node:net";
import { Duplex } from "node:stream";
import { isatty } from "node:tty";
import { FatalError, causeText } from "./errors.ts";
import type { Connection, Side } from "./stage.ts";

/** `fds` overrides the side's usual pair (tlsc -6/-7); `notOpen`: fds the launcher found
 * closed and holds with /dev/null (UCSPI_FD_NOT_OPEN, launcher.c). */
export function stdioConnection(
  side: Side,
  fds?: [number, number],
  notOpen: readonly number[] = [],
): Connection {
  const [read, write] = fds ?? (side === "server" ? [0, 1] : [6, 7]);
  for (const fd of [read, write])
    if (notOpen.includes(fd))
      throw new FatalError(`unable to use fd ${fd}: file descriptor not open`, 111);
  const r = statFd(read);
  const w = statFd(write);
  if (r.ino === w.ino && r.dev === w.dev && r.isSocket()) return { fd: read };
  for (const [fd, stat] of [
    [read, r],
    [write, w],
  ] as const) {
    if (!stat.isSocket() && !stat.isFIFO() && !isatty(fd))
      throw new FatalError(`unable to use fd ${fd}: not a socket or a pipe`, 111);
  }
  // manualStart: nothing is read (and no error raised) until a stage uses the connection.
  const input = new Socket({
    fd: read,
    readable: true,
    writable: false,
    allowHalfOpen: true,
    manualStart: true,
  } as ConstructorParameters<typeof Socket>[0]);
  const output = new Socket({ fd: write, readable: false, writable: true, allowHalfOpen: true });
  const stream = Duplex.from({ readable: input, writable: output });
  // A stage that uses the stream listens for its errors; until then (or if the program ends
  // on a configuration error first) a broken fd must not crash the process.
  stream.on("error", () => {});
  return { stream };
}

function statFd(fd: number) {
  try {
    return fstatSync(fd);
  } catch (error) {
    throw new FatalError(`unable to use fd ${fd}: ${causeText(error)}`, 111);
  }
}
