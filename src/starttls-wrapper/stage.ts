// starttls-wrapper: STARTTLS for an unpatched plaintext server. The server (prog) runs on a
// socketpair; the wrapper forwards and snoops the dialogue (snoop.ts), advertises STARTTLS for
// the server, and on the client's upgrade command hands the client, byte for byte, to the TLS
// service (host port: `tcpserver --proxy ... tlsd prog`) or, in local mode, to tlsd in this
// process; either way a fresh prog behind TLS, whose greeting is swallowed. A client that
// declines TLS gets the server as it is (opportunistic), or nothing but refusals (-r).
import { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { DIALOGUES } from "../dialogue/index.ts";
import type { Dialogue } from "../dialogue/types.ts";
import { declines, refusals, upgrades } from "../metrics/catalog.ts";
import type { ProxyHeader, ResumeRecord } from "../proxy/index.ts";
import { noDelay } from "../tls/close-policy.ts";
import { stripTlsConfig } from "../tls/peer-env.ts";
import { connectionStream, exitStatus, releaseConnection } from "../ucspi/chain.ts";
import { copyEnv, tcpVar } from "../ucspi/env.ts";
import { UsageError, parseOrUsage } from "../ucspi/errors.ts";
import { native } from "../ucspi/native.ts";
import { oneWay, relay } from "../stream/relay.ts";
import { fdOfStream } from "../stream/fd-of-stream.ts";
import { resetStream } from "../stream/reset.ts";
import type { Connection, Stage, StageContext } from "../ucspi/stage.ts";
import {
  engineFd,
  failed,
  passReset,
  resetClient,
  serverRan,
  shown,
  tlsBehind,
  tlsdArgv,
} from "./client-first.ts";
import { connectService, handoverHeader, localHeader } from "./handover.ts";
import { USAGE, parseWrapperArgs } from "./options.ts";
import type { WrapperOptions } from "./options.ts";
import { Snooper } from "./snoop.ts";
import type { SnoopIo, StarttlsVerdict } from "./snoop.ts";
import { stageOptions } from "../ucspi/stage-options.ts";
import { Stopper } from "../ucspi/stop-signal.ts";

/** The status of a session the wrapper ended (as the binary paths': client-first.ts). */
const REFUSED = exitStatus(100);
/** The status of a session that the server's side broke (tcpforward's, for the same). */
const SERVER_FAILED = exitStatus(111);
/** How long the client's last bytes may take to go out before the connection is closed. */
const FLUSH_MS = 30_000;

type BinaryRun = (ctx: StageContext, options: WrapperOptions) => Promise<number>;

/** Protocols the line snooper does not fit (binary, or XMPP's XML stream), each a path of
 * its own. */
const BINARY: Record<string, (() => Promise<BinaryRun>) | undefined> = {
  postgres: async () => (await import("./postgres.ts")).runPostgres,
  ldap: async () => (await import("./ldap.ts")).runLdap,
  mysql: async () => (await import("./mysql.ts")).runMysql,
  xmpp: async () => (await import("./xmpp.ts")).runXmpp,
};

export const wrapperStage: Stage = {
  // Local mode does the TLS here, with tlsd: its certificates are loaded at tcpserver's start
  // too, before privileges go.
  async prepare(argv, env, warn) {
    const options = parseOrUsage(USAGE, () => parseWrapperArgs([...argv]));
    if (options.service) return;
    const { tlsdStage } = await import("../tlsd/stage.ts");
    await tlsdStage.prepare?.(["--", ...options.program], env, warn);
  },

  chainsAfter(argv) {
    return [parseWrapperArgs([...argv]).program];
  },

  async run(ctx) {
    const options = stageOptions(ctx.argv, USAGE, parseWrapperArgs);
    const binary = BINARY[options.protocol];
    if (binary) {
      if (options.service)
        throw new UsageError(`-p ${options.protocol}: local mode only (no host and port)`, USAGE);
      const status = await (await binary())(ctx, options);
      serverRan(ctx);
      return status;
    }
    const factory = DIALOGUES[options.protocol];
    if (!factory) throw new UsageError(`unknown protocol '${options.protocol}'`, USAGE);
    return new Wrapper(ctx, options, factory(options.policy)).run();
  },
};

class Wrapper {
  private readonly ctx: StageContext;
  private readonly options: WrapperOptions;
  private readonly dialogue: Dialogue;
  private readonly client: Duplex;
  /** The server's output (its socketpair end), and a writer of its own on a second fd: a
   * write that fails (the server exited) destroys only the writer, and what the server said
   * before it went is still read and passed on. */
  private readonly server: Socket;
  private readonly toServer: Socket;
  private readonly serverFd: number;
  /** Our end of the server's socket pair (the fd under `server`). */
  private readonly serverOwnFd: number;
  /** The server's end (its raw wait status), once it runs. */
  private serverDone: Promise<number> | undefined;
  /** The client's EOF has come. */
  private clientEnded = false;
  /** The client's connection failed (a reset). */
  private clientFailed = false;
  /** The server's output has ended: a session that ends after it ended with the server. */
  private serverOver = false;
  /** The server's side was reset (the stage behind, tcpforward, said so): its end is passed on
   * to the client as a reset. */
  private serverReset = false;
  /** The client's bytes while an upgrade is pending: none may come before the go-ahead. */
  private early: Buffer[] | undefined;
  private readonly letGo = new Stopper();
  private readonly snooper: Snooper;
  /** The server's output once it goes to the client as it comes (pump). */
  private serverOut: Promise<unknown> | undefined;
  /** The server's output has ended (or its socket was closed). */
  private readonly serverOutputEnded: Promise<void>;
  /** An upgrade under way (connecting to the TLS service). */
  private upgrading: Promise<boolean> | undefined;
  /** The TLS side, once the client is handed over: its end, and its status. */
  private handedOver: Promise<number> | undefined;
  private preTlsTimer: NodeJS.Timeout | undefined;
  /** --metrics: this session's protocol; whether it went on in plaintext (counted once). */
  private readonly counted: { protocol: string };
  private declined = false;
  /** The wrapper ended the session (a refusal, a limit, a pipelined command, a client gone
   * before its go-ahead): its status is ours, not that of the server it let go. */
  private endedHere = false;

  constructor(ctx: StageContext, options: WrapperOptions, dialogue: Dialogue) {
    this.ctx = ctx;
    this.options = options;
    this.dialogue = dialogue;
    this.client = connectionStream(ctx.connection);
    const [ours, theirs] = native().socketPair();
    this.serverFd = theirs;
    this.serverOwnFd = ours;
    this.server = new Socket({ fd: ours, readable: true, writable: false, allowHalfOpen: true });
    this.toServer = new Socket({
      fd: native().dup(ours),
      readable: false,
      writable: true,
      allowHalfOpen: true,
    });
    this.counted = { protocol: options.protocol };
    this.snooper = new Snooper(dialogue, this.io(), options);
    this.serverOutputEnded = new Promise((resolve) => {
      const over = () => {
        this.serverOver = true;
        resolve();
      };
      this.server.once("end", over);
      this.server.once("close", over);
    });
  }

  async run(): Promise<number> {
    const env = copyEnv(this.ctx.env);
    // The plaintext server never needs a key, nor to know where one is.
    stripTlsConfig(env);
    let spawned = false;
    const serverSide: Connection = { fd: this.serverFd, reset: () => (this.serverReset = true) };
    const serverDone = (this.serverDone = this.ctx.next(this.options.program, env, serverSide, {
      stop: this.letGo,
      onSpawn: () => {
        // The server has its own copy; ours would hide its end from us.
        spawned = true;
        native().close(this.serverFd);
      },
    }));
    this.listen();
    this.preTlsTimer = setTimeout(
      () => this.snooper.limit(`no STARTTLS within ${this.options.preTlsMs / 1000} s`),
      this.options.preTlsMs,
    );
    let status: number;
    try {
      // A server that was let go and does not end on SIGTERM gets SIGKILL from the chain.
      status = await serverDone;
    } catch (error) {
      // The server could not be run: nothing more to do for this client, and that is the one
      // line (a client on two pipes sees the destroy as an AbortError, no failure of its own).
      clearTimeout(this.preTlsTimer);
      this.snooper.phase = "closed";
      this.closeServer();
      this.client.destroy();
      throw error;
    } finally {
      if (!spawned) releaseConnection(serverSide);
    }
    clearTimeout(this.preTlsTimer);
    // An upgrade that was not handed over (the client left, or pipelined, before the
    // go-ahead) rejects: the snooper has ended the session already; nothing went wrong here.
    if (this.upgrading) await this.upgrading.catch(() => false);
    if (this.handedOver) return this.handedOver;
    // The server is done: what it said is passed on, then the client's side ends, whatever
    // the client still sends (as for a program on the socket itself). Its exit can be told
    // before its last bytes are read (221 to QUIT, then exit): its output is read to the end.
    await this.serverOutputEnded;
    if (this.serverOut) await this.serverOut;
    if (!this.client.destroyed) this.client.end();
    await written(this.client);
    this.closeServer();
    return this.endedHere ? REFUSED : status;
  }

  private closeServer(): void {
    this.server.destroy();
    this.toServer.destroy();
  }

  private listen(): void {
    const { client, server, toServer, snooper } = this;
    client.on("data", (chunk: Buffer) => {
      if (!this.early) return snooper.client(chunk);
      // Bytes before the go-ahead refuse the upgrade anyway: keep this chunk, read no more
      // (the kernel bounds the rest).
      this.early.push(chunk);
      client.pause();
    });
    server.on("data", (chunk: Buffer) => snooper.server(chunk));
    client.on("error", (error) => this.drop(error));
    server.on("error", () => server.destroy());
    toServer.on("error", () => toServer.destroy());
    // The client's end: the server gets it too (it answers QUIT, then ends). Also while an
    // upgrade waits for the replies to earlier commands: a client that has ended can do no
    // TLS (the upgrade ends the session when its turn comes), and a server that waits for
    // more input would hold the session till the pre-TLS limit.
    client.once("end", () => {
      this.clientEnded = true;
      if (snooper.phase === "snoop") toServer.end();
    });
    // The server's end, while snooping: what it said goes out, then the client's side ends.
    server.once("end", () => {
      if (snooper.phase !== "snoop") return;
      snooper.phase = "closed";
      client.write(snooper.serverEnded());
      if (this.serverReset) resetClient(this.ctx.connection);
      else client.end();
    });
  }

  /** The client's connection failed (a reset): let the server go. When that is what ends the
   * session (not a refusal of ours, nor the server's end, came first), one warning line says
   * so, and the status is ours. */
  private drop(error: unknown): void {
    if (this.snooper.phase === "tls") return;
    this.clientFailed = true;
    if (this.snooper.phase !== "closed" && !this.serverOver) {
      this.warn(failed(error));
      this.endedHere = true;
    }
    this.snooper.phase = "closed";
    this.letServerGo();
  }

  /** The plaintext server is done with: its unsent output goes nowhere, and it is stopped
   * (SIGTERM, then SIGKILL from the chain). */
  private letServerGo(): void {
    this.server.removeAllListeners("data");
    this.closeServer();
    this.letGo.stop();
  }

  private io(): SnoopIo {
    const { client, server, toServer } = this;
    return {
      toClient: (bytes) => client.write(bytes),
      toServer: (bytes) => toServer.write(bytes),
      pumpClient: (first) => {
        if (!this.declined) declines.inc(this.counted);
        this.declined = true;
        client.removeAllListeners("data");
        if (first.length > 0) toServer.write(first);
        // Bytes held behind a STARTTLS that the pre-TLS limit left without its go-ahead: the
        // session is plaintext now, and they are the client's next commands.
        for (const chunk of this.early ?? []) toServer.write(chunk);
        this.early = undefined;
        void oneWay(client, toServer);
      },
      pumpServer: (first) => {
        clearTimeout(this.preTlsTimer);
        server.removeAllListeners("data");
        if (first.length > 0) client.write(first);
        passReset(server, () => this.serverReset, this.ctx.connection);
        this.serverOut = oneWay(server, client);
      },
      // Held rather than paused: a paused stream would not tell the client's EOF.
      pauseClient: () => (this.early ??= []),
      resumeClient: () => {
        const early = this.early ?? [];
        this.early = undefined;
        client.resume();
        for (const chunk of early) this.snooper.client(chunk);
        if (this.clientEnded && this.snooper.phase === "snoop") toServer.end();
      },
      upgrade: (verdict) => {
        this.upgrading = this.upgrade(verdict);
        return this.upgrading;
      },
      close: () => {
        this.endedHere = true;
        client.end();
        this.letServerGo();
      },
      warn: (what) => this.warn(what),
      refused: () => refusals.inc(this.counted),
    };
  }

  private async upgrade(verdict: StarttlsVerdict): Promise<boolean> {
    const record: ResumeRecord = {
      protocol: this.dialogue.protocol,
      ...(this.dialogue.greetsAgainAfterTls ? {} : { swallow: "greeting" }),
      ...(this.dialogue.serverUpgrade?.() === false && { noUpgrade: true }),
    };
    const service = this.options.service;
    let tlsSide: Socket | undefined;
    if (service && !this.clientEnded) {
      try {
        tlsSide = await connectService(service.host, service.port, this.options.connectMs);
      } catch (error) {
        this.warn(`TLS service unavailable: ${(error as Error).message}`);
        return false;
      }
    }
    // A client that left, or spoke before its go-ahead, is not handed over: the session ends.
    const early = this.early ?? [];
    if (this.clientEnded || this.clientFailed || early.length > 0) {
      tlsSide?.destroy();
      // A failed connection has had its line (drop).
      if (this.clientFailed) throw new Error("not handed over");
      if (this.clientEnded) this.info("client left after STARTTLS, before the go-ahead");
      else {
        this.warn("command pipelined after STARTTLS");
        this.client.write(Buffer.from(verdict.pipelined, "latin1"));
      }
      throw new Error("not handed over");
    }
    // The pre-TLS limit ran out while connecting: no go-ahead after it (the snooper answers
    // as the limit wants).
    if (this.snooper.timedOut) {
      tlsSide?.destroy();
      return false;
    }
    tlsSide?.write(handoverHeader(this.ctx.env, record));
    // Committed: the go-ahead is the last plaintext byte the client gets, and the server's
    // unsent output goes nowhere.
    clearTimeout(this.preTlsTimer);
    this.client.write(Buffer.from(verdict.goAhead, "latin1"));
    upgrades.inc(this.counted);
    // From here on the client's bytes are TLS, for the service or our tlsd: never read here.
    this.client.removeAllListeners("data");
    this.early = undefined;
    // Until the relay or tlsd reads them (tlsd takes what was read already).
    if (!tlsSide) this.client.pause();
    const kept = !tlsSide && this.keptServer();
    if (!kept) this.letServerGo();
    this.info(
      service
        ? `STARTTLS, handed to ${service.host} port ${service.port}`
        : `STARTTLS${kept ? ", the same server behind TLS" : ""}`,
    );
    this.handedOver = tlsSide
      ? this.relayTo(tlsSide)
      : kept
        ? this.sameServerTls()
        : this.localTls(record);
    return true;
  }

  /** Remote: the client's bytes, TLS from the next one on, go to the service as they are. A
   * service that resets the connection (or whose connection fails) has the client's reset as
   * well, at once, not an end as if all were well: one warning line, status 111. */
  private async relayTo(tlsSide: Socket): Promise<number> {
    let failure: unknown;
    // Before the relay's own listener, which would end the client's side first.
    tlsSide.on("error", (error) => {
      failure ??= error;
      resetStream(this.client);
      tlsSide.destroy();
    });
    // TLS records from here on: each one out as it comes (see noDelay).
    noDelay(this.client);
    await relay(this.client, tlsSide);
    tlsSide.destroy();
    if (failure === undefined) return exitStatus(0);
    this.warn(failed(failure, "TLS service"));
    return SERVER_FAILED;
  }

  /** Local mode: our tlsd takes the client here, and runs a fresh server behind TLS. */
  private async localTls(record: ResumeRecord): Promise<number> {
    return tlsBehind(this.ctx, this.options, await this.tlsdClient(localHeader(record)));
  }

  /** The client as local mode's tlsd gets it: on the native engine the client's socket
   * itself, when nothing the client sent waits in our stream (nothing can follow the upgrade
   * command, and the go-ahead stopped our reading; fd-of-stream.ts), else the stream. At -v 2
   * tlsd says which TLS it runs. */
  private async tlsdClient(proxy?: ProxyHeader): Promise<Connection> {
    const argv = tlsdArgv(this.options, this.options.program);
    const fd = await engineFd(this.ctx, argv, this.client);
    const header = proxy && { proxy };
    return fd === undefined ? { stream: this.client, ...header } : { fd, ...header };
  }

  /** -k: whether the server goes on behind TLS: it can when the wrapper saw its capabilities
   * and no upgrade of its own in them (a server that offers STARTTLS itself gets a fresh one
   * behind tlsd, whose filter hides it). What it says meanwhile waits in its stream. */
  private keptServer(): boolean {
    this.server.removeAllListeners("data");
    this.server.pause();
    return this.options.keepServer && this.dialogue.serverUpgrade?.() === false;
  }

  /** -k: our tlsd takes the client, and the server that answered it in plaintext goes on
   * behind TLS: the engine relays to its pair directly (Connection.relayTo), node:tls through
   * the wrapper's sockets. The server is told nothing of TLS. */
  private async sameServerTls(): Promise<number> {
    const next: StageContext["next"] = (_argv, _env, connection) => this.behindTls(connection);
    try {
      return await tlsBehind({ ...this.ctx, next }, this.options, await this.tlsdClient());
    } finally {
      // A handshake that failed never got to behindTls.
      this.releaseServer();
    }
  }

  /** tlsd's next stage under -k: the running server, over `connection` (TLS), until both
   * ends are done; its status. The engine takes the server's pair itself when nothing the
   * server said waits in its stream (fd-of-stream.ts). */
  private async behindTls(connection: Connection): Promise<number> {
    const fd =
      connection.relayTo && this.server.readableLength === 0
        ? fdOfStream(this.server, this.serverOwnFd)
        : undefined;
    if (connection.relayTo && fd !== undefined) {
      this.toServer.destroy();
      await connection.relayTo(fd);
    } else {
      const tls = connectionStream(connection);
      await Promise.allSettled([oneWay(tls, this.toServer), oneWay(this.server, tls)]);
    }
    this.releaseServer();
    return (await this.serverDone) ?? exitStatus(0);
  }

  /** -k, the session over: the server reads its EOF (once), and one that does not end on it
   * is stopped after a grace. */
  private releaseServer(): void {
    if (this.server.destroyed && this.toServer.destroyed) return;
    this.closeServer();
    const stop = setTimeout(() => this.letGo.stop(), SERVER_GRACE_MS);
    const ended = () => clearTimeout(stop);
    void this.serverDone?.then(ended, ended);
  }

  private warn(what: string): void {
    if (this.options.verbosity < 1) return;
    this.ctx.log(`starttls-wrapper: warning: ${this.peer()}: ${shown(what, 200)}\n`);
  }

  private info(what: string): void {
    if (this.options.verbosity < 2) return;
    this.ctx.log(`starttls-wrapper: info: ${this.peer()}: ${shown(what, 200)}\n`);
  }

  private peer(): string {
    return tcpVar(this.ctx.env, "REMOTEIP") ?? "unknown";
  }
}

/** -k: how long the server has to end on its EOF once the TLS session is over. */
const SERVER_GRACE_MS = 5_000;

/** Resolves once what was written to `stream` is out (or it broke), waiting at most
 * FLUSH_MS. */
function written(stream: Duplex): Promise<void> {
  if (stream.writableFinished || stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, FLUSH_MS);
    function done() {
      clearTimeout(timer);
      resolve();
    }
    stream.once("finish", done);
    stream.once("close", done);
    stream.once("error", done);
  });
}
