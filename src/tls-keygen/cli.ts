// tls-keygen: keys and certificates for the TLS programs (self-signed pairs, a small local CA
// and the leaves it signs, requests for a public CA), written atomically, keys mode 0600.
import { writeSync } from "node:fs";
import { reportError } from "../ucspi/main.ts";
import { parseKeygenArgs } from "./options.ts";

const log = (line: string) => {
  try {
    writeSync(2, line);
  } catch {
    // stderr gone.
  }
};

async function main(args: readonly string[]): Promise<number> {
  const options = parseKeygenArgs(args);
  // The crypto and X.509 code loads only once the arguments are known to be good.
  const { runKeygen } = await import("./keygen.ts");
  return runKeygen(options, { log, now: new Date() });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.exitCode = reportError("tls-keygen", error, log);
  },
);
