// Relays bytes both ways between two duplex streams, with backpressure, and passes a
// half-close on: when one side ends its writing, the other side's writing is ended too,
// while the opposite direction goes on until it ends as well.
//
// A failure ends only its own direction. A program that exits without reading all its input
// makes writes to it fail (EPIPE) or its socket reset, but what it wrote is still delivered to
// the peer and the peer's side is still closed properly (TLS: with close_notify).
import type { Duplex, Readable, Writable } from "node:stream";

/** One side of a relay: a duplex stream, or a readable and a writable of their own (so that a
 * failed write, which destroys its stream, does not take the reading side with it). */
export type RelaySide = Duplex | { source: Readable; sink: Writable };

const halves = (side: RelaySide): [Readable, Writable] =>
  "source" in side ? [side.source, side.sink] : [side, side];

/** Resolves once both directions are done. */
export async function relay(a: RelaySide, b: RelaySide): Promise<void> {
  const [aIn, aOut] = halves(a);
  const [bIn, bOut] = halves(b);
  await Promise.all([oneWay(aIn, bOut), oneWay(bIn, aOut)]);
}

/** One direction: `from` into `to` until `from` ends (then `to` is ended: a half-close) or
 * `to` refuses more (then the rest of `from` is dropped). */
export function oneWay(from: Readable, to: Writable): Promise<void> {
  return new Promise((resolve) => {
    let finished = false;
    const finish = () => {
      finished = true;
      resolve();
    };
    // The source ended (or broke): pass the end on, as a half-close.
    const ended = () => {
      if (finished) return;
      from.unpipe(to);
      if (!to.destroyed && !to.writableEnded) to.end();
      finish();
    };
    // The destination cannot take more: drop the rest of this direction only.
    const refused = () => {
      if (finished) return;
      from.unpipe(to);
      from.resume();
      finish();
    };
    from.pipe(to, { end: false });
    from.once("end", ended);
    from.once("close", ended);
    from.on("error", ended);
    to.on("error", refused);
    to.once("close", () => {
      if (!finished && !to.writableFinished) refused();
    });
  });
}
