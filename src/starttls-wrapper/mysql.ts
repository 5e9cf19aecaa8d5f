// starttls-wrapper -p mysql: TLS for a MySQL or MariaDB server that has none. The server
// speaks first: its greeting goes to the client with CLIENT_SSL added. A client that answers
// with an SSLRequest gets the TLS handshake here (tlsd in this process); its
// HandshakeResponse41, inside TLS, goes to the server as if it had come first (CLIENT_SSL
// cleared), and the sequence numbers of every packet of the connection phase are moved by one
// (the server never saw the SSLRequest) until the server's OK or ERR; from then on the bytes
// are relayed as they are. An authentication that would send the password in clear over the
// link behind the wrapper (mysql_clear_password, PAM's dialog, sha256_password,
// caching_sha2_password's full authentication) is refused with an ERR, never relayed. A
// client that answers without TLS goes through untouched (opportunistic) or gets MySQL's own
// "insecure transport" ERR (-r).
import type { Socket } from "node:net";
import type { Duplex, Readable } from "node:stream";
import {
  MAX_PACKET,
  advertiseTls,
  clientAsksTls,
  errPacket,
  loginStep,
  readPacket,
  serverStep,
  withoutTlsFlag,
  writePacket,
} from "../dialogue/mysql.ts";
import type { Packet } from "../dialogue/mysql.ts";
import { connectionStream, exitStatus } from "../ucspi/chain.ts";
import { causeText } from "../ucspi/errors.ts";
import { peekBytes } from "../stream/peek.ts";
import { relay } from "../stream/relay.ts";
import type { Connection, StageContext } from "../ucspi/stage.ts";
import {
  REFUSED,
  count,
  endWith,
  failed,
  failures,
  logger,
  passReset,
  refuse,
  resetClient,
  send,
  serverRan,
  shown,
  startServer,
  take,
  tlsdArgv,
} from "./client-first.ts";
import type { WrapperOptions } from "./options.ts";
import { Stopper } from "../ucspi/stop-signal.ts";

export async function runMysql(ctx: StageContext, options: WrapperOptions): Promise<number> {
  const { warn, info } = logger(ctx, options);
  const { server, done: serverDone, letGo, wasReset, failedStatus } = startServer(ctx, options);
  const serverFailed = () => failedStatus() !== undefined;
  // Until the client's choice its bytes are looked at (peek.ts), and only its answer to the
  // greeting is taken: the ClientHello a client sends right behind its SSLRequest stays in the
  // socket, which tlsd's native engine takes as it is (a stream would have read it already).
  let connection = ctx.connection;
  // The session is over: the server is let go as the other paths let theirs go, not awaited
  // until it leaves by itself (one that does not read its input would hold the slot). A
  // client that is still a bare fd is closed by the chain once this stage returns.
  const end = async (status: number) => {
    connection.stream?.destroy();
    server.destroy();
    letGo.stop();
    await serverDone.catch(() => undefined);
    return status;
  };
  const fromServer = new PacketReader(server, options.preTlsMs);
  // The client gone (`when`): an end is said at -v 2, a failed connection (a reset) warned.
  const gone = (reason: string, when: string) => {
    if (reason === "closed") info(`the client left ${when}`);
    else warn(`${failed(reason)} ${when}`);
    return end(REFUSED);
  };
  // Without TLS from here on (`first` to the client before the rest): the server's status,
  // unless a reset of the client ended it.
  const plain = async (first?: Buffer) => {
    const client = connectionStream(connection);
    client.on("error", () => {});
    const failure = failures(client, server, warn);
    if (first) client.write(first);
    // A reset of the server's side reaches the client as a reset.
    passReset(server, wasReset, ctx.connection);
    return failure.status(await pump(client, server, fromServer, serverDone));
  };
  // The client has chosen TLS: a limit that runs out from here on is not a pre-TLS one.
  let upgraded = false;
  try {
    // A client that leaves before the server has greeted ends the session then, not at the
    // pre-TLS limit (its slot and the server would be held till then): the wrapper ends it,
    // and lets the server go, as when the client leaves before its login.
    const greetingWait = fromServer.next("greeting from the server");
    greetingWait.catch(() => {});
    const left = await leavesBefore(connection, greetingWait, options.preTlsMs);
    connection = left.connection;
    if (left.reason !== undefined) return await gone(left.reason, "before the server's greeting");
    const greeting = await greetingWait;
    const advertised = advertiseTls(greeting.payload);
    if (!advertised) {
      // Not a greeting to change (an ERR such as "too many connections"): as it is.
      return await plain(writePacket(greeting.seq, greeting.payload));
    }
    const unsent = send(connection, writePacket(greeting.seq, advertised.payload));
    if (unsent) return await gone(causeText(unsent), "before its login or SSLRequest");
    // A client that leaves here (its login or SSLRequest never comes) is not a failure of
    // this side: said as the other paths say it, with their status.
    const looked = await nextPacket(connection, options.preTlsMs, "login or SSLRequest");
    connection = looked.connection;
    if ("gone" in looked) return await gone(looked.gone, "before its login or SSLRequest");
    const answer = looked.packet;
    if (!clientAsksTls(answer.payload)) {
      if (options.policy === "require") {
        warn("a login without TLS: refused (-r)");
        count("refusal", options);
        const insecure = errPacket(
          3159,
          "HY000",
          "Connections using insecure transport are prohibited (TLS is required)",
        );
        await refuse(connection, writePacket(answer.seq + 1, insecure));
        return await end(REFUSED);
      }
      info("a login without TLS");
      count("decline", options);
      // The login, only looked at, reaches the server as it is.
      return await plain();
    }
    take(connection, looked.size);
    info("SSLRequest: TLS");
    count("upgrade", options);
    upgraded = true;
    const { tlsdStage } = await import("../tlsd/stage.ts");
    const status = await tlsdStage.run({
      ...ctx,
      argv: tlsdArgv(options, ["mysql"]),
      connection,
      next: async (_argv, _env, inner: Connection) => {
        connectionStream(inner).on("error", () => {});
        return behindTls(
          inner,
          { server, fromServer, done: serverDone, serverFailed },
          {
            warn,
            info,
          },
        );
      },
    });
    return await end(status);
  } catch (error) {
    if (error instanceof Silent) {
      // The pre-TLS limit (-t) ran out before the client's choice (the server's greeting, or
      // the client's answer to it, did not come): opportunistic, the session goes on as it
      // is, all still to come unread, as past the line protocols' limits (a greeting that
      // comes late reaches the client without CLIENT_SSL); with -r it ends here.
      if (!upgraded && options.policy === "opportunistic") {
        info(`${error.message}: plaintext`);
        count("decline", options);
        return plain();
      }
      warn(error.message);
      if (!upgraded) count("refusal", options);
      return end(REFUSED);
    }
    // A server that failed under it: its status, and its own line (a reset passed on).
    if (serverFailed()) {
      if (!upgraded && wasReset()) resetClient(ctx.connection);
      return end(failedStatus() ?? exitStatus(111));
    }
    const status = await end(exitStatus(111));
    // A server that could not be run broke it off: its failure is the one line.
    serverRan(ctx);
    warn(`the connection phase broke off: ${causeText(error)}`);
    return status;
  }
}

/** Whether the client leaves (reason: its end, "closed", or how its connection failed) before
 * `wait` is over, looked at without taking a byte: also a client that sent something first
 * (its answer, early), as long as what it sent fits a packet. The connection from then on. */
async function leavesBefore(
  connection: Connection,
  wait: Promise<unknown>,
  limitMs: number,
): Promise<{ reason?: string; connection: Connection }> {
  const stop = new Stopper();
  // Never enough: the look goes on until the client's end, the stop, or the bound.
  const peeked = peekBytes(
    connection,
    { silenceMs: limitMs, maxBytes: MAX_PACKET + 4, stop },
    (bytes) => bytes.length + 1,
  );
  const over = wait.then(
    () => undefined,
    () => undefined,
  );
  const reason = await Promise.race([
    over,
    peeked.then(({ look }) =>
      look.kind === "closed" || (look.kind === "unfinished" && look.reason !== "timed out")
        ? look.reason
        : over,
    ),
  ]);
  stop.stop();
  return { reason, connection: (await peeked).connection };
}

/** The client's next packet, peeked whole (`size` bytes, which the caller takes or leaves in
 * the connection), or why none came: the client left (`gone`), the limit ran out (Silent), or
 * what came is no packet (an error). The connection from then on. */
async function nextPacket(
  connection: Connection,
  limitMs: number,
  what: string,
): Promise<
  | { packet: Packet; size: number; connection: Connection }
  | { gone: string; connection: Connection }
> {
  const peeked = await peekBytes(
    connection,
    { silenceMs: limitMs, maxBytes: MAX_PACKET + 4 },
    (bytes) => {
      const r = readPacket(bytes);
      return "need" in r ? r.need : true;
    },
  );
  const { look } = peeked;
  if (look.kind === "done") {
    const r = readPacket(look.bytes);
    if ("error" in r) throw new Error(r.error);
    if ("need" in r) throw new Error("a packet cut short");
    return { ...r, connection: peeked.connection };
  }
  if (look.kind === "closed" || (look.kind === "unfinished" && look.reason !== "timed out"))
    return { gone: look.reason, connection: peeked.connection };
  throw new Silent(`no ${what} within ${limitMs / 1000} s`);
}

/** Inside TLS: the connection phase with the sequence numbers moved by one, then the rest as
 * it is. A client that leaves before the phase is over (a scanner that only wanted the
 * handshake, say) ends the session as before its SSLRequest: one info line, status 100. */
async function behindTls(
  session: Connection,
  behind: ServerSide,
  log: { warn: (what: string) => void; info: (what: string) => void },
): Promise<number> {
  const fromInner = new PacketReader(connectionStream(session), 30_000);
  try {
    return await connectionPhase(session, fromInner, behind, log.warn);
  } catch (error) {
    if (!fromInner.hasEnded) throw error;
    log.info("the client left inside TLS before its login was over");
    behind.server.destroy();
    return REFUSED;
  }
}

/** The server behind: its socket, its packets, its status, and whether it failed. */
interface ServerSide {
  server: Socket;
  fromServer: PacketReader;
  done: Promise<number>;
  serverFailed: () => boolean;
}

async function connectionPhase(
  session: Connection,
  fromInner: PacketReader,
  { server, fromServer, done, serverFailed }: ServerSide,
  warn: (what: string) => void,
): Promise<number> {
  const inner = connectionStream(session);
  const response = await fromInner.next("login inside TLS");
  // Refused here, never relayed: `seq` is the client's numbering of the ERR.
  const refuseCleartext = async (why: string, seq: number) => {
    warn(`refused: ${shown(why, 120)}, and the server behind is reached without TLS`);
    await endWith(
      inner,
      writePacket(
        seq,
        errPacket(
          1045,
          "28000",
          `starttls-wrapper: ${why}; the password would cross the link behind it in clear`,
        ),
      ),
    );
    server.destroy();
    return REFUSED;
  };
  const login = loginStep(response.payload);
  if (login) return refuseCleartext(login.why, response.seq + 1);
  server.write(writePacket(response.seq - 1, withoutTlsFlag(response.payload)));
  let serverFinished = false;
  // The client's auth answers, while the server's rounds go on (several in a row at times).
  const clientSide = (async () => {
    while (!serverFinished) {
      const packet = await fromInner.next().catch(() => undefined);
      // A client gone in the middle: the server's input ends, as the client's own end would
      // end it, so that a server waiting for the next packet does not hold the session.
      if (!packet && !serverFinished) server.end();
      if (!packet || serverFinished) return packet;
      server.write(writePacket(packet.seq - 1, packet.payload));
    }
    return undefined;
  })();
  for (;;) {
    const packet = await fromServer.next("answer from the server");
    const step = serverStep(packet.payload);
    if (step.kind === "cleartext") {
      serverFinished = true;
      return refuseCleartext(step.why, packet.seq + 1);
    }
    if (step.kind === "done") serverFinished = true;
    inner.write(writePacket(packet.seq + 1, packet.payload));
    if (serverFinished) break;
  }
  const pending = fromInner.release();
  await clientSide;
  if (pending.length > 0) server.write(pending);
  const leftover = fromServer.release();
  if (leftover.length > 0) inner.write(leftover);
  // A server that failed cuts the client's TLS session (no close_notify: a reset where tlsd
  // knows the socket, the native engine's too), as tcpforward cuts its own clients': not a
  // clean end. Before the relay's own listeners, which would end it.
  const cut = () => {
    if (serverFailed()) resetClient(session);
  };
  server.once("end", cut);
  server.once("error", cut);
  await relay(inner, server);
  // Its status, not ours: a failure ends the session non-zero (it said why).
  return done;
}

/** The rest of a session without TLS: both ways as it is (the client's bytes are all still
 * in its connection; the server's read beyond its packets go first). */
async function pump(
  client: Duplex,
  server: Socket,
  fromServer: PacketReader,
  serverDone: Promise<number>,
): Promise<number> {
  const toClient = fromServer.release();
  if (toClient.length > 0) client.write(toClient);
  await relay(client, server);
  return serverDone;
}

/** A packet that did not come within its time limit. */
class Silent extends Error {}

/** Packets off a stream, one at a time, within a time limit each; release() gives back what
 * was read beyond them and lets go of the stream. */
class PacketReader {
  private buffer: Buffer = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  private isEnded = false;
  private released = false;
  private readonly stream: Readable;
  private readonly limitMs: number;
  private readonly onData = (chunk: Buffer) => {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    if (this.buffer.length > MAX_PACKET + 4) this.stream.pause();
    this.wake?.();
  };
  private readonly onEnd = () => {
    this.isEnded = true;
    this.wake?.();
  };
  /** The stream has ended or closed. */
  get hasEnded(): boolean {
    return this.isEnded;
  }

  constructor(stream: Readable, limitMs: number) {
    this.stream = stream;
    this.limitMs = limitMs;
    stream.on("data", this.onData);
    stream.once("end", this.onEnd);
    stream.once("close", this.onEnd);
  }

  /** The next packet (`what`, for the error when it does not come in time). */
  async next(what = "packet"): Promise<Packet> {
    const deadline = Date.now() + this.limitMs;
    for (;;) {
      const r = readPacket(this.buffer);
      if ("packet" in r) {
        this.buffer = this.buffer.subarray(r.size);
        this.stream.resume();
        return r.packet;
      }
      if ("error" in r) throw new Error(r.error);
      if (this.isEnded) throw new Error("the connection ended");
      if (this.released) throw new Error("released");
      const left = deadline - Date.now();
      if (left <= 0) throw new Silent(`no ${what} within ${this.limitMs / 1000} s`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  release(): Buffer {
    this.released = true;
    this.wake?.();
    this.stream.off("data", this.onData);
    this.stream.off("end", this.onEnd);
    this.stream.off("close", this.onEnd);
    this.stream.pause();
    const rest = this.buffer;
    this.buffer = Buffer.alloc(0);
    return rest;
  }
}
