// ucspi-demo: a tiny line service for trying the toolkit. It greets the client with what the
// chain told it (address, TLS details when there are any) and echoes lines until "quit".
// `ucspi-demo smtp` is an SMTP sink instead (smtp.ts), for trying starttls-wrapper; `ucspi-demo
// http` answers one HTTP request (http.ts), for trying tls-sniff.
import { createInterface } from "node:readline";
import type { Duplex } from "node:stream";
import { connectionStream, exitStatus } from "../ucspi/chain.ts";
import type { Env } from "../ucspi/env.ts";
import { FatalError, causeText } from "../ucspi/errors.ts";
import type { Stage } from "../ucspi/stage.ts";
import { httpPage } from "./http.ts";
import { smtpSink } from "./smtp.ts";

export const demoStage: Stage = {
  async run(ctx) {
    const stream = connectionStream(ctx.connection);
    // A client's reset ends its session, never the server this may run in; readline passes the
    // stream's error on to the loops below, which end with it: one line, as tcpforward says it.
    let broke: unknown;
    stream.on("error", (error) => {
      broke ??= error;
      stream.destroy();
    });
    try {
      await session(stream, ctx.argv, ctx.env);
    } catch (error) {
      if (broke === undefined) throw error;
    }
    if (broke !== undefined) {
      const ip = ctx.env["TCPREMOTEIP"] ?? "unknown";
      throw new FatalError(`${ip}: the client's connection broke: ${causeText(broke)}`, 111);
    }
    return exitStatus(0);
  },
};

async function session(stream: Duplex, argv: readonly string[], env: Readonly<Env>) {
  // Bytes both ways, one character each (latin1): a client's line goes back as its bytes, and
  // the environment's values (byte strings, src/ucspi/env.ts) are written as they are. As
  // UTF-8, a byte ff came back as U+FFFD, and $'a\xffb' went out as a\xc3\xbfb.
  stream.setEncoding("latin1");
  stream.setDefaultEncoding("latin1");
  if (argv[1] === "smtp" || argv[1] === "http") {
    await (argv[1] === "smtp" ? smtpSink : httpPage)(stream, env);
    await new Promise<void>((resolve) => stream.end(resolve));
    return;
  }
  const who = `${env["TCPREMOTEIP"] ?? "unknown"} port ${env["TCPREMOTEPORT"] ?? "?"}`;
  const tls = env["SSL_PROTOCOL"] ? ` over ${env["SSL_PROTOCOL"]} ${env["SSL_CIPHER"] ?? ""}` : "";
  stream.write(`hello ${who}${tls}; this is ucspi-tls. Type a line, or quit.\r\n`);
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  try {
    for await (const line of lines) {
      if (line.trim().toLowerCase() === "quit") break;
      stream.write(`echo: ${line}\r\n`);
    }
  } finally {
    lines.close();
  }
  await new Promise<void>((resolve) => stream.end(resolve));
}
