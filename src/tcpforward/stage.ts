// tcpforward: the last stage of a chain that sends the client on to a TCP service: a
// connection to host:port (by default the address and port the client asked for, which
// tcpserver --transparent or --redirected put in TCPLOCALIP/TCPLOCALPORT) or to a UNIX socket
// (a path), and a relay both ways with half-close. The service learns the client from its own
// accept() (--transparent: the connection comes from the client's address), from a PROXY v2
// header (--proxy), or not at all. It never connects anywhere in place of the address asked
// for: a service bound to loopback only stays out of reach, as it would be without us.
import { lookup } from "node:dns/promises";
import { writeSync } from "node:fs";
import { isIP } from "node:net";
import { constants } from "node:os";
import { envProxyHeader } from "../proxy/from-env.ts";
import { tlsTlvs } from "../proxy/tls-tlvs.ts";
import { isLinkLocal, unmapIPv4 } from "../net/ip.ts";
import { connectionStream, exitStatus } from "../ucspi/chain.ts";
import { clientPrefix, tcpVar } from "../ucspi/env.ts";
import type { Env } from "../ucspi/env.ts";
import { FatalError, causeText, parseOrUsage } from "../ucspi/errors.ts";
import { native } from "../ucspi/native.ts";
import {
  forwardBroken,
  forwardConnects,
  ifPlainClients,
  ifPlainProbes,
} from "../metrics/catalog.ts";
import { relay } from "../stream/relay.ts";
import { resetConnection } from "../stream/reset.ts";
import type { Feed } from "../stream/relay.ts";
import { sharedReadSocket } from "../stream/shared-read.ts";
import type { Connection, Stage, StageContext } from "../ucspi/stage.ts";
import { USAGE, parseForwardArgs } from "./options.ts";
import type { ForwardOptions } from "./options.ts";
import { stageOptions } from "../ucspi/stage-options.ts";
import { VERDICT_SECONDS, probeService } from "./probe.ts";

export const forwardStage: Stage = {
  prepare(argv) {
    parseOrUsage(USAGE, () => parseForwardArgs([...argv]));
  },

  chainsAfter(argv) {
    return [parseForwardArgs([...argv]).ifPlain ?? []];
  },

  async run(ctx) {
    const o = stageOptions(ctx.argv, USAGE, parseForwardArgs);
    if (
      ownConnections.has(endpointKey(tcpVar(ctx.env, "REMOTEIP"), tcpVar(ctx.env, "REMOTEPORT")))
    ) {
      // The client is a connection this process made: without interception the address
      // "asked for" is tcpserver's own, and each connection would open another.
      resetConnection(ctx.connection);
      forwardConnects.inc(LOOP);
      throw new FatalError(
        `${clientPrefix(ctx.env)}a loop: this connection comes from tcpforward itself (run tcpserver --transparent or --redirected, or give a host and a port)`,
        111,
      );
    }
    const to = await destination(o, ctx.env);
    const from = o.transparent ? clientAddress(ctx.env) : (o.localIp ?? "");
    const client =
      o.transparent && !("path" in to)
        ? tupleKey(from, tcpVar(ctx.env, "REMOTEPORT") ?? "", to)
        : "";
    if (client) clientConnections.add(client);
    try {
      if (o.ifPlain && !("path" in to)) {
        // The PROXY header goes first, before the ClientHello the service is asked with.
        const probed = await probeService(`${to.ip} ${to.port}`, ctx.connection, async () => {
          const fd = await connectOrReset(ctx, o, to, from);
          if (o.proxy) writeSync(fd, serviceHeader(ctx.env));
          return fd;
        });
        ifPlainClients.inc(probed.tls ? TO_SERVICE : TO_PROGRAM);
        if (probed.asked) ifPlainProbes.inc(probed.tls ? ANSWER_TLS : ANSWER_PLAIN);
        // A new answer (a service's first, or one that changed) at -v 1; each answer at -v 2.
        if (probed.asked && o.verbosity >= (probed.changed ? 1 : 2))
          ctx.log(
            probed.tls
              ? `tcpforward: info: ${clientPrefix(ctx.env)}${where(to)} speaks TLS itself: its TLS clients go to it as they are (for ${VERDICT_SECONDS} s)\n`
              : `tcpforward: info: ${clientPrefix(ctx.env)}${where(to)} does not speak TLS (${probed.why}): its TLS clients go to ${o.ifPlain[0] ?? ""} (for ${VERDICT_SECONDS} s)\n`,
          );
        if (!probed.tls) return await ctx.next(o.ifPlain, ctx.env, probed.connection);
        return await forward(
          { ...ctx, connection: probed.connection },
          o,
          to,
          from,
          probed.service,
        );
      }
      return await forward(ctx, o, to, from);
    } finally {
      if (client) clientConnections.delete(client);
    }
  },
};

/** The connection to the service; a failure resets the client, as the service itself would
 * have, and is named. */
async function connectOrReset(
  ctx: StageContext,
  o: ForwardOptions,
  to: Endpoint,
  from: string,
): Promise<number> {
  try {
    const fd = await connectService(to, from, o);
    forwardConnects.inc(CONNECTED);
    return fd;
  } catch (error) {
    resetConnection(ctx.connection);
    forwardConnects.inc(connectFailure(error));
    throw new FatalError(
      `${clientPrefix(ctx.env)}unable to connect to ${where(to)}: ${causeText(error)}`,
      111,
    );
  }
}

/** The connection to the service (`connected`: made already), and the relay. */
async function forward(
  ctx: StageContext,
  o: ForwardOptions,
  to: Endpoint,
  from: string,
  connected?: number,
): Promise<number> {
  const service = connected ?? (await connectOrReset(ctx, o, to, from));
  if (o.verbosity >= 2)
    ctx.log(`tcpforward: info: ${clientPrefix(ctx.env)}connected to ${where(to)}\n`);
  const own = o.host === undefined && o.socket === undefined ? ownEndpoint(service) : undefined;
  if (own) ownConnections.add(own);
  try {
    // The header is the first write on a connection just made: the socket buffer takes it.
    if (o.proxy && connected === undefined) writeSync(service, serviceHeader(ctx.env));
    const broken =
      ctx.connection.fd !== undefined
        ? await spliceRelay(ctx.connection, ctx.connection.fd, service, to)
        : await streamRelay(ctx.connection, service, to);
    if (broken !== undefined) {
      forwardBroken.inc(broken.side === "client" ? BROKEN_CLIENT : BROKEN_SERVICE);
      throw new FatalError(`${clientPrefix(ctx.env)}${broken.text}`, 111);
    }
    return exitStatus(0);
  } finally {
    if (own) ownConnections.delete(own);
  }
}

/** A side of the relay that broke, and the log line's words for it. */
interface Broken {
  side: "client" | "service";
  text: string;
}

/** The PROXY v2 header for the service: the client's addresses, and what tlsd said of its TLS
 * session (none for a plaintext one). */
function serviceHeader(env: Readonly<Env>): Buffer {
  return envProxyHeader(env, tlsTlvs(env));
}

function clientBroke(cause: string): Broken {
  return { side: "client", text: `the client's connection broke: ${cause}` };
}

function serviceBroke(to: Endpoint, cause: string): Broken {
  return { side: "service", text: `the connection to ${where(to)} broke: ${cause}` };
}

// tcpserver --metrics: label sets made once.
const CONNECTED = { result: "ok" };
const LOOP = { result: "loop" };
const TO_SERVICE = { to: "service" };
const TO_PROGRAM = { to: "program" };
const ANSWER_TLS = { answer: "tls" };
const ANSWER_PLAIN = { answer: "plain" };
const BROKEN_CLIENT = { side: "client" };
const BROKEN_SERVICE = { side: "service" };
const UNREACHABLE = { result: "unreachable" };
const CONNECT_FAILURES = new Map([
  ["ECONNREFUSED", { result: "refused" }],
  ["ETIMEDOUT", { result: "timeout" }],
  ["EHOSTUNREACH", UNREACHABLE],
  ["ENETUNREACH", UNREACHABLE],
  ["EHOSTDOWN", UNREACHABLE],
  ["ENETDOWN", UNREACHABLE],
]);
const OTHER_FAILURE = { result: "failed" };

/** A failed connection's label: the common causes by name, the rest as one. */
function connectFailure(error: unknown): { result: string } {
  const code = (error as { code?: unknown } | undefined)?.code;
  return (typeof code === "string" && CONNECT_FAILURES.get(code)) || OTHER_FAILURE;
}

/** The clients being served (address, port, and the address and port they asked for): with
 * full transparency our connections to the services must not use their tuples. */
const clientConnections = new Set<string>();

function tupleKey(ip: string, port: number | string, to: TcpEndpoint): string {
  return `${unmapIPv4(ip)} ${String(port)} ${to.ip} ${to.port}`;
}

/** The local ends of the connections this process's tcpforward made to default destinations,
 * while they last: one of them coming back as a client is a loop. */
const ownConnections = new Set<string>();

function endpointKey(ip: string | undefined, port: string | number | undefined): string {
  return `${unmapIPv4(ip ?? "")} ${String(port ?? "")}`;
}

function ownEndpoint(fd: number): string | undefined {
  try {
    const [ip, port] = native().localAddress(fd);
    return endpointKey(ip, port);
  } catch {
    return undefined;
  }
}

/** Both sockets are ours: the kernel moves the bytes (splice), or the stage before relays its
 * peer's bytes to the service's socket itself (tlsd's engine: Connection.relayTo, one hop
 * less). The service's fd is closed here; a failure resets the other side and is named. */
async function spliceRelay(
  connection: Connection,
  client: number,
  service: number,
  to: Endpoint,
): Promise<Broken | undefined> {
  const n = native();
  const [errno, side] = await (connection.relayTo?.(service) ??
    new Promise<[number, number]>((resolve) =>
      n.relay(client, service, (e, s) => resolve([e, s])),
    ));
  // The client's side by its connection: a stage's socket pair (starttls-wrapper's) has a
  // hook that passes the reset on, where its fd has none.
  if (errno !== 0 && side === 0) n.abortOnClose(service);
  else if (errno !== 0) resetConnection(connection);
  n.close(service);
  if (errno === 0) return undefined;
  const cause = causeText(errnoError(errno));
  return side === 0 ? clientBroke(cause) : serviceBroke(to, cause);
}

/** The client is a stream (after tlsd): a relay of streams. A reset on either side is passed
 * on at once, as a reset, and named: the relay alone would take it for an end and half-close
 * the other side as if all were well. */
async function streamRelay(
  connection: Connection,
  fd: number,
  to: Endpoint,
): Promise<Broken | undefined> {
  const client = connectionStream(connection);
  // The service's bytes are read into the process's shared buffer and go to the client as
  // they come, without a Buffer and a "data" event each (a query's answer, a small record).
  const feed: Feed = {};
  const service = sharedReadSocket(fd, client, feed, true);
  let broken: Broken | undefined;
  client.once("error", (error) => {
    broken ??= clientBroke(causeText(error));
    // By its fd: Node's reset does nothing, not even close, once the relay has half-closed the
    // service (a pending shutdown), and the fd would stay open for good. Not once destroyed:
    // the fd may be closed, and its number another connection's.
    if (service.destroyed) return;
    native().abortOnClose(fd);
    service.destroy();
  });
  service.once("error", (error) => {
    broken ??= serviceBroke(to, causeText(error));
    resetConnection(connection);
    client.destroy();
  });
  await relay(client, { source: service, sink: service, feed });
  service.destroy();
  return broken;
}

interface TcpEndpoint {
  ip: string;
  port: number;
}

/** A TCP service, or one on a UNIX socket (its path). */
type Endpoint = TcpEndpoint | { path: string };

/** The service as log lines name it. */
function where(to: Endpoint): string {
  return "path" in to ? to.path : `${to.ip} port ${to.port}`;
}

/** host:port as given (a name: its first address), else the one the client asked for. */
async function destination(o: ForwardOptions, env: Readonly<Env>): Promise<Endpoint> {
  if (o.socket !== undefined) return { path: o.socket };
  if (o.host !== undefined && o.port !== undefined) {
    if (isIP(o.host)) return { ip: unmapIPv4(o.host), port: o.port };
    try {
      // "" names no host (as in resolveHostAddresses): Node's lookup answers it with no
      // address and a DeprecationWarning (DEP0118) of its own on stderr.
      if (o.host === "") throw new Error("no name");
      return { ip: unmapIPv4((await lookup(o.host)).address), port: o.port };
    } catch {
      throw new FatalError(`unable to figure out IP address for ${o.host}`, 111);
    }
  }
  const ip = tcpVar(env, "LOCALIP");
  const port = Number(tcpVar(env, "LOCALPORT"));
  if (!ip || !isIP(ip) || !(port > 0 && port < 65536))
    throw new FatalError(
      "no destination: give a host and a port, or run under tcpserver (TCPLOCALIP, TCPLOCALPORT)",
      100,
    );
  return { ip: scoped(unmapIPv4(ip), env), port };
}

/** The client's address, for full transparency. */
function clientAddress(env: Readonly<Env>): string {
  const ip = tcpVar(env, "REMOTEIP");
  if (!ip || !isIP(ip))
    throw new FatalError("--transparent: no client address (TCPREMOTEIP) to connect from", 100);
  return scoped(unmapIPv4(ip), env);
}

/** A link-local address of the connection with its interface (`fe80::1%eth0`): tcpserver
 * names it in TCP6INTERFACE, as ucspi-tcp-ipv6 does, and keeps the address itself bare. */
function scoped(ip: string, env: Readonly<Env>): string {
  const zone = tcpVar(env, "INTERFACE");
  return zone && !ip.includes("%") && isLinkLocal(ip) ? `${ip}%${zone}` : ip;
}

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** An error for a system call's errno, its `code` the errno's name (what causeText reads). */
function errnoError(errno: number): Error {
  const code = ERRNO_NAMES.get(errno) ?? "EIO";
  return Object.assign(new Error(code), { code });
}

/** The next port to try in --source-ports: a counter from a random start, shared by the
 * connections of this process, so that a port comes back for the same client only after all
 * the others (the service's TIME_WAIT of the last one is then long over, or recycled). */
let nextSourcePort = -1;

/** With --transparent, a socket from the client's address bound to a port of --source-ports
 * (the next free one); else the kernel's choice. */
function openSocket(to: Endpoint, from: string, o: ForwardOptions): number {
  const n = native();
  if ("path" in to) return n.connectUnix(to.path);
  if (!o.transparent) return n.connectTcp(to.ip, to.port, from, false, o.mark, 0);
  const [low, high] = o.sourcePorts;
  const span = high - low + 1;
  if (nextSourcePort < 0) nextSourcePort = Math.floor(Math.random() * span);
  for (let tries = 0; ; tries++) {
    const port = low + (nextSourcePort++ % span);
    // The port of a client connection to the same address and port, diverted to us and not
    // over: connecting from it would reach that connection's own socket on this host (its
    // reverse), not the service. The kernel cannot tell: the two are keyed the other way.
    if (clientConnections.has(tupleKey(from, port, to)) && tries < span) continue;
    try {
      return n.connectTcp(to.ip, to.port, from, true, o.mark, port);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if ((code !== "EADDRINUSE" && code !== "EADDRNOTAVAIL") || tries >= 64) throw error;
    }
  }
}

/** The fd of a connected socket to the service, or a rejection whose `code` names the cause. */
function connectService(to: Endpoint, from: string, o: ForwardOptions): Promise<number> {
  const n = native();
  const fd = openSocket(to, from, o);
  const now = n.connectStatus(fd);
  if (now === 0) return Promise.resolve(fd);
  if (now < 0) {
    n.close(fd);
    return Promise.reject(errnoError(-now));
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      n.cancelWait(fd, waiting);
      n.close(fd);
      reject(Object.assign(new Error("timed out"), { code: "ETIMEDOUT" }));
    }, o.connectTimeoutMs);
    const waiting = n.whenConnected(fd, (status) => {
      clearTimeout(timer);
      if (status === 0) return resolve(fd);
      n.close(fd);
      reject(errnoError(-status));
    });
  });
}
