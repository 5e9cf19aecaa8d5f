// One protocol's client half of STARTTLS: what tlsc --starttls says to the server before TLS.
import type { ServerReader } from "./reader.ts";

export interface UpgradeNames {
  /** Our own name, where the protocol greets with one (SMTP's EHLO). */
  local: string;
  /** The server's name, where the protocol asks for it (XMPP's stream `to`). */
  server: string;
}

/** Runs the dialogue up to the server's go-ahead (the reader's stream then belongs to TLS), or
 * rejects with an UpgradeError. What the program must read first (the greeting it would have
 * read itself) is given to `io.keep` as soon as it is known. */
export type ClientUpgrade = (io: ServerReader, names: UpgradeNames) => Promise<void>;
