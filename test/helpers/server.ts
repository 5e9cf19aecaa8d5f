// Starts a tcpserver (ours or djb's) with -1 and gives back its port, its log and a stop().
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { connect } from "node:net";
import { withTestEngine } from "./programs.ts";

export interface RunningServer {
  port: number;
  child: ChildProcess;
  /** Everything written to stderr so far. */
  log(): string;
  /** Waits until the log has at least `count` lines matching `pattern`. */
  waitForLog(pattern: RegExp, count?: number, timeoutMs?: number): Promise<string[]>;
  /** SIGTERM, then waits for the exit; resolves with the exit code and signal. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** How long stop() waits for a server's end after SIGTERM: tcpserver's own bounds (3 s for
 * what runs in-process, 10 s for an ACME order's taking down) and then some. */
const STOP_BOUND_MS = 30_000;

/** Servers still running: a test that timed out (the runner then exits without its cleanup)
 * must not leave one behind, holding ports and spawning for clients of later runs. */
const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** The log with each of tcpserver's lines on a line of its own. A program shares tcpserver's
 * stderr, and one that writes a line in pieces (`cat: -` then `: Connection reset by peer`) can
 * have tcpserver's whole line land between them; no line of ours has `tcpserver: ` inside it. */
export function unglued(log: string): string {
  return log.replace(/([^\n])(?=tcpserver: )/g, "$1\n");
}

export function startServer(
  file: string,
  args: readonly string[],
  /** wrap: a command that runs the server (`ip netns exec NAME`). */
  options: { env?: NodeJS.ProcessEnv; cwd?: string; wrap?: readonly string[] } = {},
): Promise<RunningServer> {
  const [command = file, ...head] = options.wrap ? [...options.wrap, file] : [file];
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...head, "-1", ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: withTestEngine(options.env) ?? process.env,
      cwd: options.cwd,
    });
    running.add(child);
    let stderr = "";
    let stdout = "";
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
      child.on("exit", (code, signal) => {
        running.delete(child);
        res({ code, signal });
      }),
    );
    child.stderr.setEncoding("latin1");
    child.stderr.on("data", (s: string) => (stderr += s));
    child.stdout.setEncoding("latin1");
    const failTimer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`server did not start: ${stderr}`));
    }, 15_000);
    child.on("exit", () => {
      clearTimeout(failTimer);
      if (!/\n/.test(stdout)) reject(new Error(`server exited before listening: ${stderr}`));
    });
    child.stdout.on("data", (s: string) => {
      stdout += s;
      const m = /^(\d+)\n/.exec(stdout);
      if (!m) return;
      clearTimeout(failTimer);
      resolve({
        port: Number(m[1]),
        child,
        log: () => unglued(stderr),
        waitForLog: (pattern, count = 1, timeoutMs = 15_000) =>
          waitFor(
            () => {
              const lines = unglued(stderr)
                .split("\n")
                .filter((l) => pattern.test(l));
              return lines.length >= count ? lines : undefined;
            },
            timeoutMs,
            () => `log never matched ${pattern} x${count}:\n${stderr}`,
          ),
        stop: async () => {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
          // One that does not end (its loop stuck) is killed, and the test fails with its log
          // rather than timing out with nothing said.
          let timer: NodeJS.Timeout | undefined;
          const stuck = new Promise<"stuck">((res) => {
            timer = setTimeout(() => res("stuck"), STOP_BOUND_MS);
          });
          const end = await Promise.race([exited, stuck]);
          clearTimeout(timer);
          if (end !== "stuck") return end;
          child.kill("SIGKILL");
          await exited;
          throw new Error(`server still ran ${STOP_BOUND_MS / 1000} s after SIGTERM:\n${stderr}`);
        },
      });
    });
  });
}

/** Polls `check` until it returns a value; fails with `describe()` after the timeout. */
export async function waitFor<T>(
  check: () => T | undefined,
  timeoutMs = 15_000,
  describe: () => string = () => "condition never held",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(describe());
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Connects, writes `input` (then half-closes), and reads until EOF. */
export function talk(
  port: number,
  input = "",
  host = "127.0.0.1",
  options: { localAddress?: string; halfClose?: boolean } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      port,
      host,
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no EOF from ${host}:${port}`));
    }, 15_000);
    socket.on("data", (b: Buffer) => chunks.push(b));
    socket.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.on("end", () => {
      clearTimeout(timer);
      socket.end();
      resolve(Buffer.concat(chunks).toString("latin1"));
    });
    socket.on("connect", () => {
      if (input) socket.write(input);
      if (options.halfClose !== false) socket.end();
    });
  });
}

/** Whether a server on 127.0.0.1:`port` answers: `send` (if any) written once connected, then
 * true once what it read matches `answer`; false on a refusal, a close or 2 s of silence. */
export function answers(port: number, answer: RegExp, send?: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: "127.0.0.1" });
    let got = "";
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.on("error", () => done(false));
    socket.on("close", () => done(false));
    socket.on("data", (b: Buffer) => {
      got += b.toString("latin1");
      if (answer.test(got)) done(true);
    });
    if (send !== undefined) socket.on("connect", () => socket.write(send));
  });
}

/** Waits (10 s or so) until a server that is starting answers (see answers); throws with
 * `describe()` after that, or at once when `gone()` says it has exited. */
export async function untilAnswers(
  port: number,
  answer: RegExp,
  send: string | undefined,
  describe: () => string,
  gone: () => boolean = () => false,
): Promise<void> {
  for (let i = 0; !(await answers(port, answer, send)); i++) {
    if (i > 100 || gone()) throw new Error(describe());
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
