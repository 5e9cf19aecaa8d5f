// tcpforward: the last stage of a chain that sends the client on to a TCP service: a
// connection to host:port (by default the address and port the client asked for, which
// tcpserver --transparent or --redirected put in TCPLOCALIP/TCPLOCALPORT), and a relay both
// ways with half-close. The service learns the client from its own accept() (--transparent:
// the connection comes from the client's address), from a PROXY v2 header (--proxy), or not
// at all. It never connects anywhere in place of the address asked for: a service bound to
// loopback only stays out of reach, as it would be without us.
import { lookup } from "node:dns/promises";
import { isIP, Socket } from "node:net";
import { constants } from "node:os";
import { envProxyHeader } from "../proxy/from-env.ts";
import { unmapIPv4 } from "../ucspi/address.ts";
import { connectionStream, exitStatus } from "../ucspi/chain.ts";
import { clientPrefix, tcpVar } from "../ucspi/env.ts";
import type { Env } from "../ucspi/env.ts";
import { FatalError, causeText, parseOrUsage } from "../ucspi/errors.ts";
import { native } from "../ucspi/native.ts";
import { relay } from "../ucspi/relay.ts";
import type { Connection, Stage } from "../ucspi/stage.ts";
import { USAGE, parseForwardArgs } from "./options.ts";
import type { ForwardOptions } from "./options.ts";

export const forwardStage: Stage = {
  prepare(argv) {
    parseOrUsage(USAGE, () => parseForwardArgs([...argv]));
  },

  async run(ctx) {
    const o = parseOrUsage(USAGE, () => parseForwardArgs(ctx.argv.slice(1)));
    const who = clientPrefix(ctx.env);
    const to = await destination(o, ctx.env);
    const from = o.transparent ? clientAddress(ctx.env) : (o.localIp ?? "");
    let service: Socket;
    try {
      service = await connectService(to, from, o);
    } catch (error) {
      // As the service itself would have answered: the client's connection is reset.
      resetClient(ctx.connection);
      throw new FatalError(
        `${who}unable to connect to ${to.ip} port ${to.port}: ${causeText(error)}`,
        111,
      );
    }
    if (o.verbosity >= 2)
      ctx.log(`tcpforward: info: ${who}connected to ${to.ip} port ${to.port}\n`);
    if (o.proxy) service.write(envProxyHeader(ctx.env));
    const client = connectionStream(ctx.connection);
    // A reset on either side is passed on at once, as a reset, and named: the relay alone
    // would take it for an end and half-close the other side as if all were well.
    let broken: string | undefined;
    client.once("error", (error) => {
      broken ??= `the client's connection broke: ${causeText(error)}`;
      service.resetAndDestroy();
    });
    service.once("error", (error) => {
      broken ??= `the connection to ${to.ip} port ${to.port} broke: ${causeText(error)}`;
      resetClient(ctx.connection);
      client.destroy();
    });
    await relay(client, service);
    service.destroy();
    if (broken !== undefined) throw new FatalError(`${who}${broken}`, 111);
    return exitStatus(0);
  },
};

interface Endpoint {
  ip: string;
  port: number;
}

/** host:port as given (a name: its first address), else the one the client asked for. */
async function destination(o: ForwardOptions, env: Readonly<Env>): Promise<Endpoint> {
  if (o.host !== undefined && o.port !== undefined) {
    if (isIP(o.host)) return { ip: unmapIPv4(o.host), port: o.port };
    try {
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
  return { ip: unmapIPv4(ip), port };
}

/** The client's address, for full transparency. */
function clientAddress(env: Readonly<Env>): string {
  const ip = tcpVar(env, "REMOTEIP");
  if (!ip || !isIP(ip))
    throw new FatalError("--transparent: no client address (TCPREMOTEIP) to connect from", 100);
  return unmapIPv4(ip);
}

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** A connected socket to the service, or a rejection whose `code` names the cause. */
function connectService(to: Endpoint, from: string, o: ForwardOptions): Promise<Socket> {
  const n = native();
  const fd = n.connectTcp(to.ip, to.port, from, o.transparent, o.mark);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      waiting.cancel();
      n.close(fd);
      reject(Object.assign(new Error("timed out"), { code: "ETIMEDOUT" }));
    }, o.connectTimeoutMs);
    const waiting = n.whenConnected(fd, (status) => {
      clearTimeout(timer);
      if (status === 0) {
        resolve(new Socket({ fd, readable: true, writable: true, allowHalfOpen: true }));
        return;
      }
      n.close(fd);
      const code = ERRNO_NAMES.get(-status) ?? "EIO";
      reject(Object.assign(new Error(code), { code }));
    });
  });
}

/** The client's connection is reset rather than ended, where it is a socket of ours. */
function resetClient(connection: Connection): void {
  if (connection.fd !== undefined) native().abortOnClose(connection.fd);
  else if (connection.stream instanceof Socket) connection.stream.resetAndDestroy();
  else connection.stream?.destroy();
}
