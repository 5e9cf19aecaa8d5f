// tls-keygen: keys and certificates for the TLS programs (self-signed pairs, a small local CA
// and the leaves it signs, requests for a public CA), written atomically, keys mode 0600;
// tlsd's session ticket key file, made and rotated; the OCSP responses tlsd staples; and the
// renewal of tlsd's certificates on demand that are due.
import { programArgs, reportError, stopOnTerm, writeStderr } from "../cli/main.ts";
import { helpAsked } from "../cli/help.ts";
import { FatalError, causeText } from "../ucspi/errors.ts";
import { USAGE, parseKeygenArgs } from "./options.ts";

async function main(args: readonly string[]): Promise<number> {
  if (helpAsked("tls-keygen", args, USAGE)) return 0;
  const options = parseKeygenArgs(args);
  if (options.command === "ticket") {
    const { rotateTickets } = await import("./ticket.ts");
    return rotateTickets(options, writeStderr);
  }
  if (options.command === "ocsp") {
    const { fetchOcsp } = await import("./ocsp.ts");
    return fetchOcsp(options, writeStderr);
  }
  if (options.command === "renew") {
    const [{ renewCertDir }, { dropOwnPrivileges }, { startEnv }] = await Promise.all([
      import("./renew.ts"),
      import("../ucspi/privileges.ts"),
      import("../ucspi/env.ts"),
    ]);
    // Stopped mid-order (a timer's unit stopped), what the order set up is taken down.
    stopOnTerm();
    // tlsd's ACME_* as tlsd reads them: byte strings (a path that is not UTF-8 included).
    return renewCertDir(options, startEnv(process.env), writeStderr, dropOwnPrivileges);
  }
  if (options.command === "list") {
    const [{ listCertDir }, { startEnv }, { writeAll }] = await Promise.all([
      import("./list.ts"),
      import("../ucspi/env.ts"),
      import("../cli/stdio.ts"),
    ]);
    const out = (line: string) => {
      try {
        writeAll(1, Buffer.from(line));
      } catch (error) {
        throw new FatalError(`unable to write the list: ${causeText(error)}`, 111);
      }
    };
    return listCertDir(options, startEnv(process.env), out, writeStderr);
  }
  if (options.command === "revoke") {
    const [{ revokeCertificate }, { dropOwnPrivileges }, { startEnv }] = await Promise.all([
      import("./revoke.ts"),
      import("../ucspi/privileges.ts"),
      import("../ucspi/env.ts"),
    ]);
    return revokeCertificate(options, startEnv(process.env), writeStderr, dropOwnPrivileges);
  }
  // The crypto and X.509 code loads only once the arguments are known to be good.
  const { runKeygen } = await import("./keygen.ts");
  return runKeygen(options, { log: writeStderr, now: new Date() });
}

main(programArgs()).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.exitCode = reportError("tls-keygen", error, writeStderr);
  },
);
