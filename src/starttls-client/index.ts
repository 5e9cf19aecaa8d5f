// tlsc --starttls PROTOCOL: the client half of each protocol's upgrade, and running one.
import type { Duplex } from "node:stream";
import { imap } from "./imap.ts";
import { ldap, postgres } from "./binary.ts";
import { ServerReader, UpgradeError } from "./reader.ts";
import { mysql } from "./mysql.ts";
import { lmtp, nntp, pop3, sieve, smtp } from "./text-replies.ts";
import type { ClientUpgrade, UpgradeNames } from "./types.ts";
import { xmpp } from "./xmpp.ts";

export { UpgradeError };

const UPGRADES: Record<string, ClientUpgrade> = {
  smtp,
  lmtp,
  imap,
  pop3,
  nntp,
  sieve,
  postgres,
  mysql,
  ldap,
  xmpp,
};

export const STARTTLS_PROTOCOLS = Object.keys(UPGRADES);

export type UpgradeResult =
  /** wrap: what goes between the session and the program (MySQL), if anything. */
  | { kind: "tls"; replay: Buffer; wrap: ((stream: Duplex) => Duplex) | undefined }
  /** Not offered, and plaintext was allowed: what the program reads first. */
  | { kind: "plaintext"; replay: Buffer };

/**
 * The dialogue on `stream` up to the server's go-ahead, bounded by `timeoutMs` (0: none).
 * Rejects with an UpgradeError, or the stream's own error; `fallback` turns "not offered" into
 * a plaintext result whose replay holds the greeting and whatever the server sent after it.
 */
export async function upgrade(
  protocol: string,
  stream: Duplex,
  names: UpgradeNames,
  timeoutMs: number,
  fallback: boolean,
): Promise<UpgradeResult> {
  const run = UPGRADES[protocol];
  if (!run) throw new Error(`no STARTTLS dialogue for ${protocol}`);
  const io = new ServerReader(stream);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    if (timeoutMs > 0)
      timer = setTimeout(() => reject(new Error("STARTTLS dialogue timed out")), timeoutMs);
  });
  try {
    await Promise.race([run(io, names), timeout]);
    io.finish();
    return { kind: "tls", replay: io.kept, wrap: io.wrap };
  } catch (error) {
    if (fallback && error instanceof UpgradeError && error.kind === "not-offered") {
      return { kind: "plaintext", replay: Buffer.concat([io.kept, io.release()]) };
    }
    throw error;
  } finally {
    clearTimeout(timer);
  }
}
