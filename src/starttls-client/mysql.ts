// MySQL / MariaDB (the "Connection Phase" of the client/server protocol): the server speaks
// first. tlsc reads its HandshakeV10, needs CLIENT_SSL in it, answers with an SSLRequest
// (sequence 1), and does TLS. The program then reads the greeting as if nothing had happened,
// offering only what the SSLRequest announced (CLIENT_SSL not), and answers with its own
// HandshakeResponse41: one connection goes on, so every packet of the connection phase is
// moved by one sequence number (the program never saw the SSLRequest) until the server's OK or
// ERR; from then on the bytes pass as they are.
import { Duplex } from "node:stream";
import { CLIENT_SSL, readPacket, serverStep, tlsOffered, writePacket } from "../dialogue/mysql.ts";
import { UpgradeError, quoted } from "./reader.ts";
import type { ClientUpgrade } from "./types.ts";

/** The capabilities an SSLRequest announces, which the server keeps for the session (MariaDB
 * and MySQL read them from the SSLRequest, not from the response inside TLS): the program is
 * offered these and no others, so that it cannot choose a different set. The classic 4.1
 * client's: no CLIENT_DEPRECATE_EOF, no database or attributes in the response. */
const CLIENT_CAPABILITIES =
  0x00000001 /* LONG_PASSWORD */ |
  0x00000004 /* LONG_FLAG */ |
  0x00000200 /* PROTOCOL_41 */ |
  0x00002000 /* TRANSACTIONS */ |
  0x00008000 /* SECURE_CONNECTION */ |
  0x00020000 /* MULTI_RESULTS */ |
  0x00080000 /* PLUGIN_AUTH */ |
  CLIENT_SSL;

/** SSLRequest: capability flags, max packet size, character set (utf8mb4), 23 zero bytes. */
export function sslRequest(serverFlags: number): Buffer {
  const payload = Buffer.alloc(32);
  payload.writeUInt32LE(((serverFlags & CLIENT_CAPABILITIES) | CLIENT_SSL) >>> 0, 0);
  payload.writeUInt32LE(16 * 1024 * 1024, 4);
  payload[8] = 45;
  return payload;
}

export const mysql: ClientUpgrade = async (io) => {
  let bytes = Buffer.alloc(0);
  let read = readPacket(bytes);
  while ("need" in read) {
    bytes = Buffer.concat([bytes, await io.bytes(read.need - bytes.length)]);
    read = readPacket(bytes);
  }
  if ("error" in read) throw new UpgradeError("protocol", `server sent ${read.error}`);
  const greeting = read.packet;
  if (greeting.payload[0] === 0xff)
    throw new UpgradeError(
      "refused",
      `server refused the session: ${quoted(greeting.payload.subarray(3).toString("latin1"))}`,
    );
  const offered = tlsOffered(greeting.payload, CLIENT_CAPABILITIES);
  if (offered === undefined) throw new UpgradeError("protocol", "server sent no HandshakeV10");
  // Kept whole for --plaintext-fallback; over TLS the program gets it without CLIENT_SSL.
  io.keep(writePacket(greeting.seq, greeting.payload).toString("latin1"));
  if (!offered.tls) throw new UpgradeError("not-offered", "server does not offer TLS");
  io.send(writePacket(greeting.seq + 1, sslRequest(offered.flags)));
  io.keep(writePacket(greeting.seq, offered.forProgram).toString("latin1"));
  io.afterTls((stream) => new SequenceShift(stream));
};

/**
 * Between the program and the TLS session: the connection phase's packets moved by one
 * sequence number (the program's up, the server's down), CLIENT_SSL set again in the
 * program's HandshakeResponse41; after the server's OK or ERR, the bytes as they are.
 */
export class SequenceShift extends Duplex {
  private readonly inner: Duplex;
  private fromProgram = Buffer.alloc(0);
  private fromServer = Buffer.alloc(0);
  private first = true;
  private phase = true;

  constructor(inner: Duplex) {
    super({ allowHalfOpen: true });
    this.inner = inner;
    inner.on("data", (chunk: Buffer) => {
      if (!this.push(this.phase ? this.serverBytes(chunk) : chunk)) inner.pause();
    });
    inner.once("end", () => this.push(null));
    inner.on("error", (error: Error) => this.destroy(error));
    inner.once("close", () => {
      if (!this.destroyed && !this.readableEnded) this.destroy();
    });
    inner.pause();
  }

  /** The server's packets with their numbers moved down, up to and with its OK or ERR. */
  private serverBytes(chunk: Buffer): Buffer {
    this.fromServer = Buffer.concat([this.fromServer, chunk]);
    const out: Buffer[] = [];
    while (this.phase) {
      const r = readPacket(this.fromServer);
      if (!("packet" in r)) {
        if ("error" in r) this.destroy(new Error(`server sent ${r.error}`));
        return Buffer.concat(out);
      }
      this.fromServer = this.fromServer.subarray(r.size);
      out.push(writePacket(r.packet.seq - 1, r.packet.payload));
      if (serverStep(r.packet.payload).kind === "done") this.phase = false;
    }
    out.push(this.fromServer);
    this.fromServer = Buffer.alloc(0);
    return Buffer.concat(out);
  }

  override _read(): void {
    this.inner.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (e?: Error | null) => void) {
    if (!this.phase && this.fromProgram.length === 0) {
      this.inner.write(chunk, done);
      return;
    }
    this.fromProgram = Buffer.concat([this.fromProgram, chunk]);
    const out: Buffer[] = [];
    for (;;) {
      const r = readPacket(this.fromProgram);
      if (!("packet" in r)) {
        if ("error" in r) return done(new Error(`the program sent ${r.error}`));
        break;
      }
      this.fromProgram = this.fromProgram.subarray(r.size);
      const { seq, payload } = r.packet;
      const body = this.first ? withTlsFlag(payload) : payload;
      this.first = false;
      out.push(writePacket(seq + 1, body));
    }
    // After the server's OK or ERR nothing is moved any more.
    if (!this.phase) {
      out.push(this.fromProgram);
      this.fromProgram = Buffer.alloc(0);
    }
    if (out.length === 0) return done();
    this.inner.write(Buffer.concat(out), done);
  }

  override _final(done: (error?: Error | null) => void): void {
    this.inner.end(done);
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    this.inner.destroy(error ?? undefined);
    done(error);
  }
}

/** The program's HandshakeResponse41 as a client that asked for TLS sends it. */
function withTlsFlag(payload: Buffer): Buffer {
  const copy = Buffer.from(payload);
  if (copy.length >= 4) copy.writeUInt32LE((copy.readUInt32LE(0) | CLIENT_SSL) >>> 0, 0);
  return copy;
}
