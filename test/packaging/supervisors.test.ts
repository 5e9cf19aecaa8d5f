// The example service definitions of packaging/ (issue 14) under the real supervisors: the
// service directories under runit's runsv, daemontools' svscan and s6-svscan, and the systemd
// units checked by systemd-analyze verify and run as systemd would run them (ExecStart= with
// the unit's Environment=, LoadCredential=, StateDirectory=, user, NoNewPrivileges= and
// capabilities, the socket unit's ListenStream= bound by systemd-socket-activate, a timer's
// instance as %f). What the test changes in the shipped files: /usr/lib/ucspi-tls/bin becomes this checkout's bin/, the
// certificate paths a test certificate's, the port a free one, the log directory a scratch one;
// every change is checked to hit, so a shipped file that moves away from it fails here.
// Needs root (tcpserver drops to nobody as shipped) and the Debian packages runit, daemontools,
// s6, systemd, openssl, procps and util-linux (setpriv).
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  realpathSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { basename, join } from "node:path";
import { connect } from "node:tls";
import { before, test } from "node:test";
import { native } from "../../src/ucspi/native.ts";
import { makePki } from "../helpers/certs.ts";
import type { Pair, TestPki } from "../helpers/certs.ts";
import { descendantsOf, freePort, isListening, spawnersOf } from "../helpers/interop.ts";
import type { ProcInfo } from "../helpers/interop.ts";
import { BIN, ROOT, ours, run } from "../helpers/programs.ts";
import { acmeSite } from "../helpers/acme-tlsd.ts";
import { sClientVerified } from "../helpers/tls-client.ts";
import { waitFor } from "../helpers/server.ts";
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
import type { ServiceRun } from "../helpers/supervise.ts";
import { parseUnit } from "../helpers/units.ts";
import { scratchDir } from "../helpers/scratch.ts";
import { leafChain, ocspResponder } from "../helpers/ocsp.ts";

const PACKAGING = join(ROOT, "packaging");

let pki: TestPki;
let site: Pair;
/** A second certificate, for the name other.example only: a CERTFILE:name pair in env/. */
let other: Pair;

before(() => {
  assert.equal(process.getuid?.(), 0, "these tests need root (tcpserver -U drops to nobody)");
  pki = makePki();
  site = pki.server("site", ["localhost", "127.0.0.1", "::1"]);
  other = pki.server("other", ["other.example"]);
});

/** A scratch directory that the user nobody can enter (the services run programs from it). */
function scratch(name: string): string {
  const dir = scratchDir(name);
  chmodSync(dir, 0o755);
  return dir;
}

/** The pids of live processes whose command line matches `pattern`, by pgrep -f. */
async function pgrep(pattern: string): Promise<number[]> {
  const r = await run("pgrep", ["-f", pattern]);
  assert.ok(r.code === 0 || r.code === 1, `pgrep: ${r.stderr}`);
  return r.stdout
    .split("\n")
    .filter(Boolean)
    .map(Number)
    .filter((pid) => alive(pid));
}

/** Waits (bounded) until a process's output has a line matching `pattern`. */
async function outputLine(output: () => string, pattern: RegExp): Promise<void> {
  await waitFor(
    () => (pattern.test(output()) ? true : undefined),
    15_000,
    () => `no line ${pattern} in:\n${output()}`,
  );
}

/** A free port below 1024 (where CAP_NET_BIND_SERVICE matters), free on IPv6 and IPv4. */
const freeLowPort = () => freePort("::", 600, 1000);

/** A TLS client verifying the server against the test CA as `servername`: sends `send` once
 * the handshake is done, and reads to the end. */
function tlsTalk(
  port: number,
  send: string,
  host = "127.0.0.1",
  servername = "localhost",
): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect({ port, host, servername, ca: [readFileSync(pki.ca.cert)] });
    let got = "";
    c.setEncoding("latin1");
    c.on("data", (d: string) => (got += d));
    c.once("secureConnect", () => {
      if (c.authorized) c.write(send);
      else c.destroy(new Error(`certificate not verified for ${servername}`));
    });
    c.once("close", () => resolve(got));
    c.once("error", reject);
  });
}

/** ucspi-demo's answer to "ping", then quit, over TLS 1.3, from `ip`. */
function assertDemoAnswer(answer: string, ip: string): void {
  assert.match(
    answer,
    new RegExp(
      `^hello ${ip.replace(/\./g, "\\.")} port \\d+ over TLSv1\\.3 \\S+; this is ucspi-tls\\.`,
    ),
  );
  assert.match(answer, /^echo: ping\r?$/m);
}

// ---- daemontools, runit, s6: packaging/service/SUITE/ucspi-tls-example ----------------------

interface ServiceCopy {
  /** The scratch directory: scan/ (the scan directory), log/, answer (a program). */
  top: string;
  scan: string;
  /** The service directory, scan/ucspi-tls-example. */
  dir: string;
  logDir: string;
  port: number;
}

/**
 * Copies a shipped service directory into a scan directory and points it at this checkout, the
 * test certificate, a free port on 127.0.0.1 and a scratch log directory, and adds a
 * CERTFILE:other.example and KEYFILE:other.example pair to env/ (names no shell would pass).
 * `program`: instead of the shipped ucspi-demo (which runs in tcpserver's process), a shell
 * script that tcpserver spawns, written to TOP/answer.
 */
async function serviceCopy(suite: string, program?: string): Promise<ServiceCopy> {
  const shipped = join(PACKAGING, "service", suite, "ucspi-tls-example");
  for (const script of ["run", "log/run"]) {
    assert.ok(statSync(join(shipped, script)).mode & 0o100, `${suite}/${script} is executable`);
  }
  const top = scratch(`sv-${suite}`);
  const scan = join(top, "scan");
  const dir = join(scan, "ucspi-tls-example");
  const logDir = join(top, "log");
  const port = await freePort();
  mkdirSync(scan);
  cpSync(shipped, dir, { recursive: true });
  const answer = join(top, "answer");
  if (program) {
    writeFileSync(answer, `#!/bin/sh\n${program}`);
    chmodSync(answer, 0o755);
  }
  rewrite(join(dir, "run"), (text) => {
    let t = replace(text, SHIPPED_BIN, BIN);
    t = replace(t, /^ip=0$/m, "ip=127.0.0.1");
    t = replace(t, /^port=443$/m, `port=${port}`);
    if (program) t = replace(t, /^program=ucspi-demo$/m, `program=${answer}`);
    return t;
  });
  writeFileSync(join(dir, "env", "CERTFILE"), `${site.cert}\n`);
  writeFileSync(join(dir, "env", "KEYFILE"), `${site.key}\n`);
  writeFileSync(join(dir, "env", "CERTFILE:other.example"), `${other.cert}\n`);
  writeFileSync(join(dir, "env", "KEYFILE:other.example"), `${other.key}\n`);
  rewrite(join(dir, "log", "run"), (text) => replace(text, SHIPPED_LOG, logDir));
  return { top, scan, dir, logDir, port };
}

test("the shipped env/ files name the certificate and key paths, nothing else", () => {
  for (const suite of ["daemontools", "runit", "s6"]) {
    const env = join(PACKAGING, "service", suite, "ucspi-tls-example", "env");
    assert.deepEqual(readdirSync(env).sort(), ["CERTFILE", "KEYFILE"]);
    assert.equal(readFileSync(join(env, "CERTFILE"), "utf8"), `${SHIPPED_CERT}\n`);
    assert.equal(readFileSync(join(env, "KEYFILE"), "utf8"), `${SHIPPED_KEY}\n`);
  }
});

/** The tcpserver among a supervisor's descendants (the process running dist/tcpserver.cjs). */
function tcpserverIn(procs: readonly ProcInfo[]): number {
  const found = procs.filter((p) => cmdline(p.pid).includes("dist/tcpserver.cjs"));
  assert.equal(found.length, 1, procs.map((p) => `${p.pid} ${cmdline(p.pid)}`).join("\n"));
  return (found[0] as ProcInfo).pid;
}

/** What every service must show once stopped: no process of it, the port free, its log. */
async function assertStopped(svc: ServiceCopy, procs: readonly ProcInfo[]): Promise<string> {
  await allGone(procs, "after the stop");
  assert.deepEqual(await pgrep(svc.top), [], `nothing mentions ${svc.top}`);
  assert.deepEqual(
    await pgrep(`127\\.0\\.0\\.1 ${svc.port} tlsd `),
    [],
    "no tcpserver on the port",
  );
  assert.equal(isListening(svc.port), false, "the port is free");
  const log = readFileSync(join(svc.logDir, "current"), "latin1");
  assert.match(log, /tcpserver: status: 0\/100$/m);
  assert.match(log, /tcpserver: ok \d+ 0:127\.0\.0\.1:\d+ :127\.0\.0\.1::\d+$/m);
  assert.match(log, /tcpserver: end \d+ status 0$/m);
  return log;
}

test("runit: runsv runs the service directory; TLS answered; sv down and exit leave nothing", async () => {
  requireTools("runit", ["runsv", "sv", "svlogd", "chpst"]);
  requireTools("procps", ["pgrep"]);
  // A program tcpserver spawns (through ucspi-spawner), so that the stop is seen to take the
  // spawner too; it answers with what it got, the TLS version and the user it runs as.
  const svc = await serviceCopy(
    "runit",
    'IFS= read -r line\necho "answer to $line: $SSL_PROTOCOL as $(id -un) for $TCPREMOTEIP"\n',
  );
  const runsv = start("runsv", [svc.dir]);
  let procs: ProcInfo[] = [];
  try {
    await Promise.race([listening(svc.port, runsv.output), runsv.failed]);
    const got = await tlsTalk(svc.port, "ping\n");
    assert.equal(got, "answer to ping: TLSv1.3 as nobody for 127.0.0.1\n");
    const named = await tlsTalk(svc.port, "ping\n", "127.0.0.1", "other.example");
    assert.equal(named, "answer to ping: TLSv1.3 as nobody for 127.0.0.1\n");
    procs = descendantsOf(runsv.child.pid as number);
    const server = tcpserverIn(procs);
    assert.equal(uidOf(server), NOBODY, "tcpserver runs as the run script's user");
    assert.ok(spawnersOf(server).length > 0, "tcpserver started ucspi-spawner");
    assert.ok(
      procs.some((p) => p.comm === "svlogd"),
      "svlogd runs the log",
    );

    const down = await run("sv", ["-w", "15", "down", svc.dir]);
    assert.equal(down.code, 0, down.stdout + down.stderr);
    assert.match(down.stdout, /^ok: down: /);
    await allGone(
      procs.filter((p) => p.comm !== "svlogd"),
      "sv down",
    );
    const exit = await run("sv", ["-w", "15", "exit", svc.dir]);
    assert.equal(exit.code, 0, exit.stdout + exit.stderr);
    assert.deepEqual(await exited(runsv.child), { code: 0, signal: null });
    const log = await assertStopped(svc, procs);
    // svlogd -tt: a UTC time stamp on every line.
    for (const line of log.trimEnd().split("\n"))
      assert.match(line, /^\d{4}-\d\d-\d\d_\d\d:\d\d:\d\d\.\d+ /);
  } finally {
    killTree(runsv.child, procs);
  }
});

test("daemontools: svscan runs the service and its log; svc -dx leaves nothing", async () => {
  requireTools("daemontools", ["svscan", "supervise", "svc", "multilog", "envdir", "envuidgid"]);
  requireTools("procps", ["pgrep"]);
  const svc = await serviceCopy("daemontools");
  const svscan = start("svscan", [svc.scan]);
  let procs: ProcInfo[] = [];
  try {
    await Promise.race([listening(svc.port, svscan.output), svscan.failed]);
    assertDemoAnswer(await tlsTalk(svc.port, "ping\r\nquit\r\n"), "127.0.0.1");
    const named = await tlsTalk(svc.port, "ping\r\nquit\r\n", "127.0.0.1", "other.example");
    assertDemoAnswer(named, "127.0.0.1");
    procs = descendantsOf(svscan.child.pid as number);
    assert.equal(uidOf(tcpserverIn(procs)), NOBODY, "tcpserver runs as the run script's user");
    assert.ok(
      procs.some((p) => p.comm === "multilog"),
      "multilog runs the log",
    );

    // svscan would start supervise again; without it, the service and then its log go.
    svscan.child.kill("SIGTERM");
    await exited(svscan.child);
    for (const dir of [svc.dir, join(svc.dir, "log")]) {
      const r = await run("svc", ["-dx", dir]);
      assert.equal(r.code, 0, r.stderr);
      await waitFor(
        () =>
          procs.some((p) => alive(p.pid) && cmdline(p.pid) === `supervise ${basename(dir)}`)
            ? undefined
            : true,
        20_000,
        () => `supervise ${dir} did not exit`,
      );
    }
    const log = await assertStopped(svc, procs);
    // multilog t: a TAI64N label on every line.
    for (const line of log.trimEnd().split("\n")) assert.match(line, /^@[0-9a-f]{24} /);
  } finally {
    killTree(svscan.child, procs);
  }
});

test("s6: s6-svscan runs the service and its log; s6-svc -d and s6-svscanctl -t leave nothing", async () => {
  requireTools("s6", [
    "s6-svscan",
    "s6-supervise",
    "s6-svc",
    "s6-svscanctl",
    "s6-log",
    "s6-envdir",
    "s6-envuidgid",
  ]);
  requireTools("procps", ["pgrep"]);
  const svc = await serviceCopy("s6");
  const svscan = start("s6-svscan", [svc.scan]);
  let procs: ProcInfo[] = [];
  try {
    await Promise.race([listening(svc.port, svscan.output), svscan.failed]);
    assertDemoAnswer(await tlsTalk(svc.port, "ping\r\nquit\r\n"), "127.0.0.1");
    const named = await tlsTalk(svc.port, "ping\r\nquit\r\n", "127.0.0.1", "other.example");
    assertDemoAnswer(named, "127.0.0.1");
    procs = descendantsOf(svscan.child.pid as number);
    const server = tcpserverIn(procs);
    assert.equal(uidOf(server), NOBODY, "tcpserver runs as the run script's user");
    assert.ok(
      procs.some((p) => p.comm === "s6-log"),
      "s6-log runs the log",
    );

    const down = await run("s6-svc", ["-d", "-wD", "-T", "15000", svc.dir]);
    assert.equal(down.code, 0, down.stderr);
    assert.equal(alive(server), false, "tcpserver is gone once s6-svc -wD returns");
    const quit = await run("s6-svscanctl", ["-t", svc.scan]);
    assert.equal(quit.code, 0, quit.stderr);
    assert.deepEqual(await exited(svscan.child), { code: 0, signal: null });
    const log = await assertStopped(svc, procs);
    for (const line of log.trimEnd().split("\n")) assert.match(line, /^@[0-9a-f]{24} /);
  } finally {
    killTree(svscan.child, procs);
  }
});

// ---- systemd: packaging/systemd/*.service, *.socket -------------------------------------------

const UNITS = join(PACKAGING, "systemd");

/** What systemd would run for `unit` of packaging/systemd, with this checkout's bin/ (and a
 * template's instance). */
function checkoutRun(unit: string, instance?: string): ServiceRun {
  const sources = { [SHIPPED_CERT]: site.cert, [SHIPPED_KEY]: site.key };
  return serviceRun(join(UNITS, unit), BIN, scratch("systemd"), sources, instance);
}

/** A timer of packaging/systemd for a file, as an admin enables it (the instance is the file's
 * path, escaped by systemd-escape): its calendar is one systemd reads and it is wanted by
 * timers.target; what its service runs for that file, run as systemd would. */
async function timerRun(template: string, file: string) {
  const timer = parseUnit(join(UNITS, `${template}.timer`));
  const calendar = timer.get("Timer")?.get("OnCalendar") ?? [];
  assert.equal(calendar.length, 1, `${template}.timer: one OnCalendar=`);
  const read = await run("systemd-analyze", ["calendar", ...calendar]);
  assert.equal(read.code, 0, read.stderr);
  assert.deepEqual(timer.get("Install")?.get("WantedBy"), ["timers.target"]);
  const escaped = await run("systemd-escape", ["--path", file]);
  assert.equal(escaped.code, 0, escaped.stderr);
  const unit = checkoutRun(`${template}.service`, escaped.stdout.trim());
  assert.equal(unit.argv.at(-1), file, "%f is the file's path");
  return run(unit.argv[0] as string, unit.argv.slice(1), { env: unit.env });
}

test("systemd: ucspi-tls-ocsp@.timer for a chain file: its service, run as systemd would, fetches the response from the responder the certificate names and writes it beside the chain", async () => {
  requireTools("systemd", ["systemd-analyze", "systemd-escape"]);
  requireTools("util-linux", ["setpriv"]);
  const port = await freePort();
  // A path with a dash in it: escaped as \x2d in the instance.
  const leaf = leafChain(pki, "timer-site", `http://127.0.0.1:${port}/`);
  assert.match(leaf.chain, /-/);
  const responder = await ocspResponder(pki, port, leaf.serial, "V");
  try {
    const r = await timerRun("ucspi-tls-ocsp@", leaf.chain);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^tls-keygen: info: wrote .*timer-site\.chain\.pem\.ocsp: good until /);
    const response = readFileSync(`${leaf.chain}.ocsp`);
    assert.equal(native().ocspCheck(response, readFileSync(leaf.chain)).status, "good");
  } finally {
    responder.stop();
  }
});

test("systemd: ucspi-tls-ticket@.timer for a ticket file: its service, run as systemd would, makes the file and then rotates it, mode 0600, its owner kept", async () => {
  requireTools("systemd", ["systemd-analyze", "systemd-escape"]);
  requireTools("util-linux", ["setpriv"]);
  const file = join(scratch("ticket-timer"), "ticket-keys");
  const first = await timerRun("ucspi-tls-ticket@", file);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(readFileSync(file, "latin1").trim().split("\n").length, 2);
  // The user tlsd runs as owns it; the service, root with CAP_CHOWN, keeps that.
  chownSync(file, NOBODY, NOBODY);
  const second = await timerRun("ucspi-tls-ticket@", file);
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stderr, /^tls-keygen: info: wrote 3 ticket keys to /);
  const stat = statSync(file);
  assert.deepEqual([stat.mode & 0o777, stat.uid, stat.gid], [0o600, NOBODY, NOBODY]);
  assert.equal(readFileSync(file, "latin1").trim().split("\n").length, 3);
});

test("systemd: ucspi-tls-renew.service, run as systemd would (the example service's user and state directory, /etc/default/ucspi-tls-acme), renews the due certificate that service's tlsd ordered, while that tlsd answers the CA", async () => {
  requireTools("systemd", ["systemd-analyze"]);
  requireTools("util-linux", ["setpriv"]);
  const timer = parseUnit(join(UNITS, "ucspi-tls-renew.timer"));
  const read = await run("systemd-analyze", [
    "calendar",
    ...(timer.get("Timer")?.get("OnCalendar") ?? []),
  ]);
  assert.equal(read.code, 0, read.stderr);
  assert.deepEqual(timer.get("Install")?.get("WantedBy"), ["timers.target"]);
  const top = scratch("renew");
  // The example service's CERTDIR: %S/ucspi-tls.
  const certDir = join(top, "state", "ucspi-tls");
  mkdirSync(certDir, { recursive: true });
  // Certificates live 60 s; renewal is due 60 s before the end, so at once.
  const s = await acmeSite(
    ours("tcpserver"),
    { ACME_NAMES: "a.test", ACME_RENEW_BEFORE: "60" },
    {
      fallback: site,
      validitySeconds: 60,
      cache: certDir,
    },
  );
  try {
    const first = await sClientVerified(s.port, "a.test", s.rootFile);
    assert.equal(first.code, 0, first.stderr + s.server.log());
    const serialOf = () =>
      new X509Certificate(readFileSync(join(certDir, "a.test", "fullchain.pem"))).serialNumber;
    const before = serialOf();
    // The CA's own HTTPS anchor, where the service's user can read it.
    const caFile = join(top, "acme-ca.pem");
    copyFileSync(s.pebble.listenerCa, caFile);
    chmodSync(caFile, 0o644);
    const settings = join(top, "ucspi-tls-acme");
    writeFileSync(
      settings,
      `# tlsd's, and the timer's\nACME_DIRECTORY=${s.pebble.directory}\nACME_CAFILE=${caFile}\nACME_NAMES=a.test\nACME_RENEW_BEFORE=60\n`,
    );
    const unit = serviceRun(join(UNITS, "ucspi-tls-renew.service"), BIN, top, {
      "/etc/default/ucspi-tls-acme": settings,
    });
    const r = await run(unit.argv[0] as string, unit.argv.slice(1), {
      env: unit.env,
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^tls-keygen: info: acme: a\.test: issued in \d+ ms$/m);
    assert.notEqual(serialOf(), before);
    // Written as the service's user: the service reads it after a restart as that user too.
    const key = realpathSync(join(certDir, "a.test", "privkey.pem"));
    const stat = statSync(key);
    assert.deepEqual([stat.uid, stat.mode & 0o777], [NOBODY, 0o600]);
  } finally {
    await s.stop();
  }
});

test("systemd-analyze verify: the units as shipped, and with this checkout's bin/", async () => {
  requireTools("systemd", ["systemd-analyze"]);
  const units = readdirSync(UNITS).sort();
  assert.deepEqual(units, [
    "tls-everywhere.service",
    "ucspi-tls-example-activated.service",
    "ucspi-tls-example-activated.socket",
    "ucspi-tls-example.service",
    "ucspi-tls-ocsp@.service",
    "ucspi-tls-ocsp@.timer",
    "ucspi-tls-renew.service",
    "ucspi-tls-renew.timer",
    "ucspi-tls-ticket@.service",
    "ucspi-tls-ticket@.timer",
  ]);
  // Documentation=man:...: the man pages the build made, where man looks for them.
  const top = scratch("verify");
  mkdirSync(join(top, "man"));
  symlinkSync(join(ROOT, "build", "man"), join(top, "man", "man1"));
  const env = { ...process.env, MANPATH: join(top, "man") };
  const shipped = await run("systemd-analyze", ["verify", ...units.map((u) => join(UNITS, u))], {
    env,
  });
  const lines = (shipped.stdout + shipped.stderr).split("\n").filter(Boolean);
  if (existsSync(`${SHIPPED_BIN}/tcpserver`)) {
    assert.deepEqual([shipped.code, lines], [0, []]);
  } else {
    // The one complaint allowed where the package is not installed: the program a command
    // of a service runs is missing (exit 1), once for each command; a template is verified
    // as its instance "i".
    const missing = (u: string) => {
      const service = parseUnit(join(UNITS, u)).get("Service");
      return ["ExecStart", "ExecStopPost"].flatMap((key) =>
        (service?.get(key) ?? []).map(
          (exec) =>
            `${u.replace("@.", "@i.")}: Command ${exec.split(" ")[0]} is not executable: No such file or directory`,
        ),
      );
    };
    assert.deepEqual(
      [shipped.code, lines],
      [1, units.filter((u) => u.endsWith(".service")).flatMap(missing)],
    );
  }
  // A copy pointing at this checkout: nothing at all to say (verify exits 0 even on unknown
  // keys or settings, so its output is what counts).
  mkdirSync(join(top, "units"));
  for (const unit of units) {
    writeFileSync(
      join(top, "units", unit),
      readFileSync(join(UNITS, unit), "utf8").replaceAll(SHIPPED_BIN, BIN),
    );
  }
  const copy = await run(
    "systemd-analyze",
    ["verify", ...units.map((u) => join(top, "units", u))],
    { env },
  );
  assert.equal(copy.code, 0, copy.stdout + copy.stderr);
  assert.equal(copy.stdout + copy.stderr, "");
});

test("systemd: the socket-activated service under systemd-socket-activate, IPv4 and IPv6; SIGTERM leaves nothing", async () => {
  requireTools("systemd", ["systemd-socket-activate"]);
  requireTools("util-linux", ["setpriv"]);
  const socket = parseUnit(join(UNITS, "ucspi-tls-example-activated.socket")).get("Socket");
  assert.deepEqual(
    socket?.get("ListenStream"),
    ["443"],
    "one stream socket, IPv6 and IPv4, port 443",
  );
  assert.deepEqual(socket?.get("Accept"), ["no"], "one service for every connection");
  const unit = checkoutRun("ucspi-tls-example-activated.service");
  // Below 1024, bound by "systemd": the service itself has no capability at all.
  const port = await freeLowPort();
  const activate = start("systemd-socket-activate", [
    "-l",
    String(port),
    ...Object.entries(unit.env).map(([k, v]) => `--setenv=${k}=${v}`),
    ...unit.argv,
  ]);
  let procs: ProcInfo[] = [];
  try {
    await Promise.race([listening(port, activate.output), activate.failed]);
    assertDemoAnswer(await tlsTalk(port, "ping\r\nquit\r\n"), "127.0.0.1");
    assertDemoAnswer(await tlsTalk(port, "ping\r\nquit\r\n", "::1"), "::1");
    const server = activate.child.pid as number;
    assert.match(
      cmdline(server),
      /dist\/tcpserver\.cjs /,
      "tcpserver took over the activator's pid",
    );
    assert.equal(uidOf(server), NOBODY);
    assert.match(readFileSync(`/proc/${server}/status`, "latin1"), /^CapEff:\t0+$/m);
    // The dual-stack socket: the IPv4 client in the mapped form in the log, as on `::`.
    await outputLine(activate.output, /^tcpserver: ok \d+ 0:::ffff:127\.0\.0\.1:\d+ /m);
    procs = [{ pid: server, state: "S", comm: "tcpserver" }, ...descendantsOf(server)];

    await stopsCleanly(activate.child, procs, unit.top, port);
  } finally {
    killTree(activate.child, procs);
  }
});

test("systemd: the service that binds its own port (capability CAP_NET_BIND_SERVICE only); SIGTERM leaves nothing", async () => {
  requireTools("util-linux", ["setpriv"]);
  const unit = checkoutRun("ucspi-tls-example.service");
  const port = await freeLowPort();
  const argv = [...unit.argv];
  const at = argv.findIndex((w, i) => w === "0" && argv[i + 1] === "443" && argv[i + 2] === "tlsd");
  assert.ok(at > 0, `host 0, port 443 in ${argv.join(" ")}`);
  argv.splice(at, 2, "127.0.0.1", String(port));
  const service = start(argv[0] as string, argv.slice(1), unit.env);
  let procs: ProcInfo[] = [];
  try {
    await Promise.race([listening(port, service.output), service.failed]);
    assertDemoAnswer(await tlsTalk(port, "ping\r\nquit\r\n"), "127.0.0.1");
    const server = service.child.pid as number;
    assert.equal(uidOf(server), NOBODY);
    assert.match(readFileSync(`/proc/${server}/status`, "latin1"), /^CapBnd:\t0+400$/m);
    await outputLine(service.output, /^tcpserver: end \d+ status 0$/m);
    procs = [{ pid: server, state: "S", comm: "tcpserver" }, ...descendantsOf(server)];

    await stopsCleanly(service.child, procs, unit.top, port);
  } finally {
    killTree(service.child, procs);
  }
});
