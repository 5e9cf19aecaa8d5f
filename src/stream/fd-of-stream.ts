// A stage that read its connection as a net.Socket, and is done with the bytes, can hand the
// socket's fd itself to native code (the TLS engine) rather than the stream: libuv stops
// reading it at once, and the fd is given only when nothing the peer sent waits in the stream
// and nothing written to it waits to go out. The Socket keeps the fd, idle: it is closed when
// the Socket is destroyed, as before. Node keeps the fd and the reading on the private handle.
import type { Duplex } from "node:stream";

interface Handle {
  fd?: number;
  reading?: boolean;
  readStop?: () => number;
}

/** `fd` when `stream` is the net.Socket over it, stopped and empty; else undefined (and the
 * stream reads on when it is read: net.Socket's _read starts the handle again). */
export function fdOfStream(stream: Duplex, fd: number | undefined): number | undefined {
  const handle = (stream as unknown as { _handle?: Handle })._handle;
  if (fd === undefined || handle?.fd !== fd || typeof handle.readStop !== "function")
    return undefined;
  if (handle.reading) {
    handle.reading = false;
    if (handle.readStop() !== 0) return undefined;
  }
  const idle = stream.readableLength === 0 && stream.writableLength === 0;
  return idle && !stream.destroyed && !stream.readableEnded ? fd : undefined;
}
