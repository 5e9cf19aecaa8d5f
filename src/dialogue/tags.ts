// XML tags (`<` to its `>`, quotes respected) found one by one in bytes that keep growing
// (an XMPP stream before TLS, either side's): each byte is looked at once however the bytes
// arrive, so a peer that sends them one at a time costs no more than one that sends them at
// once.
// Comments and CDATA are not known: an XMPP stream holds neither (RFC 6120 §11.1).

const LT = 0x3c;
const GT = 0x3e;
const QUOT = 0x22;
const APOS = 0x27;

export class TagScanner {
  private at = 0;
  private start = -1;
  private quote = 0;

  /** The next whole tag in `bytes` (the bytes given before, perhaps with more after them; a
   * latin1 string or a Buffer): its text and the offset just past its `>`; undefined until
   * more bytes come. */
  next(bytes: string | Buffer): { tag: string; end: number } | undefined {
    const text = typeof bytes === "string";
    for (; this.at < bytes.length; this.at++) {
      const c = text ? bytes.charCodeAt(this.at) : bytes[this.at];
      if (this.start < 0) {
        if (c === LT) this.start = this.at;
      } else if (this.quote !== 0) {
        if (c === this.quote) this.quote = 0;
      } else if (c === QUOT || c === APOS) this.quote = c;
      else if (c === GT) {
        const tag = text
          ? bytes.slice(this.start, ++this.at)
          : bytes.toString("latin1", this.start, ++this.at);
        this.start = -1;
        return { tag, end: this.at };
      }
    }
    return undefined;
  }
}
