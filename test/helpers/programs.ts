// Paths and runners for the real programs under test: ours (bin/) and djb's (ucspi-tcp).
import { spawn } from "node:child_process";
import type { SpawnOptions } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { killTree } from "./procs.ts";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const BIN = join(ROOT, "bin");
/** The test runner's PATH with our bin/ first: our programs found by name (the in-process
 * chain), everything else as usual. */
export const PATH_WITH_BIN = `${BIN}:${process.env["PATH"] ?? "/usr/bin:/bin"}`;

/** Our program, by name: bin/NAME. */
export function ours(name: string): string {
  return join(BIN, name);
}

/** djb's program from Debian's ucspi-tcp package. */
export function djb(name: string): string {
  return join("/usr/bin", name);
}

/** The program from Debian's ucspi-tcp-ipv6 (djb's with -4, -6 and -I, whose usage lines ours
 * print), extracted into build/peers (it conflicts with ucspi-tcp): fails the test, never skips
 * it, when it is missing. */
export function debianIpv6(name: string): string {
  const path = join(ROOT, "build/peers/ucspi-tcp-ipv6/usr/bin", name);
  if (!existsSync(path))
    throw new Error(`${path} is missing: sh scripts/fetch-test-peers.sh extracts it there`);
  return path;
}

/** `env` with the test run's UCSPI_TLS_ENGINE, when it has one: the whole suite can run on
 * node:tls rather than tlsd's default engine (UCSPI_TLS_ENGINE=node npm test), though most
 * tests give our programs an environment of their own. */
export function withTestEngine(env: NodeJS.ProcessEnv | undefined): NodeJS.ProcessEnv | undefined {
  const engine = process.env["UCSPI_TLS_ENGINE"];
  return env && engine !== undefined ? { UCSPI_TLS_ENGINE: engine, ...env } : env;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion, feeding `input` on stdin; kills it after `timeoutMs`. */
export function run(
  file: string,
  args: readonly string[],
  options: SpawnOptions & { input?: string | Buffer; timeoutMs?: number } = {},
): Promise<RunResult> {
  const { input, timeoutMs = 20_000, ...spawnOptions } = options;
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: ["pipe", "pipe", "pipe"],
      ...spawnOptions,
      env: withTestEngine(spawnOptions.env),
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on("data", (b: Buffer) => out.push(b));
    child.stderr?.on("data", (b: Buffer) => err.push(b));
    let overran = false;
    // At the bound, the child and everything below it: a grandchild that holds stdout or
    // stderr (a script's client) would keep "close" from coming. One that left the tree
    // (a daemon, reparented) still can, so its pipes are let go a moment later.
    const timer = setTimeout(() => {
      overran = true;
      killTree(child);
      setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
      }, 2_000).unref();
    }, timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const said = Buffer.concat(err).toString("latin1");
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString("latin1"),
        stderr: overran ? `${said}\n[run: ${file} killed after ${timeoutMs} ms]\n` : said,
      });
    });
    if (child.stdin) {
      child.stdin.on("error", () => {});
      child.stdin.end(input ?? "");
    }
  });
}

/** tlsd's two ways of running, for a test to take each: in-process under our tcpserver, and as
 * a process of its own under djb's. */
export const TLSD_UNDER = [
  ["our tcpserver, tlsd in-process", ours("tcpserver")],
  ["djb's tcpserver spawning our tlsd", djb("tcpserver")],
] as const;

/** tlsc's two ways of running: in-process under our tcpclient, a process under djb's. */
export const TLSC_UNDER = [
  ["our tcpclient, tlsc in-process", ours("tcpclient")],
  ["djb's tcpclient spawning tlsc", djb("tcpclient")],
] as const;
