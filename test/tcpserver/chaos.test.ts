// Misbehaving peers against our tcpserver, in random mixes (fast-check) and all at once:
// clients that reset in the handshake or mid-session, abandon sessions without close_notify,
// send garbage, or send a PROXY header (whole or cut) where a ClientHello belongs; services that
// reset or close at once; PROXY headers whole, split, partial or missing. Through
// tls-everywhere's chain (tls-sniff, then tlsd or not, then tcpforward), tlsd with a spawned
// program, starttls-wrapper (local, and handing over to tcpserver --proxy tlsd) and --proxy.
// Whatever happens to one connection ends that connection alone: tcpserver goes on serving,
// logs no internal error, every connection ends, and no fd or child is left.
import assert from "node:assert/strict";
import { randomBytes, randomInt } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { connect, createServer } from "node:net";
import { after, before, test } from "node:test";
import { connect as tlsConnect } from "node:tls";
import fc from "fast-check";
import { makePki } from "../helpers/certs.ts";
import { chaos, fileSaid } from "../helpers/chaos.ts";
import type { Outcome, Plan, Said, Target } from "../helpers/chaos.ts";
import { PATH_WITH_BIN, ROOT, ours } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";

const pki = makePki();
const pair = pki.server("localhost", ["localhost", "127.0.0.1"]);
const ca = readFileSync(pki.ca.cert);

/** What the service does once it has the first line: echo everything back and end when the
 * client ends; reset the connection; or end it at once. */
const MODES = ["echo", "reset", "close"] as const;
type Mode = (typeof MODES)[number];

const KINDS = [
  "tls", // a full session: the line, a half-close, everything read to the end
  "tls-reset", // the line, then a TCP reset as soon as anything comes back (or 20 ms)
  "tls-abandoned", // the line, then the TCP connection closed without close_notify
  "tls-handshake-reset", // half a ClientHello, then a reset
  "plain", // the same as "tls" in plaintext (tls-sniff's other way)
  "plain-reset",
  "garbage", // a TLS record header and random bytes
  "proxy-header", // a PROXY v1 or v2 header where the ClientHello should be, whole or cut
] as const;
type Kind = (typeof KINDS)[number];

const PROXY_V1 = Buffer.from("PROXY TCP4 192.0.2.7 127.0.0.1 5555 443\r\n");
const PROXY_V2 = Buffer.from("0d0a0d0a000d0a515549540a2111000cc00002077f00000115b301bb", "hex");

let service: ReturnType<typeof createServer>;
let servicePort = 0;

before(async () => {
  service = createServer({ allowHalfOpen: true }, (socket) => {
    let first = "";
    let mode: Mode | undefined;
    socket.setEncoding("latin1");
    socket.on("error", () => {});
    socket.on("data", (d: string) => {
      if (mode === "echo") return void socket.write(d);
      if (mode !== undefined) return;
      first += d;
      const end = first.indexOf("\n");
      if (end < 0) return;
      mode = first.slice(0, end) as Mode;
      if (mode === "reset") socket.resetAndDestroy();
      else if (mode === "close") socket.end();
      else socket.write(first);
    });
    // The client's end is the service's, whatever it asked for (a cut PROXY header taken for
    // plaintext asks for no mode, or one that is none of these).
    socket.on("end", () => socket.end());
  });
  await new Promise<void>((resolve) => service.listen(0, "127.0.0.1", resolve));
  servicePort = (service.address() as { port: number }).port;
});

after(() => {
  service.close();
});

/** One client of `kind` asking the service for `mode`; resolves when its connection is
 * closed, and fails if that takes more than 15 s (a hang). What it does and sees is filed in
 * `target.said` as it goes, for the message when its session does not end. */
function client(target: Target, kind: Kind, mode: Mode): Promise<Outcome> {
  target.connections++;
  return new Promise((resolve, reject) => {
    const tcp = connect(target.server.port, "127.0.0.1");
    const said: Said = { what: `${kind}/${mode}`, steps: [] };
    const since = Date.now();
    const step = (what: string) => said.steps.push(`${what} at ${Date.now() - since} ms`);
    tcp.once("connect", () => fileSaid(target, tcp.localPort ?? 0, said));
    const line = `${mode}\nhello\n`;
    let got = "";
    let error: string | undefined;
    const timer = setTimeout(() => {
      tcp.destroy();
      reject(new Error(`${kind}/${mode}: not over after 15 s (read ${JSON.stringify(got)})`));
    }, 15_000);
    const done = () => {
      step("closed");
      clearTimeout(timer);
      resolve(error === undefined ? { got } : { got, error });
    };
    const failed = (e: NodeJS.ErrnoException) => {
      step(`error ${e.code ?? e.message}`);
      error ??= e.code ?? e.message;
    };
    tcp.on("error", failed);
    tcp.once("end", () => step("FIN read"));
    tcp.once("close", done);
    const reset = () => {
      if (tcp.destroyed) return;
      step("reset");
      tcp.resetAndDestroy();
    };
    const write = (stream: Duplex, bytes: Buffer | string, end = false) => {
      step(`wrote ${bytes.length} bytes${end ? " and FIN" : ""}`);
      if (end) stream.end(bytes);
      else stream.write(bytes);
    };
    if (kind === "plain" || kind === "plain-reset") {
      tcp.setEncoding("latin1");
      tcp.on("data", (d: string) => (got += d));
      write(tcp, line, kind === "plain");
      if (kind === "plain-reset") setTimeout(reset, 20);
      return;
    }
    if (kind === "tls-handshake-reset") {
      write(tcp, Buffer.from("16030100c8010000c40303", "hex"));
      setTimeout(reset, 20);
      return;
    }
    if (kind === "proxy-header") {
      const header = randomInt(2) === 0 ? PROXY_V1 : PROXY_V2;
      step(`v${header === PROXY_V1 ? 1 : 2}`);
      write(tcp, header.subarray(0, 1 + randomInt(header.length)), true);
      tcp.resume();
      return;
    }
    if (kind === "garbage") {
      write(tcp, Buffer.concat([Buffer.from("160303", "hex"), randomBytes(200)]), true);
      tcp.resume();
      return;
    }
    const tls = tlsConnect({ socket: tcp, servername: "localhost", ca: [ca] });
    tls.setEncoding("latin1");
    tls.on("error", failed);
    tls.once("end", () => step("TLS end read"));
    tls.on("data", (d: string) => {
      step(`read ${d.length} bytes`);
      got += d;
      if (kind === "tls-reset") reset();
    });
    tls.once("secureConnect", () => {
      step("handshake done");
      write(tls, line, kind === "tls");
      if (kind === "tls-reset") setTimeout(reset, 20);
      if (kind === "tls-abandoned")
        setImmediate(() => {
          step("destroyed");
          tcp.destroy();
        });
    });
  });
}

/** A whole exchange that must work: the service's echo of what was sent. */
async function servesWell(target: Target, kinds: readonly Kind[]): Promise<void> {
  for (const kind of kinds)
    assert.deepEqual(await client(target, kind, "echo"), { got: "echo\nhello\n" }, kind);
}

/** The plan for clients of `kinds` asking the service for any mode: those of `good` that
 * ask for an echo get exactly that, whatever their neighbours did. */
function servicePlan(
  target: Target,
  kinds: readonly Kind[],
  good: readonly Kind[],
): Plan<[Kind, Mode]> {
  return {
    client: fc.tuple(fc.constantFrom(...kinds), fc.constantFrom(...MODES)),
    run: ([k, m]) => client(target, k, m),
    check: ([k, m], outcome) => {
      if (good.includes(k) && m === "echo")
        assert.deepEqual(outcome, { got: "echo\nhello\n" }, `${k}/${m}`);
    },
    whole: () => servesWell(target, good),
    maxLength: 12,
    numRuns: 12,
  };
}

const serverEnv = () => ({
  ...process.env,
  PATH: PATH_WITH_BIN,
  CERTFILE: pair.cert,
  KEYFILE: pair.key,
});

async function target(program: readonly string[], options: string[] = []): Promise<Target> {
  const args = ["-v", "-RHl0", "-c", "200", ...options, "127.0.0.1", "0", ...program];
  return {
    server: await startServer(ours("tcpserver"), args, { env: serverEnv() }),
    connections: 0,
    said: new Map(),
  };
}

test("tls-sniff, then tlsd or not, then tcpforward (tls-everywhere's chain): random mixes of misbehaving clients and services at once; each ends alone, the good ones are served", async () => {
  const to = ["tcpforward", "127.0.0.1", String(servicePort)];
  const chain = ["tls-sniff", "-t", "300", "--plain", "{", ...to, "}", "tlsd", ...to];
  const t = await target(chain);
  await chaos(t, servicePlan(t, KINDS, ["tls", "plain"]));
});

test("tlsd and a spawned program (a shell that answers like the service): random mixes of misbehaving TLS clients at once; each ends alone, no process left", async () => {
  // The service's three ways, as a program on fds 0/1: echo, end at once, or be killed.
  const program = [
    "sh",
    "-c",
    'IFS= read -r mode; case "$mode" in echo) printf "echo\\n"; exec cat;; reset) kill -9 $$;; esac',
  ];
  const kinds = KINDS.filter((k) => !k.startsWith("plain"));
  const t = await target(["tlsd", "-v", "2", ...program]);
  await chaos(t, servicePlan(t, kinds, ["tls"]));
});

// ---- STARTTLS: starttls-wrapper in local mode in front of an SMTP server with no TLS --------

const SMTP_KINDS = [
  "smtp-tls", // EHLO, STARTTLS, the handshake, EHLO again, QUIT: the whole dialogue
  "smtp-plain", // EHLO, QUIT without TLS
  "smtp-reset-early", // a reset right after the greeting
  "smtp-reset-at-starttls", // a reset right after the 220 to STARTTLS
  "smtp-garbage-at-starttls", // bytes that are no ClientHello after the 220
  "smtp-injected", // a command behind STARTTLS in the same segment (refused by the wrapper)
  "smtp-tls-abandoned", // inside TLS: EHLO, then the TCP connection closed at once
] as const;
type SmtpKind = (typeof SMTP_KINDS)[number];

/** Reads `stream` until `pattern` matches what came so far (rejects if it ends first). */
function until(stream: Duplex, pattern: RegExp, got: { text: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!pattern.test(got.text)) return;
      stream.off("data", onData);
      stream.off("close", onClose);
      resolve();
    };
    const onData = (d: Buffer | string) => {
      got.text += d.toString();
      check();
    };
    const onClose = () => reject(new Error(`ended before ${pattern}: ${JSON.stringify(got.text)}`));
    stream.on("data", onData);
    stream.once("close", onClose);
    check();
  });
}

/** One SMTP client of `kind`; resolves with what it read by the time its connection closed
 * (or with the error that ended its dialogue), and fails after 15 s (a hang). */
async function smtpClient(target: Target, kind: SmtpKind): Promise<Outcome> {
  target.connections++;
  const tcp = connect(target.server.port, "127.0.0.1");
  tcp.on("error", () => {});
  const closed = new Promise<void>((resolve) => tcp.once("close", () => resolve()));
  const plain = { text: "" };
  const dialogue = async (): Promise<string> => {
    await until(tcp, /^220 .*\r\n/, plain);
    if (kind === "smtp-reset-early") return (void tcp.resetAndDestroy(), plain.text);
    tcp.write("EHLO client.example\r\n");
    await until(tcp, /250 [^\r]*\r\n$/, plain);
    if (kind === "smtp-plain") {
      tcp.write("QUIT\r\n");
      await until(tcp, /221 [^\r]*\r\n$/, plain);
      return plain.text;
    }
    if (kind === "smtp-injected") {
      tcp.write("STARTTLS\r\nMAIL FROM:<a@b>\r\n");
      return plain.text;
    }
    tcp.write("STARTTLS\r\n");
    await until(tcp, /220 [^\r]*\r\n$/, plain);
    if (kind === "smtp-reset-at-starttls") return (void tcp.resetAndDestroy(), plain.text);
    if (kind === "smtp-garbage-at-starttls") {
      tcp.end(Buffer.concat([Buffer.from("160303", "hex"), randomBytes(100)]));
      return plain.text;
    }
    tcp.removeAllListeners("data");
    const tls = tlsConnect({ socket: tcp, servername: "localhost", ca: [ca] });
    tls.on("error", () => {});
    const secret = { text: "" };
    await new Promise<void>((resolve, reject) => {
      tls.once("secureConnect", resolve);
      tls.once("close", () => reject(new Error("no TLS session")));
    });
    tls.write("EHLO client.example\r\n");
    await until(tls, /250 [^\r]*\r\n$/, secret);
    if (kind === "smtp-tls-abandoned") return (void tcp.destroy(), secret.text);
    tls.write("QUIT\r\n");
    await until(tls, /221 [^\r]*\r\n$/, secret);
    tls.end();
    return secret.text;
  };
  let timer: NodeJS.Timeout | undefined;
  try {
    const got = await Promise.race([
      dialogue(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${kind}: not over after 15 s`)), 15_000);
      }),
    ]);
    await closed;
    return { got };
  } catch (error) {
    if ((error as Error).message.includes("not over")) throw error;
    tcp.destroy();
    await closed;
    return { got: "", error: (error as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

const FAKE_SMTP = join(ROOT, "test", "fixtures", "fake-smtp");

/** The plan for SMTP clients against the wrapper `t`: the whole dialogues end with QUIT's 221. */
function smtpPlan(t: Target): Plan<SmtpKind> {
  return {
    client: fc.constantFrom(...SMTP_KINDS),
    run: (k) => smtpClient(t, k),
    check: (k, outcome) => {
      if (k === "smtp-tls" || k === "smtp-plain")
        assert.match(outcome.got, /221 fake\.example bye\r\n$/, `${k}: ${JSON.stringify(outcome)}`);
    },
    whole: async () => {
      const tls = await smtpClient(t, "smtp-tls");
      assert.match(
        tls.got,
        /^250-fake\.example\r\n[^]*221 fake\.example bye\r\n$/,
        JSON.stringify(tls),
      );
      const plain = await smtpClient(t, "smtp-plain");
      assert.match(plain.got, /221 fake\.example bye\r\n$/, JSON.stringify(plain));
    },
    maxLength: 10,
    numRuns: 10,
  };
}

test("starttls-wrapper in local mode in front of an SMTP server with no TLS: random mixes of misbehaving SMTP clients at once; each ends alone, the whole dialogues are served, no process left", async () => {
  const t = await target(["starttls-wrapper", "-p", "smtp", FAKE_SMTP]);
  await chaos(t, smtpPlan(t));
});

test("starttls-wrapper handing clients over to tcpserver --proxy tlsd: the same mixes; each ends alone on both sides, no fd or process left on either", async () => {
  const behind = await startServer(
    ours("tcpserver"),
    ["-v", "--proxy", "-RHl0", "-c", "200", "127.0.0.1", "0", "tlsd", FAKE_SMTP],
    { env: serverEnv() },
  );
  const wrapper = ["starttls-wrapper", "-p", "smtp", "127.0.0.1", String(behind.port), FAKE_SMTP];
  const t = await target(wrapper);
  await chaos(t, smtpPlan(t), behind);
});

// ---- PROXY headers: tcpserver --proxy in front of tcpforward --------------------------------

const PROXY_KINDS = [
  "v1", // a whole v1 header, then the line and a half-close
  "v2", // the same with a v2 header
  "v1-split", // the header in two writes with a pause between
  "partial-reset", // half a header, then a reset
  "partial-close", // half a header, then the end
  "garbage", // no header: random bytes
  "nothing", // connected, then closed at once
] as const;
type ProxyKind = (typeof PROXY_KINDS)[number];

const V2_SIGNATURE = Buffer.from("0d0a0d0a000d0a515549540a", "hex");

/** A PROXY v2 header for TCP over IPv4, 192.0.2.7:4242 to 198.51.100.1:25. */
function v2Header(): Buffer {
  const addresses = Buffer.from([192, 0, 2, 7, 198, 51, 100, 1, 0x10, 0x92, 0, 25]);
  return Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11, 0, addresses.length]), addresses]);
}

/** One client of `kind` in front of a PROXY-reading tcpserver: what it read by the close. */
function proxyClient(target: Target, kind: ProxyKind): Promise<Outcome> {
  target.connections++;
  return new Promise((resolve, reject) => {
    const tcp = connect(target.server.port, "127.0.0.1");
    let got = "";
    let error: string | undefined;
    const timer = setTimeout(() => {
      tcp.destroy();
      reject(new Error(`${kind}: not over after 15 s (read ${JSON.stringify(got)})`));
    }, 15_000);
    tcp.setEncoding("latin1");
    tcp.on("data", (d: string) => (got += d));
    tcp.on("error", (e: NodeJS.ErrnoException) => (error ??= e.code ?? e.message));
    tcp.once("close", () => {
      clearTimeout(timer);
      resolve(error === undefined ? { got } : { got, error });
    });
    const v1 = "PROXY TCP4 192.0.2.7 198.51.100.1 4242 25\r\n";
    const line = "echo\nhello\n";
    if (kind === "v1") tcp.end(v1 + line);
    else if (kind === "v2") tcp.end(Buffer.concat([v2Header(), Buffer.from(line)]));
    else if (kind === "v1-split") {
      tcp.write(v1.slice(0, 9));
      setTimeout(() => tcp.end(v1.slice(9) + line), 30);
    } else if (kind === "partial-reset") {
      tcp.write(v1.slice(0, 12));
      setTimeout(() => tcp.resetAndDestroy(), 20);
    } else if (kind === "partial-close") tcp.end(v1.slice(0, 12));
    else if (kind === "garbage") tcp.end(randomBytes(64));
    else tcp.end();
  });
}

test("tcpserver --proxy in front of tcpforward: random mixes of whole, split, partial and missing PROXY headers at once; each ends alone, the whole ones are served, no fd left", async () => {
  const t = await target(["tcpforward", "127.0.0.1", String(servicePort)], ["--proxy"]);
  const whole = ["v1", "v2", "v1-split"] as const;
  await chaos(t, {
    client: fc.constantFrom(...PROXY_KINDS),
    run: (k) => proxyClient(t, k),
    check: (k, outcome) => {
      if ((whole as readonly string[]).includes(k))
        assert.deepEqual(outcome, { got: "echo\nhello\n" }, k);
    },
    whole: async () => {
      for (const kind of whole)
        assert.deepEqual(await proxyClient(t, kind), { got: "echo\nhello\n" }, kind);
    },
    maxLength: 12,
    numRuns: 12,
  });
});
