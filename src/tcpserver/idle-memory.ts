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
  readonly #isIdle: () => boolean;
  readonly #release: () => void;
  readonly #afterMs: number;
  #timer: NodeJS.Timeout | undefined;
  // Connections since the last release, and when the server last went quiet: a counter and a
  // time stamp, so that a connection does not set and clear a timer (at c=1 the server goes
  // quiet after every connection); one timer runs at a time and looks again if it fired early.
  #served = 0;
  #quietSince = 0;

  constructor(
    isIdle: () => boolean,
    release: () => void = releaseMemory,
    afterMs = IDLE_RELEASE_MS,
  ) {
    this.#isIdle = isIdle;
    this.#release = release;
    this.#afterMs = afterMs;
  }

  /** A connection began. */
  busy(): void {
    this.#served++;
  }

  /** No connection is open: release once it has stayed so, if any was served since the last. */
  quiet(): void {
    if (this.#served === 0) return;
    this.#quietSince = performance.now();
    if (!this.#timer) this.#wait(this.#afterMs);
  }

  #wait(ms: number): void {
    this.#timer = setTimeout(() => this.#check(), ms);
    this.#timer.unref();
  }

  #check(): void {
    this.#timer = undefined;
    if (!this.#isIdle()) return; // the next quiet() sets it again
    const quietFor = performance.now() - this.#quietSince;
    if (quietFor < this.#afterMs) return this.#wait(this.#afterMs - quietFor);
    this.#served = 0;
    this.#release();
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
