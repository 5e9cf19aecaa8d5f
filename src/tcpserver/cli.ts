// tcpserver: argv and env → a listening socket and the accept loop. The only file of
// tcpserver that touches process globals (with no-turbofan.ts, which comes first).
import "./no-turbofan.ts";
import { spawn } from "node:child_process";
import { isSea } from "node:sea";
import type { ChildProcess } from "node:child_process";
import { isUtf8 } from "node:buffer";
import { writeSync } from "node:fs";
import { parsePort, parseServerHost, unknownZone, withInterface } from "../ucspi/address.ts";
import { StageConfigError, prepareChain } from "../ucspi/chain.ts";
import { spawnersForProgramsOnly } from "../ucspi/spawner.ts";
import { hostAddresses } from "../net/dns.ts";
import { helpAsked } from "../cli/help.ts";
import { FatalError, causeText } from "../ucspi/errors.ts";
import { copyEnv, startEnv, unsetVar } from "../ucspi/env.ts";
import type { Env } from "../ucspi/env.ts";
import { endOnUncaught, programArgs, reportError, writeStderr } from "../cli/main.ts";
import { native } from "../ucspi/native.ts";
import { setIds } from "../ucspi/privileges.ts";
import { reloadAll } from "../ucspi/reload.ts";
import { STOP_HOOKS_MS, stopAll } from "../ucspi/stop.ts";
import { jsonLog, textLog } from "./log.ts";
import type { ServerLog } from "./log.ts";
import { EXTENSIONS, USAGE, parseServerArgs, workerLimit } from "./options.ts";
import type { ServerOptions } from "./options.ts";
import type { Metrics } from "../metrics/prometheus.ts";
import { isSnapshotRequest, serveMetrics } from "./metrics.ts";
import { serve } from "./server.ts";
import { OWNER_VARIABLE } from "../tls-everywhere/mark.ts";

/** systemd's first passed fd (SD_LISTEN_FDS_START), and Linux's socket constants. */
const ACTIVATED_FD = 3;
const AF_UNIX = 1;
const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;

/** Without --drain, how long SIGTERM lets the connections served in this process go on. */
const STOP_SECONDS = 3;

/** Node gives a spawn's words and environment as UTF-8 only: a --workers worker whose words or
 * environment hold a byte that is not (src/ucspi/os-string.ts, env.ts) gets them here, as JSON
 * (which writes a lone surrogate `\udcff`). */
const WORKER_BYTES = "UCSPI_WORKER_BYTES";

interface WorkerBytes {
  argv: string[];
  env: Env;
}

/** A worker's words and environment as the first process passed them, if it did. */
function workerBytes(args: readonly string[]): WorkerBytes | undefined {
  const passed = process.env[WORKER_BYTES];
  if (passed === undefined || !args[0]?.startsWith("--worker=")) return undefined;
  return JSON.parse(passed) as WorkerBytes;
}

async function main(): Promise<void> {
  const passed = workerBytes(programArgs());
  const args = passed?.argv ?? programArgs();
  if (helpAsked("tcpserver", args, USAGE, EXTENSIONS)) return;
  endOnUncaught("tcpserver");
  const options = parseServerArgs(args, process.env);
  // --workers: each process's handshake threads take its share of the cores.
  native().tlsShareCores(options.workers);
  // SIGHUP from the start (djb's tcpserver dies of it): one that comes while we load our
  // stages must not end the server. Workers get it as a message: a signal could reach one
  // that has not installed its handler yet, and kill it.
  const hangUp: { workers: ChildProcess[]; log?: ServerLog } = { workers: [] };
  const reload = () => {
    for (const worker of hangUp.workers) if (worker.connected) worker.send("reload", () => {});
    hangUp.log?.reload();
    reloadAll(writeStderr);
  };
  process.on("SIGHUP", reload);
  // --metrics: counting on in every process (prom-client loaded only then); the first one
  // answers scrapes, with its workers' counts added (asked over their IPC channels). The
  // listener comes first: a message that finds none is lost.
  let metrics: Metrics | undefined;
  if (options.workerIndex > 0)
    process.on("message", (message) => {
      if (message === "reload") reload();
      if (metrics && isSnapshotRequest(message))
        void metrics
          .snapshot()
          .then((snapshot) =>
            process.send?.({ metricsReply: message.metricsRequest, snapshot }, () => {}),
          );
    });
  if (options.metrics) metrics = await (await import("../metrics/prometheus.ts")).enableMetrics();
  const env = passed ? copyEnv(passed.env) : startEnv(process.env);
  // tls-everywhere's mark of its chain: this process's own (in its /proc/PID/environ, where
  // tls-everywhere looks), not its programs'. Its workers are started with it.
  unsetVar(env, OWNER_VARIABLE);
  unsetVar(env, WORKER_BYTES);
  // A worker of a socket-activated tcpserver has no port of its own to bind (systemd's socket
  // has no SO_REUSEPORT): it accepts from that socket, its fd 3.
  const activated = socketActivated(env);
  // (Checked as systemd's is: given by hand, fd 3 was Node's own, and tcpserver said
  // "internal error: Socket operation on non-socket".)
  const listenFd = options.workerSharesListener
    ? listeningSocket(
        (why) =>
          new FatalError(`unable to use the listening socket (--worker-shares-listener): ${why}`),
        "",
      )
    : (activated ?? listenOn(await bindAddress(options), portNumber(options.port), options));
  // Bound as the port is, before privileges go (a port below 1024, a socket under /run).
  if (metrics && options.metrics && options.workerIndex === 0) {
    const endpoint = await serveMetrics(options.metrics, metrics, () => hangUp.workers);
    process.on("exit", () => endpoint.removeSocket());
  }
  // Our stage's configuration, checked and loaded before accepting and before privileges go.
  try {
    // Programs only, no stage of ours: more spawners (see spawnersForProgramsOnly).
    if (!(await prepareChain(options.program, env, writeStderr)))
      spawnersForProgramsOnly(options.workers);
  } catch (error) {
    if (!(error instanceof StageConfigError)) throw error;
    const code = reportError(error.stage, error.cause, writeStderr);
    process.exit(code === 100 ? 100 : 111);
  }
  const [, boundPort, family] = native().localAddress(listenFd);
  const workers =
    options.workerIndex === 0 ? startWorkers(args, env, options, boundPort, activated) : [];
  hangUp.workers = workers;
  options.limit = workerLimit(options.limit, options.workers, options.workerIndex);
  if (options.printPort && options.workerIndex === 0) printPort(boundPort);
  // djb closes stdin and stdout once started; /dev/null keeps fds 0/1 from being reused.
  native().devNull(0);
  native().devNull(1);
  dropPrivileges(options);
  const log =
    options.logFormat === "json"
      ? await jsonLog(options.verbosity, 2)
      : textLog(options.verbosity, writeStderr, options.v6Env);
  hangUp.log = log;
  const server = serve(listenFd, {
    options,
    log,
    env,
    stderr: writeStderr,
    listenerIsV6: family === 6,
  });
  let stopping = false;
  process.on("SIGTERM", () => {
    // Once is enough: a worker gets a second one of its own when the first process goes.
    if (stopping) return;
    stopping = true;
    for (const worker of workers) worker.kill("SIGTERM");
    const drain = options.drainSeconds;
    // djb: exit 0 at once, children keep running. Connections served in this process may
    // finish, up to STOP_SECONDS (a supervisor waits only so long: runit's sv, 7 s).
    // --drain: every connection may finish, up to the bound, the workers' too (a supervisor
    // that sees the first process go may kill the rest of its group).
    const stopped =
      drain === undefined
        ? server.close(STOP_SECONDS)
        : Promise.all([server.drain(drain), ...workers.map(exited)]);
    // Then what the chain set up outside this process is taken down (an order's dns-01
    // record, its claim on the name: src/ucspi/stop.ts).
    const end = () => stopAll(STOP_HOOKS_MS).then(() => process.exit(0));
    stopped.then(end, end);
  });
  // A worker goes when the first process goes, whatever killed it.
  if (options.workerIndex > 0) process.on("disconnect", () => process.kill(process.pid, "SIGTERM"));
}

/** -1: the port on stdout. A write that fails (a reader gone, a full disk) is not an error:
 * djb's flushes and goes on serving. */
function printPort(port: number): void {
  try {
    writeSync(1, `${port}\n`);
  } catch {
    // Nobody to tell: the server still serves.
  }
}

/** systemd socket activation: the listening socket is fd 3, and the variables are ours only.
 * One socket, a listening TCP one: anything else would be accepted from in vain (a UDP socket,
 * one not listening) or never (a second socket, whose clients would wait in its backlog). */
function socketActivated(env: Env): number | undefined {
  const fds = env["LISTEN_FDS"] ?? "0";
  const pid = Number(env["LISTEN_PID"] ?? "0");
  for (const name of ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"]) delete env[name];
  if (pid !== process.pid) return undefined;
  const unusable = (why: string) =>
    new FatalError(`unable to use the socket systemd passed (LISTEN_FDS): ${why}`);
  // As sd_listen_fds(): a count for us that is not one is an error, not "no socket".
  if (!/^[0-9]+$/.test(fds)) throw unusable(`'${fds}' is not a number of sockets`);
  const count = Number(fds);
  if (count === 0) return undefined;
  if (count > 1)
    throw unusable(
      `${count} sockets, where tcpserver serves one: give the socket unit one Listen line`,
    );
  return listeningSocket(
    unusable,
    " (Accept=yes passes each connection: tcpserver needs Accept=no)",
  );
}

/** fd 3, when it is a listening TCP socket; else what `unusable` makes of what it is
 * (`notListening`: what to add when it is a TCP socket that is not listening). */
function listeningSocket(unusable: (why: string) => FatalError, notListening: string): number {
  let domain: number, type: number, listening: number;
  try {
    [domain, type, listening] = native().socketKind(ACTIVATED_FD);
  } catch (error) {
    throw unusable(`fd ${ACTIVATED_FD}: ${causeText(error)}`);
  }
  const inet = domain === AF_INET || domain === AF_INET6;
  if (!inet || type !== SOCK_STREAM)
    throw unusable(
      `fd ${ACTIVATED_FD} is ${inet && type === SOCK_DGRAM ? "a UDP socket" : domain === AF_UNIX ? "a UNIX socket" : "not a TCP socket"}, not a listening TCP socket`,
    );
  if (listening !== 1)
    throw unusable(`fd ${ACTIVATED_FD} is a TCP socket that is not listening${notListening}`);
  return ACTIVATED_FD;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/** --workers N: N-1 more processes of this program, bound to the same port (SO_REUSEPORT), or
 * given the socket systemd passed, as their fd 3. */
function startWorkers(
  args: string[],
  env: Readonly<Env>,
  options: ServerOptions,
  port: number,
  activated: number | undefined,
): ChildProcess[] {
  const workers: ChildProcess[] = [];
  // The same V8 flags as this process (the launcher caps the young generation; without them a
  // worker's heap grew to Node's default). A single executable has them built in, and would
  // take them on its command line for a program's arguments.
  const v8Flags = isSea() ? [] : process.execArgv;
  const program = options.program.length;
  const head = args.slice(0, args.length - program - 2);
  const tail = [options.host, String(port), ...options.program];
  for (let index = 1; index < options.workers; index++) {
    const words = [
      `--worker=${index}`,
      ...(activated === undefined ? [] : ["--worker-shares-listener"]),
      ...head,
      ...tail,
    ];
    const passed: WorkerBytes = { argv: words, env };
    const bytes = inUtf8(passed) ? {} : { [WORKER_BYTES]: JSON.stringify(passed) };
    workers.push(
      spawn(process.execPath, [...v8Flags, process.argv[1] ?? "", ...words], {
        env: { ...process.env, ...bytes },
        stdio:
          activated === undefined
            ? ["ignore", "ignore", "inherit", "ipc"]
            : ["ignore", "ignore", "inherit", activated, "ipc"],
      }),
    );
  }
  return workers;
}

/** Whether Node would pass these words and this environment (byte strings) unchanged. */
function inUtf8(passed: WorkerBytes): boolean {
  const values = Object.values(passed.env).filter((v) => v !== undefined);
  return (
    passed.argv.every((word) => word.isWellFormed()) &&
    [...Object.keys(passed.env), ...values].every((bytes) => isUtf8(Buffer.from(bytes, "latin1")))
  );
}

/** The address to listen on: `host`'s, an IPv4 one with -4, a link-local one on -I's
 * interface. */
async function bindAddress(options: ServerOptions): Promise<string> {
  const addresses = await hostAddresses(parseServerHost(options.host), options.ipv4Only);
  // djb binds an IPv4 address; prefer one where the name has both.
  const first = addresses.find((a) => !a.includes(":")) ?? addresses[0];
  if (first === undefined) throw new FatalError(`no IP address for ${options.host}`);
  const address = withInterface(first, options.interfaceName);
  // -I names an interface of this host (a link-local address needs a real one).
  const zone = address !== first ? unknownZone(address) : undefined;
  if (zone !== undefined) throw new FatalError(`unable to bind: no network interface ${zone}`);
  return address;
}

function portNumber(text: string): number {
  return parsePort(text);
}

function listenOn(address: string, port: number, options: ServerOptions): number {
  try {
    return native().listen(
      address,
      port,
      options.backlog,
      options.workers > 1,
      options.transparent,
    );
  } catch (error) {
    throw new FatalError(`unable to bind: ${causeText(error)}`, 111, { cause: error });
  }
}

/** After binding, as djb does: only non-zero ids are acted on (-g 0 and -u 0 change nothing). */
function dropPrivileges({ gid, uid }: ServerOptions) {
  setIds({ ...(gid ? { gid } : {}), ...(uid ? { uid } : {}) });
}

main().catch((error: unknown) => {
  process.exitCode = reportError("tcpserver", error, writeStderr, USAGE);
  process.exit();
});
