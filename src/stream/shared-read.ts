// A socket read into one buffer shared by the whole process, its bytes handed to a relay's feed:
// no new Buffer for each read (in a 1 GiB transfer that cost as much CPU as the TLS encryption),
// and none of the Readable machinery per chunk. For the sockets we relay a stream to: a
// spawned program's socketpair, a service tcpforward connected to.
import { Socket } from "node:net";
import type { Writable } from "node:stream";
import { FrontStream } from "./front-stream.ts";
import type { Feed } from "./relay.ts";

/** Each read is handed on before the next one can happen (one thread), so the buffer is never
 * read into again while it still holds bytes that matter. See takeBytes. */
let readBuffer: Buffer | undefined;
const READ_BUFFER_SIZE = 65536;

/** A socket on fd (writable or not) whose reads go to `feed` as chunks for `sink`. Give the
 * relay { source: this, feed } for the direction read from it. */
export function sharedReadSocket(fd: number, sink: Writable, feed: Feed, writable: boolean) {
  return new Socket({
    fd,
    readable: true,
    writable,
    allowHalfOpen: true,
    onread: {
      buffer: (readBuffer ??= Buffer.allocUnsafe(READ_BUFFER_SIZE)),
      callback: (length: number, buffer: Uint8Array): boolean =>
        feed.write ? feed.write(takeBytes(sink, buffer, length)) : true,
    },
  });
}

/**
 * The `length` bytes just read into the shared buffer, as a chunk to write to `sink`: the
 * buffer itself when the write is sure to be done with it at once, else a copy. A TLSSocket
 * (`encrypted`) that has no write queued in JS passes the chunk straight to OpenSSL, which
 * encrypts it (or, if it cannot yet, copies it) before write() returns. Any other stream may
 * keep the chunk for later (libuv keeps what a socket could not take yet), so it gets a copy.
 */
function takeBytes(sink: Writable, buffer: Uint8Array, length: number): Buffer {
  const bytes = Buffer.from(buffer.buffer, buffer.byteOffset, length);
  return encryptsAtOnce(sink) ? bytes : Buffer.from(bytes);
}

/** Whether a write to `sink` reaches OpenSSL within the write call: a TLSSocket with no write
 * queued, or a FrontStream that passes writes straight on to one (the close_notify policies
 * put one in front of a TLS 1.2 session: copying each chunk for it cost a bulk transfer about
 * 10% more CPU). */
function encryptsAtOnce(sink: Writable | undefined): boolean {
  if (sink instanceof FrontStream) return encryptsAtOnce(sink.straightTo());
  return (
    sink !== undefined &&
    (sink as { encrypted?: unknown }).encrypted === true &&
    sink.writableLength === 0 &&
    sink.writableCorked === 0 &&
    !(sink as { connecting?: boolean }).connecting
  );
}
