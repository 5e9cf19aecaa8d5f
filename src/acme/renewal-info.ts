// ACME Renewal Information (ARI, RFC 9773): the CA says when each certificate should be renewed,
// a window it may move earlier (a mass revocation ahead, say) and whose renewals Let's Encrypt
// exempts from its rate limits. tlsd asks for the window of a certificate from the cache, picks
// a moment in it at random (so that renewals spread), asks again when the CA says (Retry-After),
// and names the certificate its order replaces.
//
// What the CA says is untrusted input: parseRenewalInfo takes any bytes and either returns a
// window or says what is wrong with them.

/** A certificate's ARI identifier: its issuer's key identifier (the authority key identifier
 * extension's keyIdentifier) and its serial number's DER content, each base64url, a dot
 * between. aki and serial: hex, as X509 libraries print them (the serial without the sign
 * byte DER adds before a first byte of 0x80 or more). */
export function certificateId(akiHex: string, serialHex: string): string {
  let serial = Buffer.from(serialHex.length % 2 ? `0${serialHex}` : serialHex, "hex");
  // DER: a positive INTEGER whose first byte has its high bit set gets a 0 byte before it.
  if ((serial[0] ?? 0) & 0x80) serial = Buffer.concat([Buffer.of(0), serial]);
  return `${Buffer.from(akiHex, "hex").toString("base64url")}.${serial.toString("base64url")}`;
}

export interface RenewalWindow {
  /** When renewal should start and end (ms since the epoch); start < end. */
  start: number;
  end: number;
  /** Where the CA explains a window it moved (an incident), if it says. */
  explanationUrl?: string;
}

export class RenewalInfoError extends Error {}

/** The largest answer read (a window is some 100 bytes). */
export const MAX_RENEWAL_INFO = 64 * 1024;

/** RFC 3339 as ARI writes it: a date, a time (fraction optional), Z or an offset. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** The renewalInfo resource's answer, read. */
export function parseRenewalInfo(body: Uint8Array): RenewalWindow {
  if (body.length > MAX_RENEWAL_INFO) throw new RenewalInfoError("the answer is too long");
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch {
    throw new RenewalInfoError("the answer is not JSON");
  }
  const window = (json as { suggestedWindow?: unknown } | null)?.suggestedWindow;
  if (typeof window !== "object" || window === null)
    throw new RenewalInfoError("the answer has no suggestedWindow");
  const { start, end } = window as { start?: unknown; end?: unknown };
  const from = instant(start, "start");
  const to = instant(end, "end");
  if (to <= from) throw new RenewalInfoError("the suggested window ends before it starts");
  const explanation = (json as { explanationURL?: unknown }).explanationURL;
  return {
    start: from,
    end: to,
    ...(typeof explanation === "string" && /^https?:\/\/[\x21-\x7e]{1,500}$/.test(explanation)
      ? { explanationUrl: explanation }
      : {}),
  };
}

function instant(value: unknown, which: string): number {
  const time = typeof value === "string" && RFC3339.test(value) ? Date.parse(value) : NaN;
  if (!Number.isFinite(time))
    throw new RenewalInfoError(`the suggested window's ${which} is not an RFC 3339 time`);
  return time;
}

/** The moment to renew: one chosen at random in the window (RFC 9773 §4.2), so that every
 * certificate of the window does not go at once. random: [0, 1). */
export function renewalMoment(window: RenewalWindow, random: number): number {
  return window.start + Math.floor((window.end - window.start) * random);
}

/** When to ask again: Retry-After (seconds or an HTTP date), kept between a minute and a day;
 * six hours when the CA says nothing that can be read (RFC 9773 §4.3). */
export function nextAsk(retryAfter: unknown, now: number): number {
  const MINUTE = 60_000;
  const DAY = 24 * 3_600_000;
  const seconds = retryAfterSeconds(retryAfter, now);
  const wait = seconds === undefined ? 6 * 3_600_000 : seconds * 1000;
  return now + Math.min(DAY, Math.max(MINUTE, wait));
}

/** Retry-After in seconds: a number of seconds or an HTTP date (0 once it is past); undefined
 * for none or one that cannot be read. */
export function retryAfterSeconds(value: unknown, now: number): number | undefined {
  if (typeof value !== "string") return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value);
  const when = Date.parse(value);
  return Number.isNaN(when) ? undefined : Math.max(0, Math.ceil((when - now) / 1000));
}
