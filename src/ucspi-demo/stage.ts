// ucspi-demo: a tiny line service for trying the toolkit. It greets the client with what the
// chain told it (address, TLS details when there are any) and echoes lines until "quit".
// `ucspi-demo smtp` is an SMTP sink instead (smtp.ts), for trying starttls-wrapper; `ucspi-demo
// http` answers one HTTP request (http.ts), for trying tls-sniff.
import { createInterface } from "node:readline";
import { connectionStream, exitStatus } from "../ucspi/chain.ts";
import type { Stage } from "../ucspi/stage.ts";
import { httpPage } from "./http.ts";
import { smtpSink } from "./smtp.ts";

export const demoStage: Stage = {
  async run(ctx) {
    const stream = connectionStream(ctx.connection);
    // A client's reset ends its session, never the server this may run in: the reading loops
    // below end on the stream's close (readline's too, since it gets no error to re-throw).
    stream.on("error", () => stream.destroy());
    const env = ctx.env;
    if (ctx.argv[1] === "smtp" || ctx.argv[1] === "http") {
      await (ctx.argv[1] === "smtp" ? smtpSink : httpPage)(stream, env);
      await new Promise<void>((resolve) => stream.end(resolve));
      return exitStatus(0);
    }
    const who = `${env["TCPREMOTEIP"] ?? "unknown"} port ${env["TCPREMOTEPORT"] ?? "?"}`;
    const tls = env["SSL_PROTOCOL"]
      ? ` over ${env["SSL_PROTOCOL"]} ${env["SSL_CIPHER"] ?? ""}`
      : "";
    stream.write(`hello ${who}${tls}; this is ucspi-tls. Type a line, or quit.\r\n`);
    const lines = createInterface({ input: stream, crlfDelay: Infinity });
    for await (const line of lines) {
      if (line.trim().toLowerCase() === "quit") break;
      stream.write(`echo: ${line}\r\n`);
    }
    lines.close();
    await new Promise<void>((resolve) => stream.end(resolve));
    return exitStatus(0);
  },
};
