// The accept loop and what tcpserver does for each connection, in djb's order: banner,
// host names and ident, rules, then the program (spawned on the socket, or in-process).
import { writeSync } from "node:fs";
import { shownIp } from "../net/ip.ts";
import { connectionVarNames, eachConnectionVar } from "../ucspi/address.ts";
import { exitStatus, releaseConnection, runChain } from "../ucspi/chain.ts";
import { refuseSharedPrivileges } from "../ucspi/privileges.ts";
import { copyEnv, putVar, setVar, withNames } from "../ucspi/env.ts";
import type { Env } from "../ucspi/env.ts";
import { causeText } from "../ucspi/errors.ts";
import {
  ACCEPT_KILL_IP_OPTIONS,
  ACCEPT_NODELAY,
  ACCEPT_ORIGINAL_DST,
  native,
} from "../ucspi/native.ts";
import type { Acceptor } from "../ucspi/native.ts";
import type { Connection } from "../ucspi/stage.ts";
import {
  accepted,
  activeConnections,
  connectionLimit,
  denied,
  dropped,
  limitFullSeconds,
  programExits,
  refusedPerIp,
  spawnFailures,
} from "../metrics/catalog.ts";
import { Running } from "./drain.ts";
import { IdleMemory } from "./idle-memory.ts";
import type { Endpoints, ServerLog } from "./log.ts";
import { lookUp, needsLookups, plainEndpoints } from "./lookups.ts";
import { rulesVerdict } from "./rules-verdict.ts";
import { Slots } from "./slots.ts";
import { statusLabel } from "./status-label.ts";
import type { ServerOptions } from "./options.ts";
import { isTrusted, readProxyHeader, trustedProxies } from "./proxy-header.ts";
import { withProxiedTls } from "./proxy-tls.ts";
import { secondsAsTimerMs } from "../ucspi/timers.ts";
import type { ProxyHeader } from "../proxy/index.ts";

/** Connections that never get a process of their own (denied, dropped, served in-process) are
 * logged with ids above Linux's largest pid_max (2^22), so they never collide with a real pid. */
const FIRST_CONNECTION_ID = 4_194_305;

const DENY_STATUS = exitStatus(100);
const DROP_STATUS = exitStatus(111);

// --metrics: why a connection was dropped before its program ran.
const DROPPED_RULES = { reason: "rules" };
const DROPPED_PROXY = { reason: "proxy" };
const DROPPED_STOPPING = { reason: "stopping" };

export interface ServerDeps {
  options: ServerOptions;
  log: ServerLog;
  /** tcpserver's own environment, the base of every child's. */
  env: Readonly<Env>;
  /** Raw writes to fd 2, for warnings from in-process stages. */
  stderr: (line: string) => void;
  /** Whether the listener is IPv6 (Debian's ucspi-tcp-ipv6 environment then). */
  listenerIsV6: boolean;
}

export interface Server {
  /** Stops accepting; resolves once no connection is served in this process any more, or once
   * the ones still served in it `seconds` later have been ended (spawned programs go on). */
  close(seconds: number): Promise<void>;
  /** --drain: stops accepting; resolves once every connection (spawned programs too) has
   * ended, or once the ones still open `seconds` later have been ended. */
  drain(seconds: number): Promise<void>;
  /** Connections currently served (spawned children and in-process ones). */
  readonly active: number;
}

interface Accepted {
  fd: number;
  localIp: string;
  localPort: number;
  remoteIp: string;
  remotePort: number;
  /** The transport peer, which per-IP limits count (the proxy itself, with --proxy). */
  peerIp: string;
  /** A link-local peer's interface (TCP6INTERFACE): without it the address leads nowhere. */
  interfaceName: string | undefined;
  proxy?: ProxyHeader;
}

const PROXY_HEADER_TIMEOUT_MS = 10_000;
/** After SIGTERM's bound, how long the connections ended then have to be over: a spawned
 * program gets SIGKILL 2 s after its SIGTERM. A stage that still holds on (a splice waiting on
 * its service) is not waited for beyond this. */
const END_GRACE_MS = 3_000;

/** Resolves once `whenOver` calls back, or END_GRACE_MS after `atBound` ran `seconds` from now
 * (what it ended may not end: a stage that holds on is not waited for). */
function bounded(
  seconds: number,
  whenOver: (done: () => void) => void,
  atBound: () => void,
): Promise<void> {
  return new Promise((resolve) => {
    let grace: NodeJS.Timeout | undefined;
    const bound = setTimeout(() => {
      atBound();
      grace = setTimeout(done, END_GRACE_MS);
    }, secondsAsTimerMs(seconds));
    function done() {
      clearTimeout(bound);
      clearTimeout(grace);
      resolve();
    }
    whenOver(done);
  });
}

export function serve(listenFd: number, deps: ServerDeps): Server {
  const { options, log } = deps;
  // Shaped once, with every connection variable a property (unset until a connection sets
  // it): the copy for each connection is then a clone of a fast-mode object, and setting its
  // variables changes values, not its shape (see Env).
  const baseEnv = withNames(deps.env, connectionVarNames());
  let inProcess = 0;
  let nextId = FIRST_CONNECTION_ID;
  let closing = false;
  let drained: (() => void) | undefined;
  // What is served, to end it at SIGTERM's bound.
  const running = new Running();
  let allEnded: (() => void) | undefined;

  const flags =
    (options.noDelay ? ACCEPT_NODELAY : 0) |
    (options.killIpOptions ? ACCEPT_KILL_IP_OPTIONS : 0) |
    (options.originalDestination ? ACCEPT_ORIGINAL_DST : 0);
  const trusted = options.proxy ? trustedProxies(options.proxyFrom) : undefined;
  const acceptor: Acceptor = native().accept(listenFd, flags, onAccept);

  const slots = new Slots(acceptor, options.limit, options.perIpLimit);
  const idleMemory = new IdleMemory(() => slots.active === 0);
  log.status(0, options.limit);
  slots.update();
  activeConnections.observe(() => [{ labels: {}, value: slots.active }]);
  connectionLimit.observe(() => [{ labels: {}, value: options.limit }]);
  limitFullSeconds.observe(() => [{ labels: {}, value: slots.fullSeconds() }]);

  function onAccept(
    fd: number,
    localIp?: string,
    localPort?: number,
    remoteIp?: string,
    remotePort?: number,
    interfaceName?: string,
  ) {
    if (fd < 0) {
      // Out of fds or similar: djb's loop would simply retry; wait a little instead of spinning.
      slots.backOff(100);
      return;
    }
    accepted.inc();
    idleMemory.busy();
    const c: Accepted = {
      fd,
      localIp: localIp ?? "",
      localPort: localPort ?? 0,
      remoteIp: remoteIp ?? "",
      remotePort: remotePort ?? 0,
      peerIp: remoteIp ?? "",
      interfaceName: interfaceName || undefined,
    };
    const slot = slots.take(c.peerIp);
    if (!slot.taken) {
      refusedPerIp.inc();
      log.reject(c.remoteIp, slot.count, slot.limit);
      native().close(fd);
      return;
    }
    log.status(slots.active, options.limit);
    if (trusted && isTrusted(trusted, c.peerIp)) {
      readProxyHeader(fd, PROXY_HEADER_TIMEOUT_MS).then((result) => {
        if ("error" in result) {
          const id = nextId++;
          log.accepted(id, c.remoteIp);
          log.warning(
            `dropping connection from ${shownIp(c.remoteIp, options.v6Env)}: ${result.error}`,
          );
          dropped.inc(DROPPED_PROXY);
          return finish(c, id, DROP_STATUS);
        }
        const { header } = result;
        c.proxy = header;
        if (header.command === "proxy" && header.source && header.destination) {
          c.remoteIp = header.source.ip;
          c.remotePort = header.source.port;
          c.localIp = header.destination.ip;
          c.localPort = header.destination.port;
          c.interfaceName = undefined;
        }
        greetAndLookUp(c);
      });
      return;
    }
    greetAndLookUp(c);
  }

  function greetAndLookUp(c: Accepted) {
    if (options.banner !== undefined) writeBanner(c.fd, options.banner);
    if (needsLookups(options)) {
      lookUp(c, options).then(
        (ends) => decide(c, ends),
        () => decide(c, plainEndpoints(c, options)),
      );
    } else {
      decide(c, plainEndpoints(c, options));
    }
  }

  function decide(c: Accepted, ends: Endpoints) {
    if (running.ended) {
      // Past SIGTERM's bound: a connection still in its lookups is not served any more.
      const id = nextId++;
      log.accepted(id, ends.remoteIp);
      log.warning("dropping connection, tcpserver is stopping");
      dropped.inc(DROPPED_STOPPING);
      return finish(c, id, DROP_STATUS);
    }
    let env = copyEnv(baseEnv);
    eachConnectionVar(
      {
        localIp: ends.localIp,
        localPort: ends.localPort,
        remoteIp: ends.remoteIp,
        remotePort: ends.remotePort,
        localHost: ends.localHost,
        remoteHost: ends.remoteHost,
        remoteInfo: ends.remoteInfo,
        listenerIsV6: deps.listenerIsV6 || c.proxy?.family === "tcp6",
        interfaceName: c.interfaceName,
        v6Form: options.v6Env,
      },
      (name, value) => putVar(env, name, value),
    );
    const verdict = rulesVerdict(options, ends);
    if (verdict.kind !== "allow") {
      const id = nextId++;
      log.accepted(id, ends.remoteIp);
      if (verdict.kind === "deny") {
        log.verdict("deny", id, ends);
        denied.inc();
        return finish(c, id, DENY_STATUS);
      }
      log.warning(`dropping connection, ${verdict.why}`);
      dropped.inc(DROPPED_RULES);
      return finish(c, id, DROP_STATUS);
    }
    // What the proxy said of the client's TLS, before the rules' own variables.
    if (c.proxy) env = withProxiedTls(env, c.proxy);
    for (const [name, value] of verdict.env) setVar(env, name, value);
    start(c, ends, env);
  }

  function start(c: Accepted, ends: Endpoints, env: Env) {
    const connection: Connection = c.proxy ? { fd: c.fd, proxy: c.proxy } : { fd: c.fd };
    const served = running.add(connection);
    let id = -1;
    let spawned = false;
    // posix_spawn runs in the threadpool: until it returns, the socket is still ours (it is
    // counted in inProcess, so close() waits for the child to have its copy).
    let spawning = false;
    const announce = (pid: number) => {
      id = pid;
      spawned = true;
      served.spawned = true;
      log.accepted(id, ends.remoteIp);
      log.verdict("ok", id, ends);
      // The child has its own copy of the socket now.
      native().close(c.fd);
      if (spawning) {
        spawning = false;
        inProcess--;
        if (closing && inProcess === 0) drained?.();
      }
    };
    let chain: Promise<number>;
    try {
      chain = runChain(options.program, env, connection, {
        side: "server",
        log: deps.stderr,
        closeOthers: true,
        dropPrivileges: refuseSharedPrivileges,
        onSpawn: announce,
        asyncSpawn: true,
        warn: log.warning,
        onSpawning: () => {
          spawning = true;
        },
        onRunFailure: () => spawnFailures.inc(),
        stop: served.stop,
      });
    } catch (error) {
      chain = Promise.reject(error);
    }
    inProcess++;
    if (!spawning) {
      // Not spawning: one of our stages runs here, or the program failed to run.
      id = nextId++;
      log.accepted(id, ends.remoteIp);
      log.verdict("ok", id, ends);
    }
    chain.then(
      (status) => {
        running.remove(served);
        if (!spawned) releaseInProcess(connection);
        if (programExits.enabled) programExits.inc({ status: statusLabel(status) });
        finish(c, id, status, false);
      },
      (error: unknown) => {
        if (spawning) {
          // posix_spawn failed: logged as a connection that got no process.
          spawning = false;
          id = nextId++;
          log.accepted(id, ends.remoteIp);
          log.verdict("ok", id, ends);
        }
        running.remove(served);
        if (!spawned) releaseInProcess(connection);
        log.warning(
          `dropping connection, unable to run ${options.program[0]}: ${causeText(error)}`,
        );
        finish(c, id, DROP_STATUS, false);
      },
    );
  }

  function releaseInProcess(connection: Connection) {
    inProcess--;
    releaseConnection(connection);
  }

  function finish(c: Accepted, id: number, status: number, closeFd = true) {
    if (closeFd) native().close(c.fd);
    log.end(id, status);
    slots.give(c.peerIp);
    log.status(slots.active, options.limit);
    if (slots.active === 0) idleMemory.quiet();
    if (closing && inProcess === 0) drained?.();
    if (closing && slots.active === 0) allEnded?.();
  }

  return {
    get active() {
      return slots.active;
    },
    close(seconds) {
      closing = true;
      slots.close();
      if (inProcess === 0) return Promise.resolve();
      log.drain("stop", inProcess, seconds);
      return bounded(
        seconds,
        (done) => (drained = done),
        () => {
          log.drainTimeout("stop", inProcess, seconds);
          running.endInProcess();
        },
      );
    },
    drain(seconds) {
      closing = true;
      slots.close();
      log.drain("drain", slots.active, seconds);
      if (slots.active === 0) return Promise.resolve();
      return bounded(
        seconds,
        (done) => (allEnded = done),
        () => {
          log.drainTimeout("drain", slots.active, seconds);
          running.endAll();
        },
      );
    },
  };
}

function writeBanner(fd: number, banner: string) {
  try {
    writeSync(fd, Buffer.from(banner, "latin1"));
  } catch {
    // The client went away already: the program will see that too.
  }
}
