// Relays bytes both ways between two duplex streams, with backpressure, and passes a
// half-close on: when one side ends its writing, the other side's writing is ended too,
// while the opposite direction goes on until it ends as well.
//
// A failure ends only its own direction. A program that exits without reading all its input
// makes writes to it fail (EPIPE) or its socket reset, but what it wrote is still delivered to
// the peer and the peer's side is still closed properly (TLS: with close_notify). A peer that
// is gone the other way round stops the program's side (see RelayHalves.stop): the program
// learns it from EPIPE at once, rather than write on into a relay that drops its bytes.
import type { Duplex, Readable, Writable } from "node:stream";

/** One side of a relay: a duplex stream, or a readable and a writable of their own (so that a
 * failed write, which destroys its stream, does not take the reading side with it). */
export type RelaySide = Duplex | RelayHalves;

export interface RelayHalves {
  source: Readable;
  sink: Writable;
  /** Gather the writes to `sink` that one turn of the event loop makes into one (a writev,
   * flushed by setImmediate, right after that turn's I/O callbacks). TLS hands its records
   * over 16 KiB at a time, and a program that reads its input as it comes would otherwise be
   * woken once for each. */
  batchWrites?: boolean;
  /** Set when `source` hands its bytes over through a callback (net.Socket's `onread`) rather
   * than "data" events: the relay puts its writer here, for that callback to call. */
  feed?: Feed;
  /** Called when the other side refuses what `source` gives (its peer is gone): stops the
   * writer behind `source`, which would otherwise write on, unread, for ever. Without it, the
   * rest of `source` is read and dropped until it ends. */
  stop?: () => void;
}

/** The writer of one direction, for a source read with `onread`: it returns false when the
 * source is to pause (the relay resumes it on "drain"), and drops the bytes (returning true)
 * once the direction is over. Unset until the relay starts and again once it is done. */
export interface Feed {
  write?: (bytes: Buffer) => boolean;
}

export interface OneWayOptions {
  /** See RelayHalves.batchWrites (here for `to`). */
  batchWrites?: boolean;
  /** See RelayHalves.feed (here for `from`). */
  feed?: Feed;
  /** See RelayHalves.stop (here for `from`). */
  stop?: () => void;
}

/** How a direction ended: its source ended, or its destination refused more. */
export type OneWayEnd = "ended" | "refused";

const halves = (side: RelaySide): RelayHalves =>
  "source" in side ? side : { source: side, sink: side };

/** Resolves once both directions are done. */
export async function relay(a: RelaySide, b: RelaySide): Promise<void> {
  const x = halves(a);
  const y = halves(b);
  await Promise.all([
    oneWay(x.source, y.sink, { feed: x.feed, batchWrites: y.batchWrites, stop: x.stop }),
    oneWay(y.source, x.sink, { feed: y.feed, batchWrites: x.batchWrites, stop: y.stop }),
  ]);
}

/** One direction: `from` into `to` until `from` ends (then `to` is ended: a half-close) or
 * `to` refuses more (then `stop` is called, or else the rest of `from` is read and dropped),
 * with backpressure. A loop of our own rather than pipe(), for batchWrites and for sources read
 * with `onread`. */
export function oneWay(
  from: Readable,
  to: Writable,
  options: OneWayOptions = {},
): Promise<OneWayEnd> {
  const { feed, batchWrites = false, stop } = options;
  return new Promise((resolve) => {
    let finished = false;
    let corked = false;
    const flush = () => {
      corked = false;
      to.uncork();
    };
    const finish = (how: OneWayEnd) => {
      finished = true;
      from.off("data", write);
      if (feed) feed.write = undefined;
      resolve(how);
    };
    const resume = () => {
      if (!finished) from.resume();
    };
    const write = (chunk: Buffer): boolean => {
      // After a refusal the rest of this direction is read and dropped.
      if (finished) return true;
      if (batchWrites && !corked) {
        corked = true;
        to.cork();
        setImmediate(flush);
      }
      if (to.write(chunk)) return true;
      from.pause();
      to.once("drain", resume);
      return false;
    };
    // The source ended (or broke): pass the end on, as a half-close.
    const ended = () => {
      if (finished) return;
      if (corked) flush();
      if (!to.destroyed && !to.writableEnded) to.end();
      finish("ended");
    };
    // The destination cannot take more: stop the source, or drop the rest of this direction.
    const refused = () => {
      if (finished) return;
      finish("refused");
      if (stop) stop();
      else from.resume();
    };
    if (feed) feed.write = write;
    else from.on("data", write);
    from.resume();
    from.once("end", ended);
    from.once("close", ended);
    from.on("error", ended);
    to.on("error", refused);
    to.once("close", () => {
      if (!finished && !to.writableFinished) refused();
    });
  });
}
