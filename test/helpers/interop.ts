// Helpers for the interop and stress tests: stunnel4 as a peer, free ports, listening sockets
// and processes as /proc shows them (children, zombies included; open fds; resident memory).
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import {
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { createSocket } from "node:dgram";
import { createServer } from "node:net";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import type { ConnectionOptions } from "node:tls";
import { childrenOf } from "./procs.ts";
import type { ProcInfo } from "./procs.ts";
import { waitFor } from "./server.ts";

export { childrenOf, descendantsOf } from "./procs.ts";
export type { ProcInfo } from "./procs.ts";

/** A port that was free a moment ago on `host` (for programs that cannot listen on port 0).
 * It is drawn below the kernel's ephemeral range (32768 and up), so no outgoing connection of
 * a test running beside this one takes it as its own port before the program binds it; port 0
 * hands out ports from that range, and a busy run once lost one that way. */
export function freePort(host = "127.0.0.1", from = 16_000, to = 32_000): Promise<number> {
  return drawPort(from, to, (port) => {
    const s = createServer();
    return new Promise<boolean>((resolve) => {
      s.once("error", () => resolve(false));
      s.listen(port, host, () => s.close(() => resolve(true)));
    });
  });
}

/** A UDP port that was free a moment ago on `host`, drawn as freePort draws a TCP one. */
export function freeUdpPort(host = "127.0.0.1", from = 16_000, to = 32_000): Promise<number> {
  return drawPort(from, to, (port) => {
    const s = createSocket(host.includes(":") ? "udp6" : "udp4");
    return new Promise<boolean>((resolve) => {
      s.once("error", () => {
        s.close();
        resolve(false);
      });
      s.bind(port, host, () => s.close(() => resolve(true)));
    });
  });
}

/** A port from..to that `bindable` could bind, never one handed out before in this test run.
 * The runner runs test files side by side, each in a process of its own: a port handed out to
 * one is reserved for the whole run by a file created exclusively in a directory named after the
 * runner (this process's parent), so another file never draws it. A port a test keeps closed on
 * purpose (a CA or a service that must refuse) was once drawn by a file running beside it, whose
 * server then answered the connection with a reset. */
async function drawPort(
  from: number,
  to: number,
  bindable: (port: number) => Promise<boolean>,
): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const port = from + Math.floor(Math.random() * (to - from));
    if (handedOut.has(port) || !(await bindable(port)) || !reserve(port)) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port from ${from} to ${to} in 200 tries`);
}
const handedOut = new Set<number>();
const reservations = join(tmpdir(), "ucspi-tls-test-ports", String(process.ppid));

/** Whether this process is the first of the run to take `port`. */
function reserve(port: number): boolean {
  mkdirSync(reservations, { recursive: true });
  try {
    closeSync(openSync(join(reservations, String(port)), "wx"));
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw e;
  }
}

/** Whether some socket listens on TCP `port` (any address, IPv4 or IPv6), per /proc/net. */
export function isListening(port: number): boolean {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(table, "latin1");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[1]?.endsWith(hex) && fields[3] === "0A") return true;
    }
  }
  return false;
}

export interface Stunnel {
  /** The port of its `accept`. */
  port: number;
  child: ChildProcess;
  /** Its log (stderr) so far. */
  log(): string;
  stop(): Promise<void>;
}

/**
 * Runs stunnel4 in the foreground with one service: `service` lines (without `accept`, which is
 * a free port on 127.0.0.1) under `[name]`, the config file in `dir`. Resolves once it listens.
 */
export async function startStunnel(
  dir: string,
  name: string,
  service: Record<string, string>,
): Promise<Stunnel> {
  const port = await freePort();
  const config = join(dir, `${name}.conf`);
  const lines = [
    "foreground = yes",
    "pid =",
    "debug = 5",
    `[${name}]`,
    `accept = 127.0.0.1:${port}`,
    ...Object.entries(service).map(([k, v]) => `${k} = ${v}`),
  ];
  writeFileSync(config, `${lines.join("\n")}\n`);
  const child = spawn("/usr/bin/stunnel4", [config], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr?.setEncoding("latin1");
  child.stderr?.on("data", (s: string) => (log += s));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
  };
  try {
    await waitFor(
      () => (child.exitCode !== null || isListening(port) ? true : undefined),
      10_000,
      () => `stunnel4 never listened on ${port}:\n${log}`,
    );
    if (child.exitCode !== null) throw new Error(`stunnel4 exited ${child.exitCode}:\n${log}`);
  } catch (error) {
    await stop();
    throw error;
  }
  return { port, child, log: () => log, stop };
}

/** The programs a server runs: its children and those of its ucspi-spawner (which tcpserver
 * starts on its first spawn, and which is not one of them). Zombies included. */
export function programsOf(pid: number): ProcInfo[] {
  const children = childrenOf(pid);
  const spawners = children.filter((c) => c.comm === "ucspi-spawner");
  return [
    ...children.filter((c) => c.comm !== "ucspi-spawner"),
    ...spawners.flatMap((sp) => childrenOf(sp.pid)),
  ];
}

/** The pids of the server's ucspi-spawner processes. */
export function spawnersOf(pid: number): number[] {
  return childrenOf(pid)
    .filter((c) => c.comm === "ucspi-spawner")
    .map((c) => c.pid);
}

/** The open file descriptors of `pid`: fd number → what readlink shows (socket:[N], a path). */
export function openFds(pid: number): Map<number, string> {
  const fds = new Map<number, string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target = "?";
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      // closed meanwhile
    }
    fds.set(Number(fd), target);
  }
  return fds;
}

/** Resident set size of `pid`, in KiB (VmRSS of /proc/N/status). */
export function rssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "latin1"));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]);
}

/** One TLS connection: handshake, read until EOF, and what was read (latin1). */
export function tlsFetch(options: ConnectionOptions, input = ""): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect(options);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no EOF from ${options.host}:${options.port}`));
    }, 15_000);
    socket.on("secureConnect", () => socket.end(input));
    socket.on("data", (b: Buffer) => chunks.push(b));
    socket.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on("end", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString("latin1"));
    });
  });
}

/** Runs `task(i)` for i in [0, count), at most `width` at a time; the results in order. */
export async function pool<T>(
  count: number,
  width: number,
  task: (i: number) => Promise<T>,
): Promise<T[]> {
  const results: T[] = new Array<T>(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      results[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, count) }, worker));
  return results;
}
