// RFC 1413 ident client for TCPREMOTEINFO, reading replies the way djb's remoteinfo.c does.
//
// djb's reader (ucspi-tcp 0.88 remoteinfo.c, checked against the running /usr/bin/tcpserver):
//   - the query is `REMOTEPORT , LOCALPORT\r\n`, sent from the connection's local IP, port 0;
//   - every space, tab and CR in the reply is dropped, wherever it is ("al ice" gives "alice");
//   - colons are counted; everything after the third colon is the user id, colons included
//     ("x,y:USERID:UNIX:jo:e" gives "jo:e");
//   - a LF ends the reply; so does a user id that reaches 257 bytes (no LF needed then);
//   - EOF, an error or the deadline before that gives no TCPREMOTEINFO at all;
//   - the response type is never looked at: `ERROR : NO-USER` (two colons) and garbage lines
//     give an empty user id, so djb's tcpserver sets TCPREMOTEINFO= (empty), and
//     `x , y : ERROR : A : b` gives "b".
// identQuery returns undefined for ERROR replies and garbage unless `djbCompat` is set, in which
// case it returns exactly what djb would put in TCPREMOTEINFO ("" for those).

import { connect, type Socket } from "node:net";
import { unmapIPv4 } from "./ip.ts";

export interface IdentRequest {
  /** Our end of the connection being identified; the query is sent from this address. */
  localIp: string;
  localPort: number;
  /** The peer, whose identd is asked. */
  remoteIp: string;
  remotePort: number;
  /** Bound on the whole query: connect, write, read. */
  timeoutMs: number;
  /** Default 113. */
  identPort?: number;
  /** Return what djb's remoteinfo gives (see above) instead of only USERID answers. */
  djbCompat?: boolean;
}

export type IdentScan = { complete: false } | { complete: true; userId: string | undefined };

/** djb stops reading once the user id is longer than 256 bytes. */
const MAX_USERID_BYTES = 257;
/** We give up on a reply that goes on longer than this without ending (djb only has the timeout). */
const MAX_REPLY_BYTES = 4096;

const SPACE = 0x20;
const TAB = 0x09;
const CR = 0x0d;
const LF = 0x0a;
const COLON = 0x3a;

function decodeUserId(bytes: number[]): string {
  const text = Buffer.from(bytes).toString("latin1"); // a byte string, as env values are
  const nul = text.indexOf("\0");
  return nul === -1 ? text : text.slice(0, nul); // a C string (djb's env) ends at NUL
}

/**
 * Scans the bytes of an ident reply received so far. `complete: false` means more bytes are
 * needed (EOF at that point is a failure). When complete, `userId` is the answer or undefined.
 */
export function scanIdentReply(data: Uint8Array, djbCompat = false): IdentScan {
  let colons = 0;
  const kind: number[] = [];
  const user: number[] = [];
  const done = (): IdentScan => {
    if (djbCompat) return { complete: true, userId: decodeUserId(user) };
    const type = Buffer.from(kind).toString("latin1").toUpperCase();
    if (colons < 3 || type !== "USERID" || user.length === 0) {
      return { complete: true, userId: undefined };
    }
    const userId = decodeUserId(user);
    return { complete: true, userId: userId === "" ? undefined : userId };
  };
  for (let i = 0; i < data.length; i += 1) {
    if (i >= MAX_REPLY_BYTES) return { complete: true, userId: undefined };
    const ch = data[i] ?? 0;
    if (ch === SPACE || ch === TAB || ch === CR) continue;
    if (ch === LF) return done();
    if (colons < 3) {
      if (ch === COLON) colons += 1;
      else if (colons === 1 && kind.length < 16) kind.push(ch);
    } else {
      user.push(ch);
      if (user.length >= MAX_USERID_BYTES) return done();
    }
  }
  return { complete: false };
}

/** The query line djb sends: `REMOTEPORT , LOCALPORT` and CRLF. */
export function identQueryLine(remotePort: number, localPort: number): string {
  return `${remotePort} , ${localPort}\r\n`;
}

/**
 * Asks the peer's identd who owns the connection `localIp:localPort` ↔ `remoteIp:remotePort`.
 * Resolves to the user id, or undefined on refusal, timeout, EOF, ERROR reply or garbage (see
 * `djbCompat`). Never rejects; the socket and timer are always released before it resolves.
 */
export function identQuery(q: IdentRequest): Promise<string | undefined> {
  const timeoutMs = q.timeoutMs;
  if (!(timeoutMs > 0)) return Promise.resolve(undefined);
  const remoteIp = unmapIPv4(q.remoteIp);
  const localIp = unmapIPv4(q.localIp);
  const djbCompat = q.djbCompat ?? false;

  return new Promise((resolve) => {
    let finished = false;
    let received: Buffer = Buffer.alloc(0);
    let socket: Socket | undefined;
    const finish = (userId: string | undefined): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket?.destroy();
      resolve(userId);
    };
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    try {
      socket = connect({
        host: remoteIp,
        port: q.identPort ?? 113,
        localAddress: localIp,
      });
    } catch {
      finish(undefined); // e.g. an address Node refuses before any system call
      return;
    }
    socket.on("connect", () => {
      socket?.write(identQueryLine(q.remotePort, q.localPort), "latin1");
    });
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const scan = scanIdentReply(received, djbCompat);
      if (scan.complete) finish(scan.userId);
    });
    socket.on("end", () => finish(undefined));
    socket.on("error", () => finish(undefined));
    socket.on("close", () => finish(undefined));
  });
}
