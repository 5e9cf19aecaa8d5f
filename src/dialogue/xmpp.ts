// XMPP's STARTTLS (RFC 6120 section 5), as starttls-wrapper reads it, on the raw streams:
// the server's first <stream:features/> gets a <starttls/> of ours, and the client's first
// element after it is looked at: <starttls/> is answered by us with <proceed/>, anything else
// goes to the server. Bounded; only what is needed is parsed (the opening tags' names and
// the starttls element's namespace), on the bytes as latin1 text.

export const TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls";
/** The most bytes looked at, from either side, before the decision. */
export const MAX_LOOK = 64 * 1024;

export const PROCEED = `<proceed xmlns='${TLS_NS}'/>`;

export type Advertised = { kind: "more" } | { kind: "done"; text: string } | { kind: "none" };

const FEATURES = "<stream:features";
/** A server's own offer, right after its features' opening tag (then one of [\s>/]). */
const OWN_OFFER = "<starttls";

type Verdict = "ours" | "own" | "none";

/** The server's output, read as it comes, with <starttls/> added to its first features once
 * they are there. Each character is read once, and only the first MAX_LOOK + 1 are: a server
 * that dribbles its features a byte at a time costs no more than one that sends them at once
 * (the text so far was read again at every chunk), and where the output is split makes no
 * difference to the result. The verdict waits for what follows the features' opening tag: a
 * server's own offer there (kept, and ours not added) could come in the next chunk. */
export class FeaturesOffer {
  private readonly required: boolean;
  private readonly pieces: string[] = [];
  private length = 0;
  /** The characters read (past it, none is read again). */
  private read = 0;
  /** While FEATURES is looked for: the last characters read, where it may have begun. */
  private tail = "";
  /** Where FEATURES begins, where its tag ends ('>'), and where what follows that begins
   * (past whitespace): -1 until found. */
  private at = -1;
  private close = -1;
  private next = -1;
  private quote = "";
  private last = "";
  private selfClosing = false;
  private verdict: Advertised | undefined;

  constructor(required: boolean) {
    this.required = required;
  }

  /** The output so far, as the server sent it. */
  text(): string {
    if (this.pieces.length > 1) this.pieces.splice(0, this.pieces.length, this.pieces.join(""));
    return this.pieces[0] ?? "";
  }

  /** The server's next chunk (latin1 text): "more" until the verdict, then the output so far
   * with our offer ("done"), or "none" (no features to add to, within the bound). */
  push(chunk: string): Advertised {
    if (this.verdict) return this.verdict;
    const base = this.length;
    this.pieces.push(chunk);
    this.length += chunk.length;
    const verdict = this.scan(chunk, base) ?? this.bounded();
    if (verdict === undefined) return { kind: "more" };
    this.verdict = this.advertised(verdict);
    return this.verdict;
  }

  /** Reads `chunk` (which begins at `base`) up to the bound, or to the verdict. */
  private scan(chunk: string, base: number): Verdict | undefined {
    const end = Math.min(this.length, MAX_LOOK + 1);
    if (this.at < 0) {
      const text = this.tail + chunk.slice(0, end - base);
      const found = text.indexOf(FEATURES);
      if (found < 0) {
        this.tail = text.slice(1 - FEATURES.length);
        this.read = end;
        return undefined;
      }
      this.at = base - this.tail.length + found;
      this.read = this.at + FEATURES.length;
    }
    for (; this.read < end; this.read++) {
      const verdict = this.step(chunk[this.read - base] ?? "");
      if (verdict) return verdict;
    }
    return undefined;
  }

  /** One character after FEATURES: its tag (quotes respected), then what follows it. */
  private step(c: string): Verdict | undefined {
    if (this.close < 0) {
      if (this.read === this.at + FEATURES.length && !/[\s/>]/.test(c)) return "none";
      if (this.quote) {
        if (c === this.quote) this.quote = "";
      } else if (c === "'" || c === '"') this.quote = c;
      else if (c === ">") {
        this.close = this.read;
        this.selfClosing = this.last === "/";
        if (this.selfClosing) return "ours";
      }
      this.last = c;
      return undefined;
    }
    if (this.next < 0) {
      if (/\s/.test(c)) return undefined;
      this.next = this.read;
    }
    const k = this.read - this.next;
    if (k < OWN_OFFER.length) return c === OWN_OFFER[k] ? undefined : "ours";
    return /[\s>/]/.test(c) ? "own" : "ours";
  }

  /** Past the bound without a verdict: features whose opening tag is whole get our offer (what
   * follows it is no offer of the server's), anything else is passed as it is. */
  private bounded(): Verdict | undefined {
    if (this.length <= MAX_LOOK) return undefined;
    return this.close >= 0 ? "ours" : "none";
  }

  private advertised(verdict: Verdict): Advertised {
    if (verdict === "none") return { kind: "none" };
    const text = this.text();
    if (verdict === "own") return { kind: "done", text };
    const starttls = `<starttls xmlns='${TLS_NS}'>${this.required ? "<required/>" : ""}</starttls>`;
    const { selfClosing } = this;
    const features = text.slice(this.at, this.close + 1);
    const opening = selfClosing ? `${features.slice(0, -2).trimEnd()}>` : features;
    return {
      kind: "done",
      text:
        text.slice(0, this.at) +
        opening +
        starttls +
        (selfClosing ? "</stream:features>" : "") +
        text.slice(this.close + 1),
    };
  }
}

/** The server's output, at once, with <starttls/> added to its first features (FeaturesOffer
 * for one chunk). */
export function advertiseStartTls(text: string, required: boolean): Advertised {
  return new FeaturesOffer(required).push(text);
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
