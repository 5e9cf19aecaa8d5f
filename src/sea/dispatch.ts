// The entry of the single executable (scripts/build-sea.mjs): one binary, the private Node
// with every program in it, run by the launcher as `execv(build/ucspi-tls, {NAME, args...})`.
// Which program runs is the name it was started by (process.argv0), or, busybox style, the
// first argument: `ucspi-tls NAME args...` (how tcpserver's --workers start again, from
// process.execPath and process.argv[1]).
//
// Each program is its own bundle in the binary (build/sea/programs/NAME.cjs, as dist/NAME.cjs)
// with V8's code cache of it: the program runs compiled from that cache, as node runs
// dist/NAME.cjs compiled from source, and no other program's code is read. (One bundle of all
// the programs as the binary's main script, with Node's code cache of it, starts 8-10 ms
// slower: V8 sets up the whole of it at every start, 1.5 MB against tlsd's 0.3.)
//
// The program sees what it sees under node: `require` (for files too: acme-client from
// node_modules, the addon), `__filename` build/NAME.cjs beside the binary (for import.meta.url,
// which finds build/ from it; no such file is there), and its name in process.argv[1].
/* eslint-disable no-restricted-properties -- this is a cli, as the programs' cli.ts are */
import { writeSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { getAsset, getRawAsset } from "node:sea";
import { Script } from "node:vm";

/** A program's bundle as V8 compiles it, here and for its code cache at build time: the same
 * text both times, or V8 refuses the cache. */
export function wrap(source: string): string {
  return `(function (exports, require, module, __filename, __dirname) {${source}\n})`;
}

export function dispatch(programs: readonly string[], version: string): void {
  const known = (name: string | undefined): name is string =>
    name !== undefined && programs.includes(name);
  const argv0 = process.argv0;
  let name = argv0.slice(argv0.lastIndexOf("/") + 1);
  if (!known(name)) {
    const first = process.argv[2];
    if (known(first)) {
      name = first;
      process.argv.splice(2, 1);
    } else if (first === "--version") {
      writeSync(1, `ucspi-tls ${version} (Node.js ${process.version})\n`);
      process.exit(0);
    } else if (first === "--check") {
      process.exit(check(programs));
    } else {
      writeSync(
        2,
        `ucspi-tls: usage: ucspi-tls program [args...], program one of: ${[...programs].sort().join(" ")}\n`,
      );
      process.exit(100);
    }
  }
  // Where node puts the bundle's path (a program uses it only as its name, and tcpserver to
  // start its --workers again: process.execPath with this first).
  process.argv[1] = name;
  const filename = join(dirname(process.execPath), `${name}.cjs`);
  const run = compile(name, filename).script.runInThisContext() as (
    this: unknown,
    ...args: unknown[]
  ) => void;
  const module = { exports: {} };
  run.call(
    module.exports,
    module.exports,
    createRequire(filename),
    module,
    filename,
    dirname(filename),
  );
}

function compile(name: string, filename: string): { script: Script; rejected: boolean } {
  const script = new Script(wrap(getAsset(`${name}.cjs`, "utf8")), {
    filename,
    cachedData: Buffer.from(getRawAsset(`${name}.cache`)),
  });
  return { script, rejected: script.cachedDataRejected === true };
}

/** `ucspi-tls --check`: whether V8 takes every program's code cache (build-sea.mjs asks). */
function check(programs: readonly string[]): number {
  const refused = programs.filter((name) => compile(name, `${name}.cjs`).rejected);
  for (const name of refused) writeSync(2, `ucspi-tls: code cache of ${name} refused by V8\n`);
  if (refused.length === 0) writeSync(1, `ucspi-tls: ${programs.length} code caches taken\n`);
  return refused.length === 0 ? 0 : 1;
}
