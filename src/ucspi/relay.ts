// Relays bytes both ways between two duplex streams, with backpressure, and passes a
// half-close on: when one side ends its writing, the other side's writing is ended too,
// while the opposite direction goes on until it ends as well.
import type { Duplex } from "node:stream";

/** Resolves once both directions are done, or either side failed (then both are destroyed). */
export function relay(a: Duplex, b: Duplex): Promise<void> {
  return new Promise((resolve) => {
    let open = 2;
    let settled = false;
    const done = () => {
      if (!settled) {
        settled = true;
        resolve();
      }
    };
    const fail = () => {
      a.destroy();
      b.destroy();
      done();
    };
    const oneWay = (from: Duplex, to: Duplex) => {
      from.pipe(to, { end: true });
      from.once("end", () => {
        if (--open === 0) done();
      });
    };
    a.once("error", fail);
    b.once("error", fail);
    a.once("close", () => {
      if (open > 0) fail();
    });
    b.once("close", () => {
      if (open > 0) fail();
    });
    oneWay(a, b);
    oneWay(b, a);
  });
}
