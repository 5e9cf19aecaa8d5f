// The environment map: unset variables, names from outside, the shape kept for connections.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import fc from "fast-check";
import { connectionEnv, connectionVarNames } from "../../src/ucspi/address.ts";
import {
  applyEnv,
  copyEnv,
  envList,
  setVar,
  startEnv,
  unsetVar,
  withNames,
} from "../../src/ucspi/env.ts";
import type { Env } from "../../src/ucspi/env.ts";

/** What a spawned program would get: name → value. */
function asExported(env: Env): Map<string, string> {
  return new Map(
    envList(env).map((entry) => {
      const eq = entry.indexOf("=");
      return [entry.slice(0, eq), entry.slice(eq + 1)];
    }),
  );
}

test("an unset variable is not exported, and setting it again exports it", () => {
  const env = copyEnv({ A: "1", B: "2" });
  unsetVar(env, "A");
  unsetVar(env, "NOT_THERE");
  assert.equal(env["A"], undefined);
  assert.deepEqual([...asExported(env)], [["B", "2"]]);
  assert.equal(Object.hasOwn(env, "NOT_THERE"), false, "unsetting an absent name adds nothing");
  env["A"] = "3";
  assert.deepEqual(
    asExported(env),
    new Map([
      ["B", "2"],
      ["A", "3"],
    ]),
  );
});

test("names that are Object.prototype's members are variables like any other", () => {
  const env: Env = {};
  setVar(env, "__proto__", "x");
  setVar(env, "constructor", "y");
  setVar(env, "toString", "z");
  const copy = copyEnv(env);
  assert.equal(Object.getPrototypeOf(copy), Object.prototype, "the prototype was not replaced");
  assert.deepEqual(
    asExported(copy),
    new Map([
      ["__proto__", "x"],
      ["constructor", "y"],
      ["toString", "z"],
    ]),
  );
  applyEnv(copy, { set: [["__proto__", "w"]], unset: ["toString"] });
  assert.deepEqual(
    asExported(copy),
    new Map([
      ["__proto__", "w"],
      ["constructor", "y"],
    ]),
  );
});

test("startEnv keeps names such as __proto__ and constructor (a real process)", () => {
  const env = Object.create(null) as Record<string, string>;
  Object.assign(env, { PATH: process.env["PATH"] ?? "/usr/bin:/bin", constructor: "c" });
  Object.defineProperty(env, "__proto__", { value: "p", enumerable: true });
  const script = `
    import { startEnv, envList } from ${JSON.stringify(new URL("../../src/ucspi/env.ts", import.meta.url).href)};
    process.stdout.write(JSON.stringify(envList(startEnv(process.env)).filter((e) => /^(__proto__|constructor)=/.test(e))));
  `;
  const run = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    env,
    encoding: "utf8",
  });
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), ["constructor=c", "__proto__=p"]);
  assert.equal(startEnv({}).constructor, Object, "the result is an ordinary object");
});

test("withNames: every connection variable is a property, unset until set", () => {
  const names = connectionVarNames();
  for (const listenerIsV6 of [false, true]) {
    const change = connectionEnv({
      listenerIsV6,
      localIp: "fe80::1%eth0",
      localPort: 25,
      remoteIp: "fe80::2%eth0",
      remotePort: 4000,
      localHost: "l",
      remoteHost: "r",
      remoteInfo: "i",
    });
    for (const [name] of change.set) assert.ok(names.includes(name), name);
    for (const name of change.unset) assert.ok(names.includes(name), name);
  }
  const base = withNames({ PATH: "/bin", TCPREMOTEHOST: "inherited" }, names);
  for (const name of names) assert.ok(Object.hasOwn(base, name), name);
  assert.deepEqual(
    asExported(base),
    new Map([
      ["PATH", "/bin"],
      ["TCPREMOTEHOST", "inherited"],
    ]),
  );
});

test("any sequence of sets and unsets on a shaped copy exports what a plain map would hold", () => {
  const name = fc.constantFrom("A", "B", "TCPREMOTEIP", "PROTO", "__proto__", "constructor");
  const op = fc.oneof(
    fc.tuple(fc.constant("set" as const), name, fc.string()),
    fc.tuple(fc.constant("unset" as const), name, fc.constant("")),
  );
  fc.assert(
    fc.property(fc.dictionary(name, fc.string()), fc.array(op), (start, ops) => {
      const model = new Map<string, string>();
      const first: Env = {};
      for (const [k, v] of Object.entries(start)) {
        setVar(first, k, v);
        model.set(k, v);
      }
      const env = copyEnv(withNames(first, ["TCPREMOTEIP", "PROTO", "C"]));
      for (const [kind, k, v] of ops) {
        if (kind === "set") {
          applyEnv(env, { set: [[k, v]], unset: [] });
          model.set(k, v);
        } else {
          applyEnv(env, { set: [], unset: [k] });
          model.delete(k);
        }
      }
      assert.deepEqual(asExported(env), model);
    }),
  );
});
