// Command lines with bytes that are not UTF-8: Node passes the words of a spawn as UTF-8 only,
// so a test gives them to python3, which makes each `\xNN` the byte and execs the words.

/** Runs its words with each `\xNN` in them made that byte (wrap a command with it). */
export const WITH_BYTES = [
  "python3",
  "-c",
  "import os, re, sys\n" +
    "words = [re.sub(rb'\\\\x([0-9a-f]{2})', lambda m: bytes.fromhex(m[1].decode()), " +
    "os.fsencode(w)) for w in sys.argv[1:]]\n" +
    "os.execvp(words[0], words)",
];

/** A program that writes to fd N (its first word) the hex of each of its other words, and a
 * newline: what it was given, byte for byte. */
export const ARGV_HEX = [
  "python3",
  "-c",
  "import os, sys\n" +
    "os.write(int(sys.argv[1]), (' '.join(os.fsencode(w).hex() for w in sys.argv[2:]) + '\\n').encode())",
];

/** Every byte as `\xNN`, for WITH_BYTES. */
export function escaped(bytes: Uint8Array): string {
  return [...bytes].map((b) => `\\x${b.toString(16).padStart(2, "0")}`).join("");
}

/** As ARGV_HEX, with the hex of $X before the words' (what it got of its environment too),
 * the line begun with `prefix` (a greeting of the protocol it is run for). */
export function envArgvHex(prefix = ""): string[] {
  return [
    "python3",
    "-c",
    "import os, sys\n" +
      `line = ${JSON.stringify(prefix)} + ' '.join([os.environb.get(b'X', b'').hex()] + [os.fsencode(w).hex() for w in sys.argv[2:]])\n` +
      "os.write(int(sys.argv[1]), (line + '\\r\\n').encode())",
  ];
}
