// SMTP session load for bench/smtp.mjs: `concurrency` clients, each running whole sessions back
// to back until `count` sessions are done or `seconds` have passed (whichever comes first), then
// one JSON line on stdout. Any protocol error (an unexpected reply, a missing STARTTLS, a byte
// after the go-ahead, a certificate that does not verify, a stall) fails the run loudly: a
// message on stderr and exit 1.
//   node load.mjs --mode plain|implicit|starttls --port N [--host 127.0.0.1] [--ca FILE]
//                 [--servername localhost] [-c 1] [--count 500] [--seconds 3] [--timeout 10]
//                 [--trace]   (--trace: each session's steps and their ms on stderr)
// A session: greeting, EHLO, (STARTTLS, handshake, EHLO,) MAIL, RCPT, DATA with a small
// message, QUIT, then the server's end of the connection. Implicit TLS: the handshake first.
// One command at a time (no pipelining); every TLS session is a full handshake (no resumption).
import { readFileSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { parseArgs } from "node:util";

const { values: opt } = parseArgs({
  options: {
    mode: { type: "string", default: "plain" },
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    ca: { type: "string" },
    servername: { type: "string", default: "localhost" },
    concurrency: { type: "string", short: "c", default: "1" },
    count: { type: "string", default: "500" },
    seconds: { type: "string", default: "3" },
    timeout: { type: "string", default: "10" },
    trace: { type: "boolean", default: false },
  },
});
const mode = opt.mode;
if (!["plain", "implicit", "starttls"].includes(mode)) fatal(`unknown mode ${mode}`);
const port = Number(opt.port);
if (!(port > 0)) fatal("--port is required");
const ca = mode === "plain" ? undefined : readFileSync(opt.ca ?? fatal("--ca is required"));
const concurrency = Number(opt.concurrency);
const count = Number(opt.count);
const limitMs = Number(opt.seconds) * 1000;
const timeoutMs = Number(opt.timeout) * 1000;

const MESSAGE =
  "From: <bench@client.example>\r\nTo: <sink@localhost>\r\nSubject: bench\r\n" +
  "Message-ID: <bench@client.example>\r\n\r\n" +
  "A small message for the SMTP session benchmark.\r\n".repeat(8) +
  ".\r\n";

function fatal(why) {
  process.stderr.write(`smtp-load: fatal: ${why}\n`);
  process.exit(1);
}

/** SMTP replies read off one stream, then (after STARTTLS) off another. */
class Replies {
  constructor() {
    this.buffer = "";
    this.waiting = undefined;
    this.ended = false;
    this.onData = (chunk) => {
      this.buffer += chunk.toString("latin1");
      this.check();
    };
    this.onEnd = () => {
      this.ended = true;
      this.check();
    };
  }

  attach(stream) {
    stream.on("data", this.onData);
    stream.on("end", this.onEnd);
  }

  detach(stream) {
    stream.removeListener("data", this.onData);
    stream.removeListener("end", this.onEnd);
  }

  /** The next whole reply: its code and its lines. */
  next() {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.check();
    });
  }

  check() {
    if (!this.waiting) return;
    const lines = [];
    let at = 0;
    for (;;) {
      const eol = this.buffer.indexOf("\r\n", at);
      if (eol < 0) break;
      const l = this.buffer.slice(at, eol);
      at = eol + 2;
      if (!/^\d{3}[ -]/.test(l) && l.length !== 3) return this.fail(`malformed reply line ${q(l)}`);
      lines.push(l);
      if (l[3] !== "-") {
        this.buffer = this.buffer.slice(at);
        const w = this.waiting;
        this.waiting = undefined;
        w.resolve({ code: Number(l.slice(0, 3)), lines });
        return;
      }
    }
    if (this.ended) this.fail(`connection closed mid-dialogue (${q(this.buffer)} pending)`);
  }

  fail(why) {
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(new Error(why));
  }
}

const q = (s) => JSON.stringify(s.length > 200 ? `${s.slice(0, 200)}...` : s);

let steps = [];
let stepAt = 0;
function step(what) {
  if (!opt.trace) return;
  const now = performance.now();
  steps.push(`${what} ${(now - stepAt).toFixed(1)}`);
  stepAt = now;
}

async function expect(replies, stream, command, code) {
  if (command !== undefined) stream.write(command);
  const r = await replies.next();
  step(
    command === undefined
      ? "greeting"
      : command.length > 40
        ? "message"
        : command.split(/[ :\r]/)[0],
  );
  if (r.code !== code)
    throw new Error(
      `${command === undefined ? "greeting" : q(command.slice(0, 40))}: expected ${code}, got ${q(r.lines.join(" | "))}`,
    );
  return r;
}

function tlsOver(socket) {
  return new Promise((resolve, reject) => {
    const opts = { ca, servername: opt.servername, ALPNProtocols: undefined };
    const s = socket
      ? tlsConnect({ ...opts, socket })
      : tlsConnect({ ...opts, host: opt.host, port });
    s.once("secureConnect", () => {
      s.removeAllListeners("error");
      if (!s.authorized) reject(new Error(`certificate not verified: ${s.authorizationError}`));
      else resolve(s);
    });
    s.once("error", (e) => reject(new Error(`TLS: ${e.code ?? e.message}`)));
  });
}

function tcp() {
  return new Promise((resolve, reject) => {
    const s = tcpConnect({ host: opt.host, port });
    s.once("connect", () => {
      s.removeAllListeners("error");
      resolve(s);
    });
    s.once("error", (e) => reject(new Error(`connect: ${e.code ?? e.message}`)));
  });
}

/** Waits for the server to end the connection, after its 221. */
function closed(stream, replies) {
  return new Promise((resolve, reject) => {
    if (replies.buffer.length > 0) reject(new Error(`bytes after 221: ${q(replies.buffer)}`));
    if (stream.readableEnded) return resolve();
    stream.on("data", (b) => reject(new Error(`bytes after 221: ${q(b.toString("latin1"))}`)));
    stream.once("end", resolve);
    stream.once("close", resolve);
    stream.resume();
  });
}

async function session() {
  const replies = new Replies();
  steps = [];
  stepAt = performance.now();
  let stream = mode === "implicit" ? await tlsOver() : await tcp();
  step(mode === "implicit" ? "connect+handshake" : "connect");
  const streams = [stream];
  const timer = setTimeout(() => {
    replies.fail(`session stalled for ${timeoutMs} ms`);
    for (const s of streams) s.destroy();
  }, timeoutMs);
  try {
    stream.on("error", (e) => replies.fail(`socket: ${e.code ?? e.message}`));
    replies.attach(stream);
    await expect(replies, stream, undefined, 220);
    const ehlo = await expect(replies, stream, "EHLO client.example\r\n", 250);
    const offers = ehlo.lines.some((l) => /^250[ -]STARTTLS$/i.test(l));
    if (mode === "starttls") {
      if (!offers) throw new Error(`STARTTLS not offered: ${q(ehlo.lines.join(" | "))}`);
      await expect(replies, stream, "STARTTLS\r\n", 220);
      if (replies.buffer.length > 0)
        throw new Error(`plaintext after the go-ahead: ${q(replies.buffer)}`);
      replies.detach(stream);
      stream = await tlsOver(stream);
      step("handshake");
      streams.push(stream);
      stream.on("error", (e) => replies.fail(`TLS socket: ${e.code ?? e.message}`));
      replies.attach(stream);
      const again = await expect(replies, stream, "EHLO client.example\r\n", 250);
      if (again.lines.some((l) => /^250[ -]STARTTLS$/i.test(l)))
        throw new Error("STARTTLS offered again inside TLS");
    } else if (offers && mode === "implicit") {
      throw new Error("STARTTLS offered inside implicit TLS");
    }
    await expect(replies, stream, "MAIL FROM:<bench@client.example>\r\n", 250);
    await expect(replies, stream, "RCPT TO:<sink@localhost>\r\n", 250);
    await expect(replies, stream, "DATA\r\n", 354);
    await expect(replies, stream, MESSAGE, 250);
    await expect(replies, stream, "QUIT\r\n", 221);
    replies.detach(stream);
    const done = closed(stream, replies);
    stream.end();
    await done;
    step("close");
    if (opt.trace) process.stderr.write(`${steps.join(", ")}\n`);
  } finally {
    clearTimeout(timer);
    for (const s of streams) s.destroy();
  }
}

const latencies = [];
let started = 0;
const t0 = performance.now();
const cpu0 = process.cpuUsage();
const deadline = t0 + limitMs;

async function worker() {
  while (started < count && performance.now() < deadline) {
    started++;
    const t = performance.now();
    await session();
    latencies.push(performance.now() - t);
  }
}

try {
  await Promise.all(Array.from({ length: concurrency }, worker));
} catch (error) {
  fatal(`${mode} port ${port}: ${error.message}`);
}
const elapsed = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
latencies.sort((a, b) => a - b);
const pct = (p) =>
  latencies.length
    ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]
    : 0;
process.stdout.write(
  JSON.stringify({
    mode,
    concurrency,
    sessions: latencies.length,
    elapsed,
    rate: latencies.length / elapsed,
    p50_ms: pct(0.5),
    p99_ms: pct(0.99),
    max_ms: latencies.at(-1) ?? 0,
    client_cpu_ms_per_session: latencies.length
      ? (cpu.user + cpu.system) / 1000 / latencies.length
      : 0,
  }) + "\n",
);
