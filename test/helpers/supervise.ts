// Running the example services of packaging/ as their supervisors would, for the tests of the
// checkout's copy (test/packaging/supervisors.test.ts) and of the Debian package's
// (test/packaging/deb.test.ts): starting and stopping supervisors, looking at what they left
// running, and the command and environment systemd would give a service unit.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import {
  accessSync,
  chmodSync,
  chownSync,
  constants,
  copyFileSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  writeFileSync,
} from "node:fs";
import { basename, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { isListening } from "./interop.ts";
import { alive, cmdline } from "./procs.ts";
import type { ProcInfo } from "./procs.ts";
import { escapeRegExp } from "./normalize.ts";
import { unglued, waitFor } from "./server.ts";
import { parseUnit, specifiers, splitWords } from "./units.ts";

export { alive, cmdline, killTree } from "./procs.ts";

/** Where the package puts our programs, as the shipped run scripts and units name it. */
export const SHIPPED_BIN = "/usr/lib/ucspi-tls/bin";
export const SHIPPED_CERT = "/etc/ucspi-tls/example/cert.pem";
export const SHIPPED_KEY = "/etc/ucspi-tls/example/key.pem";
export const SHIPPED_LOG = "/var/log/ucspi-tls-example";
/** nobody: the shipped run scripts' user, and the stand-in for systemd's dynamic user. */
export const NOBODY = 65534;

/** Fails, naming the Debian package, unless every tool is on PATH. A missing tool fails. */
export function requireTools(pkg: string, tools: readonly string[]): void {
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
export function replace(text: string, from: string | RegExp, to: string): string {
  const source = typeof from === "string" ? escapeRegExp(from) : from.source;
  const pattern = new RegExp(source, typeof from === "string" ? "g" : `${from.flags}g`);
  assert.equal(text.match(pattern)?.length ?? 0, 1, `once ${String(from)} in:\n${text}`);
  return text.replace(pattern, () => to);
}

export function rewrite(file: string, edit: (text: string) => string): void {
  writeFileSync(file, edit(readFileSync(file, "utf8")));
}

/** The real uid of a process, from /proc/N/status. */
export function uidOf(pid: number): number {
  const m = /^Uid:\t(\d+)\t/m.exec(readFileSync(`/proc/${pid}/status`, "latin1"));
  return Number(m?.[1]);
}

/** The live processes whose environment holds `text` (systemd services: no path in argv). */
export function withEnvironment(text: string): number[] {
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
export async function allGone(procs: readonly ProcInfo[], what: string): Promise<void> {
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
export function exited(
  child: ChildProcess,
): Promise<{ code: number | null; signal: string | null }> {
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

/** Starts a long-running command, its stderr and stdout collected. */
export function start(file: string, args: readonly string[], env?: NodeJS.ProcessEnv) {
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
  // A supervisor's output mixes the service's programs with tcpserver: its lines, each whole.
  return { child, output: () => unglued(output), failed };
}

/** Waits until something listens on `port`, or the supervisor's output says why not. */
export async function listening(port: number, why: () => string): Promise<void> {
  await waitFor(
    () => (isListening(port) ? true : undefined),
    20_000,
    () => `port ${port} never listened:\n${why()}`,
  );
}

/** SIGTERM to a unit's main process: it exits 0, and nothing of it is left: no process of
 * `procs`, none with the unit's directory `top` in its environment, nothing on `port`. */
export async function stopsCleanly(
  child: ChildProcess,
  procs: ProcInfo[],
  top: string,
  port: number,
) {
  child.kill("SIGTERM");
  assert.deepEqual(await exited(child), { code: 0, signal: null });
  await allGone(procs, "after SIGTERM");
  assert.deepEqual(withEnvironment(top), [], `no process has ${top} in its environment`);
  assert.equal(isListening(port), false);
}

export interface ServiceRun {
  /** The command: setpriv with the unit's user, no-new-privs and capabilities, then ExecStart. */
  argv: string[];
  env: Record<string, string>;
  /** The scratch directory that holds the credentials and the state directory. */
  top: string;
}

/**
 * What systemd would run for a service unit, as far as it can be done without systemd: the
 * ExecStart= command (`bin` for /usr/lib/ucspi-tls/bin), the environment of its
 * Environment= lines, LoadCredential= files copied (mode 0400, owned by the service's user) to a
 * credentials directory (%d, $CREDENTIALS_DIRECTORY), StateDirectory= made (%S,
 * $STATE_DIRECTORY), both in `top` (a directory nobody can enter), and under setpriv: DynamicUser= as nobody, NoNewPrivileges=,
 * CapabilityBoundingSet= and AmbientCapabilities=. The namespaces and filters (ProtectSystem=,
 * PrivateTmp=, RestrictAddressFamilies=, ...) need systemd itself and are not applied.
 * `sources`: the file to load for each LoadCredential= path of the unit; `instance`: a
 * template's instance (%i, and %f the path it stands for).
 */
export function serviceRun(
  unitFile: string,
  bin: string,
  top: string,
  sources: Record<string, string>,
  instance?: string,
): ServiceRun {
  const unit = basename(unitFile);
  const service = parseUnit(unitFile).get("Service");
  assert.ok(service, `${unit} has a [Service] section`);
  const one = (key: string): string | undefined => {
    const values = service.get(key);
    assert.ok(!values || values.length === 1, `${unit}: one ${key}=`);
    return values?.[0];
  };
  const creds = join(top, "credentials");
  const stateRoot = join(top, "state");
  mkdirSync(creds, { mode: 0o500 });
  mkdirSync(stateRoot, { recursive: true });
  const user = one("DynamicUser") === "yes" ? NOBODY : 0;
  const map = { d: creds, S: stateRoot, i: instance };
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
    // systemd gives a dynamic user what is in it already, too.
    execFileSync("chown", ["-R", `${user}:${user}`, join(stateRoot, name)]);
    env["STATE_DIRECTORY"] = join(stateRoot, name);
  }
  for (const value of service.get("Environment") ?? []) {
    for (const word of splitWords(value)) {
      const eq = word.indexOf("=");
      assert.ok(eq > 0, `${unit}: Environment=${value}`);
      env[word.slice(0, eq)] = specifiers(word.slice(eq + 1), map);
    }
  }
  // EnvironmentFile= (after Environment=, whose values it overrides): the test's file for the
  // path, or nothing for an optional one ("-") the test gives none for.
  for (const value of service.get("EnvironmentFile") ?? []) {
    const path = value.replace(/^-/, "");
    const source = sources[path];
    assert.ok(
      source || value.startsWith("-"),
      `${unit}: EnvironmentFile=${value}: a path this test knows`,
    );
    if (!source) continue;
    for (const line of readFileSync(source, "utf8").split("\n")) {
      const eq = line.indexOf("=");
      if (line.startsWith("#") || eq <= 0) continue;
      env[line.slice(0, eq)] = line.slice(eq + 1);
    }
  }
  const exec = one("ExecStart");
  assert.ok(exec, `${unit}: ExecStart=`);
  assert.ok(!/[$]/.test(exec), `${unit}: no variables in ExecStart= (not emulated)`);
  const words = splitWords(exec).map((w) => specifiers(w, map));
  const program = words[0] ?? "";
  assert.equal(program, join(SHIPPED_BIN, basename(program)), `${unit}: ours, by its full path`);
  words[0] = join(bin, basename(program));
  // tcpserver finds the programs it runs in its own process by name, on PATH.
  const path = env["PATH"] ?? "";
  if (path !== "" || basename(program) === "tcpserver") {
    assert.ok(path.startsWith(`${SHIPPED_BIN}:`), `${unit}: PATH starts with ${SHIPPED_BIN}`);
    env["PATH"] = replace(path, SHIPPED_BIN, bin);
  }
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
