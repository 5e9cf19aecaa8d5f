// tlsd -n: UCSPI-TLS delayed mode (opportunistic TLS, STARTTLS), with s6-ucspitlsd's rules.
//
// The program starts at once, with the raw connection as its fds 0/1 (the socket itself: it
// talks cleartext first) and three more fds, named in its environment:
//
//   SSLCTLFD    control: one end of an AF_UNIX stream pair; tlsd holds the other
//   SSLREADFD   the program reads decrypted bytes here (a stream pair tlsd only writes to)
//   SSLWRITEFD  the program writes bytes to encrypt here (a stream pair tlsd only reads from)
//
// Two pairs rather than one end for both: the numbers differ (acceptutils and skarnet's
// fd_move() moves SSLREADFD onto 0 and then SSLWRITEFD onto 1) and closing SSLWRITEFD is an
// EOF, as with s6's pipes. The program writes one byte to SSLCTLFD: `y` starts TLS, `Y` starts
// TLS and, once the handshake is done, gets the session as `NAME=value\0`... plus one more
// `\0` on SSLCTLFD, which is then closed (so EOF without a block means the handshake failed).
// EOF before a command is a decline: the program goes on in cleartext and tlsd only waits for
// it. Any other byte is an error (one log line); the program goes on too.
//
// Who reads the socket when: until the command, only the program (tlsd does not even make a
// stream of the fd); from the command on, only tlsd. Bytes the program has read are its own;
// whatever the peer sent after STARTTLS, pipelined plaintext included, is handshake input and
// never reaches the program as plaintext (plaintext there fails the handshake). Bytes the
// program writes to SSLWRITEFD early wait in their pair until the handshake is done. The
// program's exit status is tlsd's, whatever happened to TLS.
import { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { CertStore } from "../tls/cert-store.ts";
import { goodbye, handshakeOrStatus } from "../tls/session.ts";
import { closePolicy } from "../tls/close-policy.ts";
import { FatalError, causeText } from "../ucspi/errors.ts";
import { native } from "../ucspi/native.ts";
import { relay } from "../stream/relay.ts";
import type { StageContext } from "../ucspi/stage.ts";
import type { TlsdOptions } from "./options.ts";
import { programEnv } from "../tls/peer-env.ts";
import {
  checkClientCertificate,
  checkServerName,
  explainFailure,
  serverTls,
  sessionFacts,
} from "./stage.ts";
import { handshakeDone, handshakeFailed } from "./metrics.ts";
import { serveOnEngine } from "./delayed-native.ts";

const START = 0x79; // y
const START_AND_TELL = 0x59; // Y

/** tlsd's side of the three channels. */
interface OurEnds {
  control: Socket;
  /** Decrypted bytes go to the program here (its SSLREADFD's pair). */
  toProgram: number;
  /** Bytes to encrypt come from the program here (its SSLWRITEFD's pair). */
  fromProgram: number;
}

export async function runDelayed(
  ctx: StageContext,
  options: TlsdOptions,
  store: CertStore,
  useEngine: boolean,
): Promise<number> {
  if (ctx.connection.fd === undefined)
    throw new FatalError("delayed mode needs the connection as one socket on fds 0/1", 111);
  const [control, read, write] = threePairs();
  // No session yet: its variables, inherited, must not pass for this one's (they come over
  // SSLCTLFD). ucspi-ssl's address set is known before any TLS: the program has it from its
  // start.
  const env = programEnv(ctx.env, options);
  env["SSLCTLFD"] = String(control[1]);
  env["SSLREADFD"] = String(read[1]);
  env["SSLWRITEFD"] = String(write[1]);
  const ours: OurEnds = {
    control: new Socket({ fd: control[0], readable: true, writable: true, allowHalfOpen: true }),
    toProgram: read[0],
    fromProgram: write[0],
  };
  ours.control.on("error", () => {});
  // The chain closes its copies of the program's ends once it has spawned the program, so
  // our ends see EOF when the program closes them or exits.
  ctx.connection.extraFds = [control[1], read[1], write[1]];
  const exited = new Promise<number>((resolve) =>
    resolve(ctx.next(options.program, env, ctx.connection)),
  );
  const served = serve(
    ctx,
    options,
    store,
    useEngine,
    ours,
    exited.then(
      () => undefined,
      () => undefined,
    ),
  );
  try {
    return await exited;
  } finally {
    await served;
  }
}

/** Waits for the program's command and does what it asks. Never rejects. */
async function serve(
  ctx: StageContext,
  options: TlsdOptions,
  store: CertStore,
  useEngine: boolean,
  ours: OurEnds,
  exited: Promise<void>,
): Promise<void> {
  let dataFdsOpen = true;
  const giveUp = () => {
    ours.control.destroy();
    if (dataFdsOpen) {
      native().close(ours.toProgram);
      native().close(ours.fromProgram);
      dataFdsOpen = false;
    }
  };
  let tls: TLSSocket | undefined;
  try {
    const command = await firstByte(ours.control);
    if (command === undefined) {
      if (options.verbosity >= 2) ctx.log("tlsd: info: the program declined TLS\n");
      return giveUp();
    }
    if (command !== START && command !== START_AND_TELL) {
      if (options.verbosity >= 1)
        ctx.log(
          `tlsd: warning: unrecognized command 0x${command.toString(16).padStart(2, "0")} on control socket, no TLS\n`,
        );
      return giveUp();
    }
    if (command === START) ours.control.destroy();
    if (useEngine) {
      const control = ours.control;
      const tell =
        command === START_AND_TELL
          ? (facts: [string, string | undefined][]) =>
              control.end(replyBlock(facts), () => control.destroy())
          : undefined;
      const fds = { toProgram: ours.toProgram, fromProgram: ours.fromProgram };
      const taken = () => (dataFdsOpen = false);
      if (!(await serveOnEngine(ctx, options, store, fds, tell, exited, taken))) giveUp();
      return;
    }
    // Only now does tlsd read the socket: what is there is the peer's handshake.
    // -n takes neither -s nor -J: the program's end is a close_notify, a bare FIN is an end.
    // A TLS 1.2 close_notify from the peer ends the session, as without -n.
    const policy = closePolicy(ctx.connection, { closeNotify: true, enforceCloseNotify: false });
    const session = serverTls(policy.transport, store, options);
    tls = session;
    // The immediate mode's checks and words (stage.ts), each failure a warning here.
    let verdict = "NONE";
    const refused = await handshakeOrStatus(
      ctx,
      "tlsd: warning: ",
      session,
      "secure",
      { ...options, explain: (error) => explainFailure(session, store, error) },
      () => {
        checkServerName(session);
        verdict = checkClientCertificate(session, options);
      },
      handshakeFailed,
    );
    if (refused !== undefined) return giveUp();
    handshakeDone(tls);
    if (command === START_AND_TELL) {
      const control = ours.control;
      control.end(replyBlock(sessionFacts(tls, options, verdict)), () => control.destroy());
    }
    dataFdsOpen = false;
    const fromProgram = new Socket({
      fd: ours.fromProgram,
      readable: true,
      writable: false,
      allowHalfOpen: true,
    });
    const toProgram = new Socket({
      fd: ours.toProgram,
      readable: false,
      writable: true,
      allowHalfOpen: true,
    });
    const programDone = new Promise<void>((resolve) => {
      fromProgram.once("end", resolve);
      fromProgram.once("close", resolve);
    });
    // A client gone while the program still writes: its sockets close, and it learns (EPIPE).
    const stop = () => {
      fromProgram.destroy();
      toProgram.destroy();
    };
    const relayed = relay(
      policy.attach(tls, () => {}),
      {
        source: fromProgram,
        sink: toProgram,
        stop,
      },
    );
    await exited;
    // As in the immediate mode: once the program has exited and its output is all out, the
    // session is over, whatever the peer still sends.
    await Promise.race([relayed, programDone]);
    fromProgram.destroy();
    toProgram.destroy();
    await goodbye(tls);
  } catch (error) {
    tls?.destroy();
    if (options.verbosity >= 1) ctx.log(`tlsd: warning: ${causeText(error)}\n`);
    giveUp();
  }
}

/** The first byte the program writes on the control socket; undefined at EOF (or error). */
function firstByte(control: Socket): Promise<number | undefined> {
  return new Promise((resolve) => {
    const done = (byte: number | undefined) => {
      control.off("data", onData);
      control.off("end", onEnd);
      control.off("close", onEnd);
      control.pause();
      resolve(byte);
    };
    const onData = (chunk: Buffer) => {
      if (chunk.length > 0) done(chunk[0]);
    };
    const onEnd = () => done(undefined);
    control.on("data", onData);
    control.once("end", onEnd);
    control.once("close", onEnd);
  });
}

/** The `Y` answer: `NAME=value\0` for each fact present (no bare names: s6 would send those
 * for absent ones, but acceptutils-style parsers expect pairs only), then one more `\0`. */
export function replyBlock(facts: readonly [string, string | undefined][]): Buffer {
  const entries = facts
    .filter((fact): fact is [string, string] => fact[1] !== undefined && !fact[1].includes("\0"))
    .map(([name, value]) => Buffer.from(`${name}=${value}\0`, "utf8"));
  return Buffer.concat([...entries, Buffer.from([0])]);
}

type Pair = [number, number];

/** Three AF_UNIX stream pairs (close-on-exec): control, read, write; none if one fails. */
function threePairs(): [Pair, Pair, Pair] {
  const made: Pair[] = [];
  try {
    const pair = () => {
      const p = native().socketPair();
      made.push(p);
      return p;
    };
    return [pair(), pair(), pair()];
  } catch (error) {
    for (const fd of made.flat()) native().close(fd);
    throw error;
  }
}
