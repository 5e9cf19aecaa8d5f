// The stop that tcpserver gives a connection's chain and a stage gives the program it ran
// (src/ucspi/stop-signal.ts): each listener hears it once, a listener taken back hears nothing,
// one added after it hears nothing (its caller asks `stopped`), and a stop of either of two
// stops the one made of both.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Stopper, eitherStop } from "../../src/ucspi/stop-signal.ts";

test("a stop: each listener once, in order; one taken back, or added after it, hears nothing", () => {
  const stop = new Stopper();
  const heard: string[] = [];
  stop.onStop(() => heard.push("a"));
  const unhear = stop.onStop(() => heard.push("b"));
  stop.onStop(() => heard.push("c"));
  unhear();
  unhear(); // twice: still nothing else taken back
  assert.equal(stop.stopped, false);
  stop.stop();
  stop.stop();
  assert.equal(stop.stopped, true);
  assert.deepEqual(heard, ["a", "c"]);
  stop.onStop(() => heard.push("late"))();
  stop.stop();
  assert.deepEqual(heard, ["a", "c"]);
});

test("either of two: none made for one; made of two, it stops with the first of them, once", () => {
  const a = new Stopper();
  const b = new Stopper();
  assert.equal(eitherStop(a, undefined), a);
  assert.equal(eitherStop(undefined, b), b);
  assert.equal(eitherStop(undefined, undefined), undefined);
  const either = eitherStop(a, b);
  assert.ok(either);
  let heard = 0;
  either.onStop(() => heard++);
  b.stop();
  assert.equal(either.stopped, true);
  a.stop();
  assert.equal(heard, 1);
  // Made of one already stopped: stopped from the start.
  assert.equal(eitherStop(new Stopper(), a)?.stopped, true);
});
