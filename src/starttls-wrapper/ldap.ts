// starttls-wrapper -p ldap: StartTLS for an LDAP server that has none. The client speaks
// first: its first LDAPMessage is looked at without taking it. A StartTLS extended request is
// answered here (success, its messageID) and tlsd makes the handshake in this process, then
// runs prog (the server, or tcpforward to it) behind TLS: the server never sees the request.
// Requests sent after it before its answer are refused, never relayed. Any other first
// operation goes to the server untouched (opportunistic; a StartTLS later, after a bind say,
// is the server's to refuse, its state could not move across TLS), or with -r gets a Notice
// of Disconnection (confidentialityRequired) and the end.
import {
  CONFIDENTIALITY_REQUIRED,
  MAX_FIRST_MESSAGE,
  PROTOCOL_ERROR,
  noticeOfDisconnection,
  readFirstMessage,
  startTlsResponse,
} from "../dialogue/ldap.ts";
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

export async function runLdap(ctx: StageContext, options: WrapperOptions): Promise<number> {
  const { warn, info } = logger(ctx, options);
  const peeked = await peekFirst(
    ctx,
    options,
    ctx.connection,
    MAX_FIRST_MESSAGE,
    (bytes) => {
      const message = readFirstMessage(bytes);
      return message.kind === "more" ? message.need : true;
    },
    { what: "request", started: "first request" },
  );
  if ("status" in peeked) return peeked.status;
  const { connection } = peeked;
  const first = readFirstMessage(peeked.bytes);
  switch (first.kind) {
    case "starttls": {
      if (first.extra > 0) {
        warn(`${first.extra} bytes after StartTLS, before its answer: refused`);
        return refuse(
          connection,
          noticeOfDisconnection(PROTOCOL_ERROR, "requests after StartTLS before its answer"),
        );
      }
      take(connection, first.length);
      const unsent = send(connection, startTlsResponse(first.messageId));
      if (unsent) return clientGone(warn, unsent, "before the answer to its StartTLS");
      info("StartTLS");
      count("upgrade", options);
      return tlsBehind(ctx, options, connection);
    }
    case "other":
      if (options.policy === "require") {
        warn("a request without StartTLS: refused (-r)");
        count("refusal", options);
        return refuse(
          connection,
          noticeOfDisconnection(CONFIDENTIALITY_REQUIRED, "StartTLS is required"),
        );
      }
      info("a request without StartTLS");
      count("decline", options);
      return plaintext(ctx, options, connection);
    case "malformed":
    case "more":
      warn(`not an LDAP request: ${first.kind === "malformed" ? first.reason : "too long"}`);
      return refuse(connection, noticeOfDisconnection(PROTOCOL_ERROR, "not an LDAP request"));
  }
}
