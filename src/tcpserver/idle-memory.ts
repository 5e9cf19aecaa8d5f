// Memory back after a burst, once the server is idle. V8 runs no full garbage collection while
// nothing allocates, so the garbage of the last burst of in-process sessions stays in the old
// generation; and glibc keeps the C heap that OpenSSL's sessions freed. A server that has gone
// quiet collects once and trims (`malloc_trim`), so its idle footprint is its base again.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

import { native } from "../ucspi/native.ts";

/** How long the server must have had no connection before it releases. */
export const IDLE_RELEASE_MS = 5000;

export class IdleMemory {
  readonly #release: () => void;
  readonly #afterMs: number;
  #timer: NodeJS.Timeout | undefined;
  #served = false;

  constructor(release: () => void = releaseMemory, afterMs = IDLE_RELEASE_MS) {
    this.#release = release;
    this.#afterMs = afterMs;
  }

  /** A connection began: a release waits for the next quiet moment. */
  busy(): void {
    this.#served = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** No connection is open: release once it has stayed so, if any was served since the last. */
  quiet(): void {
    if (!this.#served || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#served = false;
      this.#release();
    }, this.#afterMs);
    this.#timer.unref();
  }
}

type Collect = (options: { type: "major"; execution: "sync"; flavor: "last-resort" }) => void;
let collect: Collect | undefined;

/** V8's most thorough collection, then the C heap's free pages back to the kernel. */
export function releaseMemory(): void {
  if (!collect) {
    // Node has no other way to ask V8 for a full collection.
    setFlagsFromString("--expose-gc");
    collect = runInNewContext("gc") as Collect;
  }
  // "last-resort" (what V8 does under memory pressure) also gives the old generation's emptied
  // pages back; a regular full collection frees the objects but keeps the pages committed.
  collect({ type: "major", execution: "sync", flavor: "last-resort" });
  native().trimMemory();
}
