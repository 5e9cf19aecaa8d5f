// Test certificates made with the real openssl: a CA, server certificates it signs (one per
// name list), client certificates, and a self-signed one nobody trusts.
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import { scratchDir } from "./scratch.ts";

export interface Pair {
  cert: string;
  key: string;
}

export interface TestPki {
  dir: string;
  ca: Pair;
  /** A leaf signed by the CA for these SANs (DNS names or IP addresses); `ext`: more
   * extension lines, as openssl's -extfile reads them. */
  server(name: string, sans: string[], ext?: string): Pair;
  /** A client certificate signed by the CA, subject CN=cn. */
  client(cn: string): Pair;
  /** A leaf signed by the CA with this openssl `-subj` subject (UTF-8), for clients and for
   * the server name localhost; `file` names its files. */
  withSubject(file: string, subject: string): Pair;
  /** The same, its subject given by these `openssl req` arguments (`-subj` with
   * `-multivalue-rdn`, or `-config` with a distinguished_name section). */
  withName(file: string, reqArgs: readonly string[]): Pair;
  /** A self-signed pair (CN=name), trusted by nobody. */
  selfSigned(name: string): Pair;
}

/** The extensions of a leaf that serves as a client, or as a server named localhost. */
const EITHER_END = "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n";

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

/** `caName`: the CA's CN, for a test with two CAs (OpenSSL finds an issuer by its name). */
export function makePki(caName = "Test CA"): TestPki {
  const dir = scratchDir("pki");
  const ca = { cert: join(dir, "ca.pem"), key: join(dir, "ca.key") };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  openssl(
    [
      "req",
      "-x509",
      ...ec,
      "-keyout",
      ca.key,
      "-out",
      ca.cert,
      "-days",
      "2",
      "-subj",
      `/CN=${caName}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ],
    dir,
  );
  const leaf = (name: string, reqArgs: readonly string[], ext: string): Pair => {
    const pair = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
    const csr = join(dir, `${name}.csr`);
    const extFile = join(dir, `${name}.ext`);
    writeFileSync(extFile, ext);
    openssl(["req", "-new", "-utf8", ...ec, "-keyout", pair.key, "-out", csr, ...reqArgs], dir);
    openssl(
      [
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca.cert,
        "-CAkey",
        ca.key,
        "-CAcreateserial",
        "-out",
        pair.cert,
        "-days",
        "2",
        "-extfile",
        extFile,
      ],
      dir,
    );
    return pair;
  };
  return {
    dir,
    ca,
    server: (name, sans, ext = "") =>
      leaf(
        name,
        ["-subj", `/CN=${sans[0] ?? name}`],
        `subjectAltName=${sans.map((s) => (isIP(s) ? `IP:${s}` : `DNS:${s}`)).join(",")}\nextendedKeyUsage=serverAuth\n${ext}`,
      ),
    client: (cn) =>
      leaf(`client-${cn}`, ["-subj", `/C=FR/O=Test Org/CN=${cn}`], "extendedKeyUsage=clientAuth\n"),
    withSubject: (file, subject) => leaf(file, ["-subj", subject], EITHER_END),
    withName: (file, reqArgs) => leaf(file, reqArgs, EITHER_END),
    selfSigned: (name) => {
      const pair = { cert: join(dir, `self-${name}.pem`), key: join(dir, `self-${name}.key`) };
      openssl(
        [
          "req",
          "-x509",
          ...ec,
          "-keyout",
          pair.key,
          "-out",
          pair.cert,
          "-days",
          "2",
          "-subj",
          `/CN=${name}`,
          "-addext",
          `subjectAltName=DNS:${name}`,
        ],
        dir,
      );
      return pair;
    },
  };
}
