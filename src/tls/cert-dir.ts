// CERTDIR, certbot's live/ layout: one directory per certificate, NAME/fullchain.pem (the leaf
// first, its issuer after it) and NAME/privkey.pem. What tlsd serves from and what tls-keygen
// ocsp fetches for are the same entries.
import { namesIn } from "../ucspi/os-string.ts";

export const CHAIN_FILE = "fullchain.pem";
export const KEY_FILE = "privkey.pem";

/** The names in a CERTDIR that may be certificates, sorted: not hidden ones (a temporary
 * version being written), not certbot's README. Throws as readdir does. */
export function certificateNames(dir: string): string[] {
  return namesIn(dir)
    .filter((name) => !name.startsWith(".") && name !== "README")
    .sort();
}
