// The protocols starttls-wrapper knows, by the name its -p option takes.
import { imap } from "./imap.ts";
import { nntp } from "./nntp.ts";
import { pop3 } from "./pop3.ts";
import { sieve } from "./sieve.ts";
import { lmtp, smtp } from "./smtp.ts";
import type { DialogueFactory } from "./types.ts";

export const DIALOGUES: Readonly<Record<string, DialogueFactory>> = {
  smtp,
  lmtp,
  imap,
  pop3,
  nntp,
  sieve,
};
