// Which names tlsd may order certificates for, and how many orders an hour.
import assert from "node:assert/strict";
import { test } from "node:test";
import { RateLimit, nameAllowed } from "../../src/acme/policy.ts";

test("names: exact, or one label below a *.parent entry", () => {
  const list = ["example.org", "*.w.example.org"];
  assert.equal(nameAllowed(list, "example.org"), true);
  assert.equal(nameAllowed(list, "a.w.example.org"), true);
  assert.equal(nameAllowed(list, "w.example.org"), false);
  assert.equal(nameAllowed(list, "a.b.w.example.org"), false);
  assert.equal(nameAllowed(list, "www.example.org"), false);
  assert.equal(nameAllowed(list, "example.org.evil.test"), false);
  assert.equal(nameAllowed([], "example.org"), false);
});

test("rate limit: at most N in any window, room again as old ones leave it", () => {
  let now = 0;
  const limit = new RateLimit(2, 1000, () => now);
  assert.equal(limit.take(), true);
  now = 400;
  assert.equal(limit.take(), true);
  assert.equal(limit.take(), false);
  now = 999;
  assert.equal(limit.take(), false);
  now = 1000; // the first left the window
  assert.equal(limit.take(), true);
  assert.equal(limit.take(), false);
  now = 1400;
  assert.equal(limit.take(), true);
});
