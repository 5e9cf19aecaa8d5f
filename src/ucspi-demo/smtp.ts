// `ucspi-demo smtp`: a tiny SMTP sink to try starttls-wrapper with. It speaks enough SMTP for
// swaks, curl and smtplib (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT), knows nothing of TLS
// itself, and tells the client where its mail came from and how (then throws the mail away).
import { createInterface } from "node:readline";
import type { Duplex } from "node:stream";
import type { Env } from "../ucspi/env.ts";

export async function smtpSink(stream: Duplex, env: Readonly<Env>): Promise<void> {
  const from = env["TCPREMOTEIP"] ?? "unknown";
  const how = env["SSL_PROTOCOL"] ? `over ${env["SSL_PROTOCOL"]}` : "in plaintext";
  const say = (text: string) => stream.write(`${text}\r\n`);
  say("220 ucspi-tls.demo ESMTP demo sink");
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  try {
    await converse(lines, say, `${from} ${how}`);
  } finally {
    // Closed on the way out, so that a reset after QUIT is not re-emitted by a reader nobody
    // listens to any more.
    lines.close();
  }
}

/** The session after the greeting, until QUIT or the end; `whence` is where mail came from. */
async function converse(
  lines: ReturnType<typeof createInterface>,
  say: (text: string) => void,
  whence: string,
): Promise<void> {
  let data: number | undefined;
  for await (const line of lines) {
    if (data !== undefined) {
      if (line === ".") {
        say(`250 ok: ${data} bytes from ${whence}, thrown away (demo)`);
        data = undefined;
      } else data += line.length + 2; // bytes: one character each (stage.ts)
      continue;
    }
    const verb = line.split(" ")[0]?.toUpperCase() ?? "";
    switch (verb) {
      case "EHLO":
        say("250-ucspi-tls.demo\r\n250-PIPELINING\r\n250 8BITMIME");
        break;
      case "HELO":
        say("250 ucspi-tls.demo");
        break;
      case "MAIL":
      case "RCPT":
      case "RSET":
      case "NOOP":
        say("250 ok");
        break;
      case "DATA":
        data = 0;
        say("354 go ahead");
        break;
      case "QUIT":
        say("221 ucspi-tls.demo bye");
        return;
      default:
        say("502 unimplemented");
    }
  }
}
