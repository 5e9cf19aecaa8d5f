// A two-namespace network lab for tests of kernel features (TPROXY, REDIRECT, policy routing,
// marks): a client namespace and a server namespace joined by a veth pair, IPv4 and IPv6.
// Everything is made by the test and removed with the namespaces; the host's own tables are
// never touched. Needs root (CI runs as root).
import { execFileSync, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { run } from "./programs.ts";
import { alive } from "./procs.ts";
import { waitFor } from "./server.ts";
import type { RunResult } from "./programs.ts";

export interface Lab {
  client: string;
  server: string;
  clientIp: string;
  serverIp: string;
  clientIp6: string;
  serverIp6: string;
  /** Runs a command in a namespace to completion. */
  run(ns: string, file: string, args: readonly string[], input?: string): Promise<RunResult>;
  /** Runs a command in a namespace and throws with its stderr if it fails. */
  sh(ns: string, command: string): string;
  /** Starts a long-running command in a namespace (stdout and stderr piped). */
  start(ns: string, file: string, args: readonly string[], env?: NodeJS.ProcessEnv): ChildProcess;
  /** A third namespace behind the server's, on a link of its own (10.78.0.3, the server's end
   * 10.78.0.1): another host the server reaches by routing, none of whose addresses is the
   * server's own. Made on first use; removed with the others. */
  far(): Far;
  /** Kills what runs in the namespaces and removes them. */
  destroy(): void;
}

export interface Far {
  ns: string;
  ip: string;
  /** The server namespace's address on that link. */
  serverIp: string;
  /** Kills what runs in it and removes it, and the link with it. */
  remove(): void;
}

export function makeLab(tag: string): Lab {
  // The dash keeps tags apart: "te" + 6667 and "te6" + 667 were one name, and removeStale of
  // the second took the first's namespaces (the pid 667 gone) while its tests ran.
  const id = `${tag}-${process.pid}`;
  const client = `ucspi-${id}-c`;
  const server = `ucspi-${id}-s`;
  const vc = `vc${process.pid % 100000}`;
  const vs = `vs${process.pid % 100000}`;
  const far = `ucspi-${id}-f`;
  let made: Far | undefined;
  const ip = (...args: string[]) => execFileSync("ip", args, { stdio: ["ignore", "pipe", "pipe"] });
  const sh = (ns: string, command: string): string => {
    try {
      return execFileSync("ip", ["netns", "exec", ns, "sh", "-ec", command], {
        stdio: ["ignore", "pipe", "pipe"],
        encoding: "latin1",
      });
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr ?? "";
      throw new Error(`in ${ns}: ${command}: ${stderr}`, { cause: error });
    }
  };
  const children: ChildProcess[] = [];
  const removeNs = (ns: string) => {
    try {
      for (const pid of ip("netns", "pids", ns).toString().split("\n").filter(Boolean))
        process.kill(Number(pid), "SIGKILL");
    } catch {
      // not there (yet, or any more)
    }
    try {
      ip("netns", "del", ns);
    } catch {
      // not there
    }
  };
  const destroy = () => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
    for (const ns of [client, server, far]) removeNs(ns);
  };
  destroy();
  removeStale(tag);
  ip("netns", "add", client);
  ip("netns", "add", server);
  ip("link", "add", vc, "netns", client, "type", "veth", "peer", "name", vs, "netns", server);
  const lab: Lab = {
    client,
    server,
    clientIp: "10.77.0.2",
    serverIp: "10.77.0.1",
    clientIp6: "fd77::2",
    serverIp6: "fd77::1",
    run: (ns, file, args, input) =>
      run("ip", ["netns", "exec", ns, file, ...args], { input: input ?? "" }),
    sh,
    far: () =>
      (made ??= {
        ...makeFar(ip, sh, server, far),
        remove: () => {
          removeNs(far);
          made = undefined;
        },
      }),
    start: (ns, file, args, env) => {
      const child = spawn("ip", ["netns", "exec", ns, file, ...args], {
        stdio: ["ignore", "pipe", "pipe"],
        env: env ?? process.env,
      });
      children.push(child);
      return child;
    },
    destroy,
  };
  sh(
    client,
    `ip link set lo up; ip link set ${vc} up; ip addr add 10.77.0.2/24 dev ${vc}; ip -6 addr add fd77::2/64 dev ${vc} nodad`,
  );
  sh(
    server,
    `ip link set lo up; ip link set ${vs} up; ip addr add 10.77.0.1/24 dev ${vs}; ip -6 addr add fd77::1/64 dev ${vs} nodad`,
  );
  return lab;
}

function makeFar(
  ip: (...args: string[]) => Buffer,
  sh: (ns: string, command: string) => string,
  server: string,
  ns: string,
): Omit<Far, "remove"> {
  const [vf, vg] = [`vf${process.pid % 100000}`, `vg${process.pid % 100000}`];
  ip("netns", "add", ns);
  ip("link", "add", vf, "netns", ns, "type", "veth", "peer", "name", vg, "netns", server);
  sh(ns, `ip link set lo up; ip link set ${vf} up; ip addr add 10.78.0.3/24 dev ${vf}`);
  sh(server, `ip link set ${vg} up; ip addr add 10.78.0.1/24 dev ${vg}`);
  return { ns, ip: "10.78.0.3", serverIp: "10.78.0.1" };
}

/** A long-running program of a test (started with Lab.start): what it says on stderr, kept,
 * and its end. */
export interface Watched {
  child: ChildProcess;
  log(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function watch(child: ChildProcess): Watched {
  let text = "";
  child.stderr?.setEncoding("latin1");
  child.stderr?.on("data", (s: string) => (text += s));
  child.stdout?.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  return { child, log: () => text, exited };
}

/** Once `url` answers from inside `ns` (a service started in the lab, up). */
export async function untilAnswers(lab: Lab, ns: string, url: string): Promise<void> {
  await waitFor(() => {
    try {
      lab.sh(ns, `curl -s -o /dev/null --max-time 2 ${url}`);
      return true;
    } catch {
      return undefined;
    }
  });
}

/** Namespaces an earlier run of a test left behind (killed before its clean-up). */
function removeStale(tag: string): void {
  let list = "";
  try {
    list = execFileSync("ip", ["netns", "list"], { encoding: "latin1" });
  } catch {
    return;
  }
  for (const line of list.split("\n")) {
    const m = new RegExp(`^(ucspi-${tag}-(\\d+)-[csf])\\b`).exec(line);
    if (!m?.[1] || alive(Number(m[2]))) continue;
    for (const pid of execFileSync("ip", ["netns", "pids", m[1]], { encoding: "latin1" })
      .split("\n")
      .filter(Boolean))
      process.kill(Number(pid), "SIGKILL");
    execFileSync("ip", ["netns", "del", m[1]]);
  }
}
