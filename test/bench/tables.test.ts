// The README's performance tables are generated (bench/tables.mjs) from the raw results kept in
// bench/published/: a figure edited by hand, or a result replaced without regenerating, fails.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { scratchDir } from "../helpers/scratch.ts";

const root = join(import.meta.dirname, "..", "..");
const tables = (...args: string[]) =>
  spawnSync(process.execPath, [join(root, "bench", "tables.mjs"), "--check", ...args], {
    encoding: "utf8",
  });

test("the README's performance tables are exactly what bench/published gives", () => {
  const r = tables();
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, "");
});

test("a figure edited by hand in a generated table is caught and the table named", () => {
  const dir = scratchDir("tables");
  const text = readFileSync(join(root, "README.md"), "utf8");
  // The first rate figure of the handshake table, one digit changed.
  const block = /<!-- bench:tls -->[\s\S]*?\n\| ts-tcpserver\+tlsd \| (\d+)/.exec(text);
  assert.ok(block, "the README has a generated TLS table with our row");
  const at = block.index + block[0].length - 1;
  const digit = text[at] === "9" ? "8" : String(Number(text[at]) + 1);
  writeFileSync(join(dir, "README.md"), text.slice(0, at) + digit + text.slice(at + 1));
  const r = tables("--readme", join(dir, "README.md"));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^bench tables: README\.md differs from bench\/published in tls\n$/);
});

test("a harness run stopped part way is left out, named on stderr, and the newest whole one stands", () => {
  const dir = scratchDir("tables");
  const published = join(root, "bench", "published");
  cpSync(published, dir, { recursive: true });
  // A newer handshake run that stopped in its second round: every line of the published
  // run's first round and the first of its second, with a later stamp.
  const whole = readdirSync(published)
    .filter((f) => f.endsWith("-tls-tls.jsonl"))
    .at(-1);
  assert.ok(whole, "a published handshake run");
  const lines = readFileSync(join(published, whole), "utf8").split("\n").filter(Boolean);
  const firstRound = lines.filter((l) => (JSON.parse(l) as { round: number }).round === 0);
  const second = lines.find((l) => (JSON.parse(l) as { round: number }).round === 1);
  assert.ok(second, "the published run has a second round");
  const partial = "29991231-235959-tls-tls.jsonl";
  writeFileSync(join(dir, partial), `${[...firstRound, second].join("\n")}\n`);
  const r = tables("--results", dir);
  assert.equal(r.status, 0, r.stderr);
  assert.match(
    r.stderr,
    /^bench tables: 29991231-235959-tls-tls\.jsonl left out, a run stopped part way: \S+ has no row for \{.*\} in round 2\n$/,
  );
});
