// XMPP (RFC 6120 §5): our stream header, the server's first <stream:features/> with
// <starttls/> in it, our <starttls/>, the server's <proceed/>. The program opens its own stream
// over TLS (a new stream, as after every STARTTLS), so nothing is given to it first.
import { TLS_NS } from "../dialogue/xmpp.ts";
import { UpgradeError, quoted } from "./reader.ts";
import type { ClientUpgrade } from "./types.ts";

/** The most we read of the server's stream header and features before TLS. */
const MAX_FEATURES = 64 * 1024;

/** xmlns='urn:ietf:params:xml:ns:xmpp-tls' (either quote), as a regular expression. */
const TLS_ATTRIBUTE = `(['"])${TLS_NS.replace(/\./g, "\\.")}\\1`;

/** The streams namespace, whose elements (stream, features, error) carry a prefix the
 * server chooses in its stream header: "stream" by custom, not by rule (RFC 6120 §4.8.5). */
const STREAMS_NS = "http://etherx.jabber.org/streams";

/** The prefix a stream header tag binds to the streams namespace, when it is that header. */
export function streamPrefix(tag: string): string | undefined {
  const name = /^<([A-Za-z_][\w.-]*):stream[\s/>]/.exec(tag)?.[1];
  if (name === undefined) return undefined;
  const bound = new RegExp(`\\sxmlns:${name.replace(/\./g, "\\.")}\\s*=\\s*(['"])([^'"]*)\\1`).exec(
    tag,
  );
  return bound?.[2] === STREAMS_NS ? name : undefined;
}

/** Whether `tag` opens an element named `name` (the name whole, not a longer one). */
const opens = (tag: string, name: string) =>
  tag.startsWith(`<${name}`) && /^[\s/>]/.test(tag.slice(name.length + 1));

/** Whether the server's features (the text up to their end) offer STARTTLS. */
export function featuresOfferStartTls(text: string, prefix = "stream"): boolean {
  const at = text.indexOf(`<${prefix}:features`);
  const features = at < 0 ? "" : text.slice(at);
  return new RegExp(`<starttls\\s+xmlns=${TLS_ATTRIBUTE}`).test(features);
}

/** Characters that cannot be in an XML attribute value we write. */
const escapeAttribute = (value: string) =>
  value.replace(/[&<>'"]/g, (c) => `&#${c.charCodeAt(0)};`);

export const xmpp: ClientUpgrade = async (io, names) => {
  io.send(
    `<?xml version='1.0'?><stream:stream to='${escapeAttribute(names.server)}' version='1.0' ` +
      "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
  );
  let prefix = "stream";
  const opened = await io.untilTag((tag) => {
    prefix = streamPrefix(tag) ?? prefix;
    return (
      tag.startsWith(`</${prefix}:`) || (opens(tag, `${prefix}:features`) && tag.endsWith("/>"))
    );
  }, MAX_FEATURES);
  const features = opened.includes(`<${prefix}:features`);
  if (!features && (opened.includes(`<${prefix}:error`) || opened.includes(`</${prefix}:stream`)))
    throw new UpgradeError("refused", "server ended the stream before its features");
  // Never "not-offered": our stream is open, so plaintext could not go on from the program's
  // own stream header.
  if (!featuresOfferStartTls(opened, prefix))
    throw new UpgradeError("protocol", "server does not offer STARTTLS");
  io.send(`<starttls xmlns='${TLS_NS}'/>`);
  const answer = await io.untilTag(
    (tag) =>
      /^<\/(proceed|failure)\s*>$/.test(tag) ||
      tag.startsWith(`</${prefix}:`) ||
      ((opens(tag, "proceed") || opens(tag, "failure")) && tag.endsWith("/>")),
    MAX_FEATURES,
  );
  if (new RegExp(`^\\s*<proceed\\s+xmlns=${TLS_ATTRIBUTE}\\s*(/>|></proceed>)$`).test(answer))
    return;
  // Only a <failure/> of the TLS namespace, and nothing before it, is the server's refusal;
  // anything else (bytes before the answer, a stream error) is reported as it came.
  if (new RegExp(`^\\s*<failure\\s+xmlns=${TLS_ATTRIBUTE}`).test(answer))
    throw new UpgradeError("refused", "server refused STARTTLS (<failure/>)");
  throw new UpgradeError("protocol", `server answered <starttls/> with ${quoted(answer)}`);
};
