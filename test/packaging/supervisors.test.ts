// The example service definitions of packaging/ (issue 14) under the real supervisors: the
// service directories under runit's runsv, daemontools' svscan and s6-svscan, and the systemd
// units checked by systemd-analyze verify and run as systemd would run them (ExecStart= with
// the unit's Environment=, LoadCredential=, StateDirectory=, user, NoNewPrivileges= and
// capabilities, the socket unit's ListenStream= bound by systemd-socket-activate). What the
// test changes in the shipped files: /usr/lib/ucspi-tls/bin becomes this checkout's bin/, the
// certificate paths a test certificate's, the port a free one, the log directory a scratch one;
// every change is checked to hit, so a shipped file that moves away from it fails here.
// Needs root (tcpserver drops to nobody as shipped) and the Debian packages runit, daemontools,
// s6, systemd, openssl, procps and util-linux (setpriv).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import {
  accessSync,
  chmodSync,
  chownSync,
  constants,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { connect } from "node:tls";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { makePki } from "../helpers/certs.ts";
import type { Pair, TestPki } from "../helpers/certs.ts";
import { descendantsOf, freePort, isListening, spawnersOf } from "../helpers/interop.ts";
import { escapeRegExp } from "../helpers/normalize.ts";
import type { ProcInfo } from "../helpers/interop.ts";
import { BIN, ROOT, run } from "../helpers/programs.ts";
import { parseUnit, specifiers, splitWords } from "../helpers/units.ts";
import { waitFor } from "../helpers/server.ts";

const PACKAGING = join(ROOT, "packaging");
const SHIPPED_BIN = "/usr/lib/ucspi-tls/bin";
const SHIPPED_CERT = "/etc/ucspi-tls/example/cert.pem";
const SHIPPED_KEY = "/etc/ucspi-tls/example/key.pem";
const SHIPPED_LOG = "/var/log/ucspi-tls-example";
/** nobody: the shipped run scripts' user, and the stand-in for systemd's dynamic user. */
const NOBODY = 65534;

let pki: TestPki;
let site: Pair;
/** A second certificate, for the name other.example only: a CERTFILE:name pair in env/. */
let other: Pair;
const scratchDirs: string[] = [];

before(() => {
  assert.equal(process.getuid?.(), 0, "these tests need root (tcpserver -U drops to nobody)");
  pki = makePki();
  site = pki.server("site", ["localhost", "127.0.0.1", "::1"]);
  other = pki.server("other", ["other.example"]);
});
after(() => {
  for (const dir of [...scratchDirs, pki.dir]) rmSync(dir, { recursive: true, force: true });
});

/** A scratch directory that the user nobody can enter (the services run programs from it). */
function scratch(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  scratchDirs.push(dir);
  return dir;
}

/** Fails, naming the Debian package, unless every tool is on PATH. A missing tool fails. */
function requireTools(pkg: string, tools: readonly string[]): void {
  const path = `${process.env["PATH"] ?? ""}:/usr/sbin:/usr/bin:/sbin:/bin`.split(":");
  for (const tool of tools) {
    const found = path.some((dir) => {
      try {
        accessSync(join(dir || ".", tool), constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
    assert.ok(found, `${tool} is not installed: apt-get install ${pkg}`);
  }
}

/** `text` with `from` replaced by `to`; `from` must be there exactly once. */
function replace(text: string, from: string | RegExp, to: string): string {
  const source = typeof from === "string" ? escapeRegExp(from) : from.source;
  const pattern = new RegExp(source, typeof from === "string" ? "g" : `${from.flags}g`);
  assert.equal(text.match(pattern)?.length ?? 0, 1, `once ${String(from)} in:\n${text}`);
  return text.replace(pattern, () => to);
}

function rewrite(file: string, edit: (text: string) => string): void {
  writeFileSync(file, edit(readFileSync(file, "utf8")));
}

/** The command line of a process ("" once it is gone). */
function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "latin1").replace(/\0/g, " ").trim();
  } catch {
    return "";
  }
}

/** Whether a process is there and not a zombie. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** The real uid of a process, from /proc/N/status. */
function uidOf(pid: number): number {
  const m = /^Uid:\t(\d+)\t/m.exec(readFileSync(`/proc/${pid}/status`, "latin1"));
  return Number(m?.[1]);
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

/** The live processes whose environment holds `text` (systemd services: no path in argv). */
function withEnvironment(text: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/environ`, "latin1").includes(text)) found.push(+entry);
    } catch {
      // gone meanwhile
    }
  }
  return found.filter((pid) => alive(pid));
}

/** Waits (bounded) until none of `procs` is alive, then asserts it. */
async function allGone(procs: readonly ProcInfo[], what: string): Promise<void> {
  const left = () => procs.filter((p) => alive(p.pid));
  for (const deadline = Date.now() + 20_000; left().length > 0 && Date.now() < deadline;) {
    await sleep(50);
  }
  assert.deepEqual(
    left().map((p) => `${p.pid} ${p.comm}: ${cmdline(p.pid)}`),
    [],
    `${what}: processes left running`,
  );
}

/** Waits (bounded) for a child to exit; its exit code and signal. */
function exited(child: ChildProcess): Promise<{ code: number | null; signal: string | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${child.spawnfile} did not exit`));
    }, 30_000);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

/** After a failed test: SIGKILL for a child that is still there, everything below it, and the
 * processes seen below it before (`known`) that are still there. */
function killTree(child: ChildProcess, known: readonly ProcInfo[] = []): void {
  const running = child.exitCode === null && child.signalCode === null && child.pid !== undefined;
  const below = running ? descendantsOf(child.pid as number) : [];
  for (const p of [...below, ...known]) {
    if (!alive(p.pid)) continue;
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
  if (running) child.kill("SIGKILL");
}

/** Starts a long-running command, its stderr and stdout collected. */
function start(file: string, args: readonly string[], env?: NodeJS.ProcessEnv) {
  const child = spawn(file, args, { stdio: ["ignore", "pipe", "pipe"], env: env ?? process.env });
  let output = "";
  child.stdout.setEncoding("latin1");
  child.stderr.setEncoding("latin1");
  child.stdout.on("data", (s: string) => (output += s));
  child.stderr.on("data", (s: string) => (output += s));
  // For the start: rejects if the command cannot be run or ends (its output says why).
  const failed = new Promise<never>((_, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) =>
      reject(new Error(`${file} ended (${code ?? signal}):\n${output}`)),
    );
  });
  failed.catch(() => {});
  return { child, output: () => output, failed };
}

/** Waits until something listens on `port`, or the supervisor's output says why not. */
async function listening(port: number, why: () => string): Promise<void> {
  await waitFor(
    () => (isListening(port) ? true : undefined),
    20_000,
    () => `port ${port} never listened:\n${why()}`,
  );
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
  const top = scratch(`ucspi-sv-${suite}-`);
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

interface ServiceRun {
  /** The command: setpriv with the unit's user, no-new-privs and capabilities, then ExecStart. */
  argv: string[];
  env: Record<string, string>;
  /** The scratch directory that holds the credentials and the state directory. */
  top: string;
}

/**
 * What systemd would run for a service unit, as far as it can be done without systemd: the
 * ExecStart= command (this checkout's bin/ for /usr/lib/ucspi-tls/bin), the environment of its
 * Environment= lines, LoadCredential= files copied (mode 0400, owned by the service's user) to a
 * credentials directory (%d, $CREDENTIALS_DIRECTORY), StateDirectory= made (%S,
 * $STATE_DIRECTORY), and under setpriv: DynamicUser= as nobody, NoNewPrivileges=,
 * CapabilityBoundingSet= and AmbientCapabilities=. The namespaces and filters (ProtectSystem=,
 * PrivateTmp=, RestrictAddressFamilies=, ...) need systemd itself and are not applied.
 */
function serviceRun(unit: string): ServiceRun {
  const service = parseUnit(join(UNITS, unit)).get("Service");
  assert.ok(service, `${unit} has a [Service] section`);
  const one = (key: string): string | undefined => {
    const values = service.get(key);
    assert.ok(!values || values.length === 1, `${unit}: one ${key}=`);
    return values?.[0];
  };
  const top = scratch("ucspi-systemd-");
  const creds = join(top, "credentials");
  const stateRoot = join(top, "state");
  mkdirSync(creds, { mode: 0o500 });
  mkdirSync(stateRoot);
  const user = one("DynamicUser") === "yes" ? NOBODY : 0;
  const map = { d: creds, S: stateRoot };
  const sources: Record<string, string> = { [SHIPPED_CERT]: site.cert, [SHIPPED_KEY]: site.key };
  for (const value of service.get("LoadCredential") ?? []) {
    const [id = "", path = ""] = value.split(":");
    assert.ok(sources[path], `${unit}: LoadCredential=${value}: a path this test knows`);
    copyFileSync(sources[path] as string, join(creds, id));
    chmodSync(join(creds, id), 0o400);
    chownSync(join(creds, id), user, user);
  }
  chownSync(creds, user, user);
  const env: Record<string, string> = { CREDENTIALS_DIRECTORY: creds };
  for (const name of one("StateDirectory")?.split(/\s+/) ?? []) {
    mkdirSync(join(stateRoot, name), { recursive: true });
    chownSync(join(stateRoot, name), user, user);
    env["STATE_DIRECTORY"] = join(stateRoot, name);
  }
  for (const value of service.get("Environment") ?? []) {
    for (const word of splitWords(value)) {
      const eq = word.indexOf("=");
      assert.ok(eq > 0, `${unit}: Environment=${value}`);
      env[word.slice(0, eq)] = specifiers(word.slice(eq + 1), map);
    }
  }
  const path = env["PATH"] ?? "";
  assert.ok(path.startsWith(`${SHIPPED_BIN}:`), `${unit}: PATH starts with ${SHIPPED_BIN}`);
  env["PATH"] = replace(path, SHIPPED_BIN, BIN);
  const exec = one("ExecStart");
  assert.ok(exec, `${unit}: ExecStart=`);
  assert.ok(!/[$]/.test(exec), `${unit}: no variables in ExecStart= (not emulated)`);
  const words = splitWords(exec).map((w) => specifiers(w, map));
  assert.equal(words[0], `${SHIPPED_BIN}/tcpserver`, `${unit}: our tcpserver, by its full path`);
  words[0] = join(BIN, "tcpserver");
  const priv = ["setpriv"];
  if (user !== 0) priv.push(`--reuid=${user}`, `--regid=${user}`, "--clear-groups");
  if (one("NoNewPrivileges") === "yes") priv.push("--no-new-privs");
  const caps = (key: string) =>
    (one(key) ?? "")
      .split(/\s+/)
      .filter(Boolean)
      .map((c) => `+${c.replace(/^CAP_/, "").toLowerCase()}`);
  const bounding = one("CapabilityBoundingSet");
  if (bounding !== undefined)
    priv.push(`--bounding-set=${["-all", ...caps("CapabilityBoundingSet")].join(",")}`);
  const ambient = caps("AmbientCapabilities");
  if (ambient.length > 0) {
    priv.push(
      `--inh-caps=${["-all", ...ambient].join(",")}`,
      `--ambient-caps=${["-all", ...ambient].join(",")}`,
    );
  } else {
    priv.push("--inh-caps=-all");
  }
  return { argv: [...priv, "--", ...words], env, top };
}

test("systemd-analyze verify: the units as shipped, and with this checkout's bin/", async () => {
  requireTools("systemd", ["systemd-analyze"]);
  const units = readdirSync(UNITS).sort();
  assert.deepEqual(units, [
    "tls-everywhere.service",
    "ucspi-tls-example-activated.service",
    "ucspi-tls-example-activated.socket",
    "ucspi-tls-example.service",
  ]);
  // Documentation=man:...: the man pages the build made, where man looks for them.
  const top = scratch("ucspi-verify-");
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
    // of a service runs is missing (exit 1), once for each command.
    const missing = (u: string) => {
      const service = parseUnit(join(UNITS, u)).get("Service");
      return ["ExecStart", "ExecStopPost"].flatMap((key) =>
        (service?.get(key) ?? []).map(
          (exec) =>
            `${u}: Command ${exec.split(" ")[0]} is not executable: No such file or directory`,
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

/** SIGTERM to a unit's main process: it exits 0, and nothing of it is left: no process of
 * `procs`, none with the unit's directory `top` in its environment, nothing on `port`. */
async function stopsCleanly(child: ChildProcess, procs: ProcInfo[], top: string, port: number) {
  child.kill("SIGTERM");
  assert.deepEqual(await exited(child), { code: 0, signal: null });
  await allGone(procs, "after SIGTERM");
  assert.deepEqual(withEnvironment(top), [], `no process has ${top} in its environment`);
  assert.equal(isListening(port), false);
}

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
  const unit = serviceRun("ucspi-tls-example-activated.service");
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
  const unit = serviceRun("ucspi-tls-example.service");
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
