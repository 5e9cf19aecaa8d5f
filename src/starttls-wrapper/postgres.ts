// starttls-wrapper -p postgres: TLS for a PostgreSQL server that has none. The client speaks
// first: its start-up packet is looked at without taking it (peek.ts). An SSLRequest is
// answered 'S' here and tlsd makes the handshake in this process, then runs prog (the server,
// or tcpforward to it) behind TLS: the server never sees the request. A GSSENCRequest is
// answered 'N' (the client then asks for TLS or starts in plaintext). A StartupMessage
// without TLS goes to prog untouched (opportunistic), or gets the server's own kind of
// refusal (-r); a CancelRequest always goes through. Bytes the client sends after its
// SSLRequest and before our answer are refused, never relayed (CVE-2021-23214).
import { MAX_STARTUP, fatalError, readStartup } from "../dialogue/postgres.ts";
import type { StageContext } from "../ucspi/stage.ts";
import {
  clientGone,
  count,
  logger,
  peekFirst,
  plaintext,
  refuse,
  send,
  take,
  tlsBehind,
} from "./client-first.ts";
import type { WrapperOptions } from "./options.ts";

export async function runPostgres(ctx: StageContext, options: WrapperOptions): Promise<number> {
  const { warn, info } = logger(ctx, options);
  let connection = ctx.connection;
  // At most one GSSENCRequest comes before the packet that counts.
  for (let asked = 0; asked < 2; asked++) {
    const first = await peekFirst(
      ctx,
      options,
      connection,
      MAX_STARTUP,
      (bytes) => {
        const packet = readStartup(bytes);
        return packet.kind === "more" ? packet.need : true;
      },
      { what: "start-up packet", started: "start-up packet" },
    );
    if ("status" in first) return first.status;
    connection = first.connection;
    const packet = readStartup(first.bytes);
    switch (packet.kind) {
      case "ssl":
      case "gssenc": {
        if (packet.extra > 0) {
          warn(
            `${packet.extra} bytes after the ${packet.kind === "ssl" ? "SSLRequest" : "GSSENCRequest"}, before its answer: refused`,
          );
          return refuse(connection);
        }
        take(connection, 8);
        if (packet.kind === "gssenc") {
          const unsent = send(connection, Buffer.from("N"));
          if (unsent) return clientGone(warn, unsent, "before the answer to its GSSENCRequest");
          continue;
        }
        const unsent = send(connection, Buffer.from("S"));
        if (unsent) return clientGone(warn, unsent, "before the answer to its SSLRequest");
        info("SSLRequest: TLS");
        count("upgrade", options);
        return tlsBehind(ctx, options, connection);
      }
      case "startup":
        if (options.policy === "require") {
          warn("a start-up without TLS: refused (-r)");
          count("refusal", options);
          return refuse(connection, fatalError("28000", "TLS is required (sslmode=require)"));
        }
        info("a start-up without TLS");
        count("decline", options);
        return plaintext(ctx, options, connection);
      case "cancel":
        info("a CancelRequest");
        return plaintext(ctx, options, connection);
      case "malformed":
        warn(`not a PostgreSQL start-up packet: ${packet.reason}`);
        return refuse(connection, fatalError("08P01", `invalid start-up packet: ${packet.reason}`));
      case "more":
        break;
    }
  }
  warn("a second GSSENCRequest: refused");
  return refuse(connection, fatalError("08P01", "GSSENCRequest after GSSENCRequest"));
}
