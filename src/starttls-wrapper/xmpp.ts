// starttls-wrapper -p xmpp: STARTTLS for an XMPP server (client-to-server or server-to-server
// streams) that has none. The client's stream header goes to the server as it comes; the
// server's first <stream:features/> gets a <starttls/> of ours (<required/> with -r). The
// client's next element decides: <starttls/> is answered <proceed/> here, the plaintext server
// is let go, and tlsd makes the handshake in this process with a fresh prog behind it, which
// the client's restarted stream reaches as a new one (RFC 6120 section 5.4.3.3). Anything
// else goes to the server untouched (opportunistic), or ends the stream with a
// policy-violation error (-r); so does a limit (-t, the bytes looked at) that runs out before
// the decision. Bytes after <starttls/> before <proceed/> are refused.
import {
  MAX_LOOK,
  PROCEED,
  FeaturesOffer,
  firstClientElement,
  policyViolation,
  whitespaceBefore,
} from "../dialogue/xmpp.ts";
import { TagScanner } from "../dialogue/tags.ts";
import { peekBytes } from "../stream/peek.ts";
import { connectionStream } from "../ucspi/chain.ts";
import { relay } from "../stream/relay.ts";
import type { Connection, StageContext } from "../ucspi/stage.ts";
import {
  REFUSED,
  count,
  endWith,
  engineFd,
  failures,
  logger,
  passReset,
  resetClient,
  shown,
  startServer,
  take,
  tlsBehind,
  tlsdArgv,
} from "./client-first.ts";
import type { WrapperOptions } from "./options.ts";

/** "server": the server's output ended before the decision. */
type Decision = "starttls" | "plain" | "refused" | "server";

export async function runXmpp(ctx: StageContext, options: WrapperOptions): Promise<number> {
  const { warn, info } = logger(ctx, options);
  const client = connectionStream(ctx.connection);
  client.on("error", () => {});
  const { server, done: serverDone, letGo, wasReset, failedStatus } = startServer(ctx, options);
  const failure = failures(client, server, warn);

  // The client's end or close, also when it comes right after the decision (the same read):
  // tlsd would then wait for bytes that never come, till its handshake limit.
  let clientGone = false;
  const decision = await new Promise<Decision>((decide) => {
    // The server's output until its features have gone out.
    const offer = new FeaturesOffer(options.policy === "require");
    let clientText = "";
    let featuresSent = false;
    const timer = setTimeout(
      () => limit(`no STARTTLS decision within ${options.preTlsMs / 1000} s`, "timed out"),
      options.preTlsMs,
    );
    let decided = false;
    const toClient = (text: string) => {
      if (text) client.write(Buffer.from(text, "latin1"));
    };
    const done = (d: Decision) => {
      if (decided) return;
      decided = true;
      clearTimeout(timer);
      client.off("data", fromClient);
      server.off("data", fromServer);
      decide(d);
    };
    // A limit before the decision (-t, the bytes looked at): with -r the end, with a
    // policy-violation stream error; opportunistic, the session goes on in plaintext, as the
    // line protocols' does: what each side sent so far goes to the other as it came (the
    // server's features without our offer when they are not out yet).
    const limit = (why: string, text: string) => {
      if (options.policy === "require") {
        warn(why);
        count("refusal", options);
        client.write(policyViolation(text));
        return done("refused");
      }
      info(`${why}: plaintext`);
      if (!featuresSent) toClient(offer.text());
      if (clientText) server.write(Buffer.from(clientText, "latin1"));
      count("decline", options);
      done("plain");
    };
    const fromServer = (chunk: Buffer) => {
      if (featuresSent) return void client.write(chunk);
      const r = offer.push(chunk.toString("latin1"));
      if (r.kind === "more") return;
      featuresSent = true;
      if (r.kind === "none") {
        // No features to add to (an old server, an error): the session as it is.
        toClient(offer.text());
        if (clientText) server.write(Buffer.from(clientText, "latin1"));
        return done("plain");
      }
      client.write(Buffer.from(r.text, "latin1"));
      if (clientText) examine(true);
    };
    const fromClient = (chunk: Buffer) => {
      clientText += chunk.toString("latin1");
      examine();
    };
    // What of the client's text was looked at: its leading whitespace, and its tags. The
    // element is read again only when something that can decide has come (a tag's end, text
    // where an element belongs, the bound): read again at every chunk, a client that sent its
    // bytes one at a time cost the whole text at each, 64 KiB squared within -t.
    let spaces = 0;
    let tags = new TagScanner();
    let headers = 0;
    const mayDecide = () => {
      spaces += whitespaceBefore(clientText, spaces);
      if (clientText.length > MAX_LOOK) return true;
      if (spaces === clientText.length) return false;
      return clientText[spaces] !== "<" || tags.next(clientText) !== undefined;
    };
    const examine = (force = false) => {
      if (!force && !mayDecide()) return;
      const first = firstClientElement(clientText);
      // An XML declaration and a stream header; a third is no client's.
      if (first.kind === "header" && headers < 2) {
        // The client's stream header (also after our features, when the server spoke
        // first): the server's, as it would have been; the element that decides comes after.
        server.write(Buffer.from(clientText.slice(0, first.length), "latin1"));
        clientText = clientText.slice(first.length);
        headers++;
        spaces = 0;
        tags = new TagScanner();
        return examine();
      }
      if (first.kind === "more") {
        if (clientText.length > MAX_LOOK) limit("no element within the first 64 KiB", "bad format");
        return;
      }
      // Until the features have gone out, only the header goes to the server: what follows
      // it (an <auth> pipelined behind it, say) decides once they are out, and never reaches
      // the server before -r could refuse it. Bounded as the rest of what is looked at.
      if (!featuresSent) {
        if (clientText.length > MAX_LOOK)
          limit("more than 64 KiB before the server's features", "bad format");
        return;
      }
      if (first.kind === "starttls") {
        if (first.extra > 0) {
          warn(`${first.extra} bytes after <starttls/>, before <proceed/>: refused`);
          client.write(policyViolation("bytes after starttls"));
          return done("refused");
        }
        return done("starttls");
      }
      if (options.policy === "require") {
        warn(`<${first.kind === "other" ? shown(first.name) : "?"}> before STARTTLS: refused (-r)`);
        count("refusal", options);
        client.write(policyViolation("TLS is required"));
        return done("refused");
      }
      server.write(Buffer.from(clientText, "latin1"));
      count("decline", options);
      done("plain");
    };
    server.on("data", fromServer);
    client.on("data", fromClient);
    client.once("end", () => {
      clientGone = true;
      done("refused");
    });
    // A reset tells no end, only the close: the session must not wait out the pre-TLS limit.
    client.once("close", () => {
      clientGone = true;
      if (!decided) failure.warned();
      done("refused");
    });
    // A server that ends before the decision: what it said goes out, and the session ends.
    const serverGone = () => {
      if (decided) return;
      if (!featuresSent) toClient(offer.text());
      // A reset of the server's side reaches the client as a reset, after what it said.
      if (wasReset()) resetClient(ctx.connection);
      done("server");
    };
    server.once("end", serverGone);
    server.once("close", serverGone);
  });

  if (decision === "starttls") {
    info("STARTTLS");
    count("upgrade", options);
    client.pause();
    // For the native engine the client's reading stops before <proceed/>, so its ClientHello
    // stays in the socket, which tlsd then takes itself; a client that sent something
    // meanwhile (a keepalive) has its stream go to tlsd (node:tls).
    const fd = await engineFd(ctx, tlsdArgv(options, options.program), client);
    const connection: Connection = fd === undefined ? { stream: client } : { fd };
    client.write(PROCEED);
    server.destroy();
    letGo.stop();
    await serverDone.catch(() => undefined);
    // The look at what comes first shares -K with the handshake, as tlsd's own look does.
    const started = Date.now();
    if (
      clientGone ||
      client.destroyed ||
      !(await skipWhitespace(connection, options.handshakeMs))
    ) {
      if (!failure.warned("after <starttls/>")) info("client left after <starttls/>");
      client.destroy();
      return REFUSED;
    }
    const left = Math.max(1, options.handshakeMs - (Date.now() - started));
    return tlsBehind(ctx, { ...options, handshakeMs: left }, connection);
  }
  if (decision === "refused" || decision === "server") {
    // Its status before it is let go: one that failed (tcpforward, whose service reset its
    // connection) ended the session, and said why, as on every path: 111, not a refusal.
    const failed = decision === "server" ? failedStatus() : undefined;
    await endWith(client);
    client.destroy();
    server.destroy();
    letGo.stop();
    await serverDone.catch(() => undefined);
    return failed ?? REFUSED;
  }
  info("no STARTTLS");
  passReset(server, wasReset, ctx.connection);
  await relay(client, server);
  server.destroy();
  return failure.status(await serverDone);
}

/** Drops the whitespace that comes before the client's ClientHello (a newline after
 * <starttls/>, a keepalive sent before it read <proceed/>): legal between elements (RFC 6120
 * section 4.7), and no TLS. Only the whitespace is taken, what follows stays where it was (in
 * the socket, for the native engine). False when the client left meanwhile. */
async function skipWhitespace(connection: Connection, limitMs: number): Promise<boolean> {
  const deadline = Date.now() + limitMs;
  // Whatever bytes are there, each time: a peek never waits for more (which a socket whose
  // buffer fills with whitespace would answer with a stream of its own).
  for (let skipped = 0; skipped < MAX_LOOK;) {
    const silenceMs = deadline - Date.now();
    if (silenceMs <= 0) return true;
    const { look } = await peekBytes(connection, { silenceMs, maxBytes: MAX_LOOK }, () => true);
    if (look.kind === "closed") return false;
    if (look.kind !== "done") return true;
    const n = whitespaceBefore(look.bytes);
    if (n > 0) take(connection, n);
    if (n < look.bytes.length) return true;
    skipped += n;
  }
  // Only whitespace, as far as it is looked at: tlsd's handshake fails on it, and says so.
  return true;
}
