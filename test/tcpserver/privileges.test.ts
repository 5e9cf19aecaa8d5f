// -u, -g and -U beside djb's tcpserver (we run as root): the child's uid, gid and supplementary
// groups, and the UID/GID variables, must be the same.
import assert from "node:assert/strict";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, test } from "node:test";
import { djb, ours } from "../helpers/programs.ts";
import { hidePortVars } from "../helpers/normalize.ts";
import { logShape, session } from "../helpers/session.ts";
import { scratchDir } from "../helpers/scratch.ts";

const ID_SCRIPT = [
  "/bin/sh",
  "-c",
  'id -u; id -g; id -G; echo "UID=${UID-unset} GID=${GID-unset}"; ' +
    "grep -E '^(Uid|Gid|Groups):' /proc/$$/status",
];

let dir = "";
const wrapped = { djb: "", ours: "" };

before(() => {
  dir = scratchDir("tcpserver-privileges");
  // Each tcpserver started with supplementary groups 4 and 27 besides root's 0, so that the
  // tests see which groups it keeps or drops.
  for (const who of ["djb", "ours"] as const) {
    const server = who === "djb" ? djb("tcpserver") : ours("tcpserver");
    wrapped[who] = join(dir, `tcpserver-${who}`);
    writeFileSync(wrapped[who], `#!/bin/sh\nexec setpriv --groups 4,27 -- ${server} "$@"\n`);
    chmodSync(wrapped[who], 0o755);
  }
});

async function sideBySide(args: readonly string[], env: NodeJS.ProcessEnv) {
  const a = await session(wrapped.djb, args, "127.0.0.1", ID_SCRIPT, [{}], { env });
  const b = await session(wrapped.ours, args, "127.0.0.1", ID_SCRIPT, [{}], { env });
  assert.deepEqual(b.outputs.map(hidePortVars), a.outputs.map(hidePortVars));
  assert.deepEqual(logShape(b.log), logShape(a.log), `ours:\n${b.log}\ndjb:\n${a.log}`);
  return { djb: a, ours: b };
}

test("we run as root; the servers start with supplementary groups 4 and 27", async () => {
  assert.equal(process.getuid?.(), 0, "these tests need root");
  const { ours: b } = await sideBySide(["-RHl0"], { PATH: "/usr/bin:/bin" });
  assert.match(b.outputs[0] ?? "", /^0\n0\n0 4 27\n/);
});

test("-u 65534 -g 65534: the child runs as nobody:nogroup, no other group", async () => {
  const { ours: b } = await sideBySide(["-RHl0", "-u", "65534", "-g", "65534"], {
    PATH: "/usr/bin:/bin",
  });
  assert.match(b.outputs[0] ?? "", /^65534\n65534\n65534\nUID=unset GID=unset\n/);
  assert.match(b.outputs[0] ?? "", /^Uid:\t65534\t65534\t65534\t65534$/m);
  assert.match(b.outputs[0] ?? "", /^Gid:\t65534\t65534\t65534\t65534$/m);
});

test("-u and -g apart: only the one given changes", async () => {
  const env = { PATH: "/usr/bin:/bin" };
  const u = await sideBySide(["-RHl0", "-u", "65534"], env);
  assert.match(u.ours.outputs[0] ?? "", /^65534\n0\n0 4 27\n/);
  const g = await sideBySide(["-RHl0", "-g", "65534"], env);
  assert.match(g.ours.outputs[0] ?? "", /^0\n65534\n65534\n/);
});

test("-U takes UID and GID from the environment, and leaves them there", async () => {
  const { ours: b } = await sideBySide(["-RHl0", "-U"], {
    PATH: "/usr/bin:/bin",
    UID: "65534",
    GID: "100",
  });
  assert.match(b.outputs[0] ?? "", /^65534\n100\n100\nUID=65534 GID=100\n/);
});

test("-U with only GID set changes only the group", async () => {
  const { ours: b } = await sideBySide(["-RHl0", "-U"], { PATH: "/usr/bin:/bin", GID: "65534" });
  assert.match(b.outputs[0] ?? "", /^0\n65534\n65534\nUID=unset GID=65534\n/);
});

test("-U after -u: the environment's values win, as the later option", async () => {
  const { ours: b } = await sideBySide(["-RHl0", "-u", "1", "-g", "1", "-U"], {
    PATH: "/usr/bin:/bin",
    UID: "65534",
    GID: "65534",
  });
  assert.match(b.outputs[0] ?? "", /^65534\n65534\n65534\n/);
});

test("-U after -u with UID and GID unset keeps -u and -g, as djb's (ours ran the program as root)", async () => {
  const { ours: b } = await sideBySide(["-RHl0", "-u", "65534", "-g", "65534", "-U"], {
    PATH: "/usr/bin:/bin",
  });
  assert.match(b.outputs[0] ?? "", /^65534\n65534\n65534\nUID=unset GID=unset\n/);
});

test("-U after -u -g with only GID set: the group from GID, the user from -u, as djb's", async () => {
  const { ours: b } = await sideBySide(["-RHl0", "-u", "65534", "-g", "1", "-U"], {
    PATH: "/usr/bin:/bin",
    GID: "65534",
  });
  assert.match(b.outputs[0] ?? "", /^65534\n65534\n65534\nUID=unset GID=65534\n/);
});

test("-u 0 and -g 0 change nothing, as djb's (it only acts on non-zero ids)", async () => {
  const { ours: b } = await sideBySide(["-RHl0", "-u", "0", "-g", "0"], { PATH: "/usr/bin:/bin" });
  assert.match(b.outputs[0] ?? "", /^0\n0\n0 4 27\n/);
});

test("-U with GID=0 and UID=0 changes nothing, as djb's", async () => {
  const { ours: b } = await sideBySide(["-RHl0", "-U"], {
    PATH: "/usr/bin:/bin",
    UID: "0",
    GID: "0",
  });
  assert.match(b.outputs[0] ?? "", /^0\n0\n0 4 27\n/);
});

test("-u after -U: the later option wins, as djb reads UID/GID when it meets -U", async () => {
  const { ours: b } = await sideBySide(["-RHl0", "-U", "-u", "1", "-g", "1"], {
    PATH: "/usr/bin:/bin",
    UID: "65534",
    GID: "65534",
  });
  assert.match(b.outputs[0] ?? "", /^1\n1\n1\n/);
});
