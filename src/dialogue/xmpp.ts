// XMPP's STARTTLS (RFC 6120 section 5), as starttls-wrapper reads it, on the raw streams:
// the server's first <stream:features/> gets a <starttls/> of ours, and the client's first
// element after it is looked at: <starttls/> is answered by us with <proceed/>, anything else
// goes to the server. Bounded; only what is needed is parsed (the opening tags' names and
// the starttls element's namespace), on the bytes as latin1 text.

export const TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls";
/** The most bytes looked at, from either side, before the decision. */
export const MAX_LOOK = 64 * 1024;

export const PROCEED = `<proceed xmlns='${TLS_NS}'/>`;

/** The server's output with <starttls/> added to its first features, once they are there. */
export function advertiseStartTls(
  text: string,
  required: boolean,
): { kind: "more" } | { kind: "done"; text: string } | { kind: "none" } {
  const at = text.indexOf("<stream:features");
  if (at < 0) return text.length > MAX_LOOK ? { kind: "none" } : { kind: "more" };
  const close = tagEnd(text, at);
  if (close === undefined) return text.length > MAX_LOOK ? { kind: "none" } : { kind: "more" };
  const features = text.slice(at, close + 1);
  if (!/^<stream:features[\s/>]/.test(features)) return { kind: "none" };
  const starttls = `<starttls xmlns='${TLS_NS}'>${required ? "<required/>" : ""}</starttls>`;
  const selfClosing = features.endsWith("/>");
  // A server that offers STARTTLS itself keeps its own offer (ours would answer it anyway).
  const rest = text.slice(close + 1);
  if (!selfClosing && /^\s*<starttls[\s>/]/.test(rest)) return { kind: "done", text };
  const opening = selfClosing ? `${features.slice(0, -2).trimEnd()}>` : features;
  return {
    kind: "done",
    text: text.slice(0, at) + opening + starttls + (selfClosing ? "</stream:features>" : "") + rest,
  };
}

export type ClientElement =
  | { kind: "more" }
  /** length: the element's characters; extra: what follows it, 0 when that is whitespace
   * only (none but whitespace between elements may, before <proceed/>). */
  | { kind: "starttls"; length: number; extra: number }
  | { kind: "other"; name: string }
  /** The client's XML declaration or stream header, `length` characters with the whitespace
   * before it: late, because the server spoke first (its features before the client's header). */
  | { kind: "header"; length: number }
  | { kind: "malformed"; reason: string };

/** The client's first element after the features (whitespace keepalives skipped). */
export function firstClientElement(text: string): ClientElement {
  // XML's whitespace only (RFC 6120 section 4.7): a byte that \s also takes (NBSP, a form
  // feed) is text where an element belongs, as it is after <starttls/>.
  const start = whitespaceBefore(text);
  if (start === text.length)
    return text.length > MAX_LOOK
      ? { kind: "malformed", reason: "only whitespace" }
      : { kind: "more" };
  if (text[start] !== "<") return { kind: "malformed", reason: "text where an element belongs" };
  const name = /^<([^\s/>]*)/.exec(text.slice(start))?.[1] ?? "";
  const complete = start + 1 + name.length < text.length;
  if (!complete)
    return text.length > MAX_LOOK
      ? { kind: "malformed", reason: "a tag too long" }
      : { kind: "more" };
  if (name === "?xml" || /^([^:]+:)?stream$/.test(name)) {
    const end = tagEnd(text, start);
    return end === undefined ? { kind: "more" } : { kind: "header", length: end + 1 };
  }
  if (name !== "starttls") return { kind: "other", name };
  const close = tagEnd(text, start);
  if (close === undefined) return { kind: "more" };
  const tag = text.slice(start, close + 1);
  const ns = /\sxmlns\s*=\s*(?:'([^']*)'|"([^"]*)")/.exec(tag);
  if ((ns?.[1] ?? ns?.[2]) !== TLS_NS) return { kind: "other", name };
  let end = close + 1;
  if (!tag.endsWith("/>")) {
    const closing = /^\s*<\/starttls\s*>/.exec(text.slice(end));
    if (!closing) {
      if (text.length - end < 32 && "</starttls>".startsWith(text.slice(end).trim()))
        return { kind: "more" };
      return { kind: "malformed", reason: "a <starttls> with content" };
    }
    end += closing[0].length;
  }
  const rest = text.length - end;
  return {
    kind: "starttls",
    length: end,
    extra: whitespaceBefore(text, end) < rest ? rest : 0,
  };
}

/** How many characters (or bytes) from `from` on are XML whitespace (RFC 6120 section 4.7:
 * legal between top-level elements, a keepalive among them): space, tab, CR, LF. */
export function whitespaceBefore(text: string | Buffer, from = 0): number {
  const space = (c: number | undefined) => c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;
  let n = from;
  while (n < text.length && space(typeof text === "string" ? text.charCodeAt(n) : text[n])) n++;
  return n - from;
}

/** Where the tag that opens at `at` ends (its '>'), quotes respected. */
function tagEnd(text: string, at: number): number | undefined {
  let quote = "";
  for (let i = at + 1; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === quote) quote = "";
    } else if (c === "'" || c === '"') quote = c;
    else if (c === ">") return i;
  }
  return undefined;
}

/** The stream error that ends a session refused before TLS. */
export function policyViolation(text: string): string {
  const ns = "urn:ietf:params:xml:ns:xmpp-streams";
  return `<stream:error><policy-violation xmlns='${ns}'/><text xmlns='${ns}'>${text}</text></stream:error></stream:stream>`;
}
