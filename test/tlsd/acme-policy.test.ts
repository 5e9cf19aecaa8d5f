// Which names tlsd may order certificates for, and the ledger of orders shared by every tlsd
// of a CERTDIR (one order per name at a time, at most N an hour).
import assert from "node:assert/strict";
import { test } from "node:test";
import { spawn } from "node:child_process";
import { once } from "node:events";
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { Ledger, STALE_MS } from "../../src/acme/ledger.ts";
import { nameAllowed } from "../../src/acme/name-policy.ts";
import { pidScope, processId } from "../../src/proc/process-id.ts";
import { scratchDir } from "../helpers/scratch.ts";

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

test("ledger: one order per name at a time, at most N an hour, across processes' files", () => {
  const dir = scratchDir("ledger");
  let now = 1_000_000;
  const clock = () => now;
  // Two ledgers on one directory: two tlsd processes.
  const a = new Ledger(dir, 2, clock);
  const b = new Ledger(dir, 2, clock);
  assert.equal(a.claim("x.test"), "claimed");
  assert.equal(b.claim("x.test"), "busy");
  assert.equal(b.ordering("x.test"), true);
  a.release("x.test");
  assert.equal(b.ordering("x.test"), false);
  assert.equal(b.claim("y.test"), "claimed");
  b.release("y.test");
  // Two orders in this hour: a third is refused, and leaves no claim behind.
  assert.equal(a.claim("z.test"), "limited");
  assert.equal(a.ordering("z.test"), false);
  now += 3_600_000 + 1;
  assert.equal(a.claim("z.test"), "claimed");
  assert.equal(statSync(join(dir, "orders.log")).mode & 0o777, 0o600);
  assert.equal(readFileSync(join(dir, "orders.log"), "latin1").trim().split("\n").length, 3);
});

test("ledger: a claim left by a crashed process is taken over once stale", () => {
  const dir = scratchDir("ledger");
  const real = new Ledger(dir, 10);
  assert.equal(real.claim("x.test"), "claimed");
  // Seen from a clock past the stale limit, the claim (its file's mtime) is left over.
  const later = new Ledger(dir, 10, () => Date.now() + STALE_MS + 1000);
  assert.equal(later.ordering("x.test"), false);
  assert.equal(later.claim("x.test"), "claimed");
});

/** Two tlsd processes' ledgers on one CERTDIR, a's claim of x.test made and aged past
 * STALE_MS (its order hangs, or its process died). */
function agedClaim(run: (a: Ledger, b: Ledger, lock: string, dir: string) => void): void {
  const dir = scratchDir("ledger");
  const lock = join(dir, "orders", "x.test");
  const a = new Ledger(dir, 10);
  const b = new Ledger(dir, 10);
  assert.equal(a.claim("x.test"), "claimed");
  const old = new Date(Date.now() - STALE_MS - 60_000);
  utimesSync(lock, old, old);
  run(a, b, lock, dir);
}

test("ledger: only the owner releases a claim; one taken over as stale stays the new owner's", () => {
  agedClaim((a, b, lock, dir) => {
    assert.equal(b.claim("x.test"), "claimed");
    const bToken = readFileSync(lock, "latin1");
    // a finally ends: b's claim is not a's to remove.
    a.release("x.test");
    assert.equal(readFileSync(lock, "latin1"), bToken);
    assert.equal(a.claim("x.test"), "busy");
    b.release("x.test");
    assert.equal(existsSync(lock), false);
    assert.deepEqual(readdirSync(join(dir, "orders")), []);
  });
});

test("ledger: a claim its owner refreshes is never taken over, however long the order takes", () => {
  agedClaim((a, b, lock) => {
    a.refresh("x.test"); // what on-demand.ts does every REFRESH_MS
    assert.equal(b.claim("x.test"), "busy");
    assert.equal(b.ordering("x.test"), true);
    b.refresh("x.test"); // not b's: nothing happens
    a.release("x.test");
    assert.equal(existsSync(lock), false);
  });
});

test("ledger: a claim names its owner's process, and one whose owner is gone (killed outright, crashed) is taken over at once; a live owner's, another boot's or pid namespace's, or one that names no process, only once stale", async () => {
  const dir = scratchDir("ledger");
  const a = new Ledger(dir, 10);
  assert.equal(a.claim("own.test"), "claimed");
  const [, pid, since, scope] = readFileSync(join(dir, "orders", "own.test"), "latin1")
    .trim()
    .split(" ");
  assert.deepEqual(
    { pid: Number(pid), since, scope },
    {
      ...processId(process.pid),
      scope: pidScope(),
    },
  );
  assert.equal(a.ownerGone("own.test"), false);

  const owner = spawn("sleep", ["30"]);
  const id = processId(owner.pid ?? 0);
  assert.ok(id);
  const claim = (name: string, text: string) => {
    mkdirSync(join(dir, "orders"), { recursive: true });
    writeFileSync(join(dir, "orders", name), text);
  };
  claim("gone.test", `token ${id.pid} ${id.since} ${pidScope() ?? ""}\n`);
  claim("elsewhere.test", `token ${id.pid} ${id.since} 0-other-boot/4026531836\n`);
  claim("unnamed.test", "token\n");
  const b = new Ledger(dir, 10);
  assert.equal(b.ownerGone("gone.test"), false);
  assert.equal(b.ordering("gone.test"), true);
  assert.equal(b.orderState("gone.test"), "ordering");
  assert.equal(b.claim("gone.test"), "busy");
  owner.kill("SIGKILL");
  await once(owner, "exit");
  assert.equal(b.ownerGone("gone.test"), true);
  assert.equal(b.ordering("gone.test"), false);
  // One look says which: a waiter takes the order over, never taking it for a release.
  assert.equal(b.orderState("gone.test"), "gone");
  assert.equal(b.orderState("never.test"), "none");
  assert.equal(b.claim("gone.test"), "claimed");
  for (const name of ["elsewhere.test", "unnamed.test"]) {
    assert.equal(b.ownerGone(name), false, name);
    assert.equal(b.claim(name), "busy", name);
  }
});
