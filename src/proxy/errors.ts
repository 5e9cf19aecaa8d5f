// The one error class of the PROXY protocol codec: a malformed header, TLV or resume record.

/** A PROXY header, TLV or resume record that does not match its format (code EPROXYFORMAT). */
export class ProxyFormatError extends Error {
  readonly code = "EPROXYFORMAT";
  override name = "ProxyFormatError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
