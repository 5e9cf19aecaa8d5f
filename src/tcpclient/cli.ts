// tcpclient: connect, then run the program with the socket on fds 6 and 7. The only file of
// tcpclient that touches process globals.
import { connectionEnv, parseClientHost, parsePort, withInterface } from "../ucspi/address.ts";
import { runChain } from "../ucspi/chain.ts";
import { dropOwnPrivileges } from "../ucspi/privileges.ts";
import { hostAddresses, reverseName } from "../net/dns.ts";
import { helpAsked } from "../cli/help.ts";
import { applyEnv, startEnv } from "../ucspi/env.ts";
import { FatalError, causeText } from "../ucspi/errors.ts";
import { identQuery } from "../net/ident.ts";
import { passOnStatus, programArgs, reportError, writeStderr } from "../cli/main.ts";
import { connectInTurn, socketFd } from "./connect.ts";
import { USAGE, parseClientArgs } from "./options.ts";
import type { ClientOptions } from "./options.ts";

const DNS_TIMEOUT_MS = 30_000;
/** djb's tcpclient is its program once connected: every signal reaches the program. These are
 * passed on to a spawned one; with none (an in-process stage), tcpclient takes the signal's
 * default action, as that program would. */
const FORWARDED: NodeJS.Signals[] = [
  "SIGTERM",
  "SIGHUP",
  "SIGINT",
  "SIGQUIT",
  "SIGUSR1",
  "SIGUSR2",
  "SIGALRM",
];

async function main(): Promise<number> {
  const args = programArgs();
  if (helpAsked("tcpclient", args, USAGE)) return 0;
  const options = parseClientArgs(args);
  const addresses = await addressesOf(options);
  const port = portNumber(options.port);
  const socket = await connectInTurn(
    {
      addresses,
      port,
      localIp: options.localIp && withInterface(options.localIp, options.interfaceName),
      localPort: options.localPort || undefined,
      timeoutsMs: options.connectTimeoutsMs,
      noDelay: options.noDelay,
    },
    (message) => {
      if (options.verbosity >= 1) writeStderr(`tcpclient: ${message}\n`);
    },
  );
  if (!socket) return 111;
  const local = { ip: socket.localAddress ?? "", port: socket.localPort ?? 0 };
  const remote = { ip: socket.remoteAddress ?? "", port: socket.remotePort ?? 0 };
  if (options.verbosity >= 2)
    writeStderr(`tcpclient: connected to ${remote.ip} port ${remote.port}\n`);

  const [localHost, remoteHost, remoteInfo] = await Promise.all([
    options.localName ?? reverseName(local.ip, DNS_TIMEOUT_MS).then((n) => n ?? ""),
    options.remoteHostLookup
      ? reverseName(remote.ip, DNS_TIMEOUT_MS).then((n) => n ?? "")
      : undefined,
    options.ident
      ? identQuery({
          localIp: local.ip,
          localPort: local.port,
          remoteIp: remote.ip,
          remotePort: remote.port,
          timeoutMs: options.identTimeoutMs,
          djbCompat: true,
        })
      : undefined,
  ]);
  const env = startEnv(process.env);
  applyEnv(
    env,
    connectionEnv({
      localIp: local.ip,
      localPort: local.port,
      remoteIp: remote.ip,
      remotePort: remote.port,
      localHost,
      remoteHost,
      remoteInfo,
      listenerIsV6: false,
      role: "client",
      v6Form: options.v6Env,
    }),
  );

  // The server's name as the user gave it, for tlsc to verify (never the reverse name, which
  // whoever runs the address's reverse zone chooses).
  env["TCPCLIENT_HOST"] = hostAsGiven(options.host);

  const fd = socketFd(socket);
  // The spawned program's pid; -1 once it has ended (its status is about to be passed on).
  let child = 0;
  const passOn = (signal: NodeJS.Signals) => {
    if (child === -1) return;
    if (child > 0) {
      try {
        process.kill(child, signal);
      } catch {
        // Ended already, not yet reaped: its status is on its way.
      }
      return;
    }
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
  };
  for (const signal of FORWARDED) process.on(signal, passOn);
  let status: number;
  try {
    status = await runChain(
      options.program,
      env,
      { fd, stream: socket },
      {
        side: "client",
        log: writeStderr,
        closeOthers: false,
        dropPrivileges: dropOwnPrivileges,
        onSpawn: (pid) => {
          child = pid;
          // The program has its own copy of the socket now.
          socket.destroy();
        },
      },
    );
  } catch (error) {
    throw new FatalError(`unable to run ${options.program[0]}: ${causeText(error)}`);
  }
  if (child > 0) child = -1;
  socket.destroy();
  return passOnStatus(status);
}

async function addressesOf(options: ClientOptions): Promise<string[]> {
  const wanted = await hostAddresses(parseClientHost(options.host), options.ipv4Only);
  if (wanted.length === 0) throw new FatalError(`no IP address for ${options.host}`);
  return wanted.map((ip) => withInterface(ip, options.interfaceName));
}

/** A name lowercased without its root dot, an address as parseClientHost reads it. */
function hostAsGiven(host: string): string {
  const parsed = parseClientHost(host);
  return typeof parsed === "string" ? parsed : parsed.name.toLowerCase().replace(/\.$/, "");
}

function portNumber(text: string): number {
  return parsePort(text);
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.exitCode = reportError("tcpclient", error, writeStderr, USAGE);
  },
);
