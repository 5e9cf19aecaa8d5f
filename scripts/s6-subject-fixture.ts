// node scripts/s6-subject-fixture.ts [PREFIX]: writes test/fixtures/s6-tlsd-subjects.json, the
// bytes that skarnet's s6-tlsd exports as SSL_PEER_CERT_SUBJECT for client certificates whose
// subjects are the edge cases of test/helpers/subject-cases.ts (made here with openssl, signed by
// a throw-away CA), so that test/tls/s6-subjects.test.ts can hold tlsd to them where no
// s6-networking is installed (CI, Debian 12).
// PREFIX (or SKARNET_PREFIX; default /work/peers/skarnet): where skalibs and s6-networking,
// built with BearSSL (--enable-ssl=bearssl), are installed: PREFIX/bin/s6-tlsd, and their
// versions in PREFIX/include/{skalibs,s6-networking}/config.h. The recorded fixture: s6-networking
// 2.8.0.1 and skalibs 2.15.1.0 (git HEADs of 2026-07-14), BearSSL 0.6 (Debian 12's
// libbearssl-dev 0.6+dfsg.1-3). s6-tlsd runs under our tcpserver, -Y, and tells TLS 1.2 (BearSSL
// has no 1.3), which changes nothing of the names.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { format, resolveConfig } from "prettier";
import { makePki } from "../test/helpers/certs.ts";
import { ROOT } from "../test/helpers/programs.ts";
import {
  SUBJECT_CASES,
  caseCertificate,
  exportedSubjects,
  opensslSubject,
} from "../test/helpers/subject-cases.ts";

const prefix = process.argv[2] ?? process.env["SKARNET_PREFIX"] ?? "/work/peers/skarnet";
const FIXTURE = join(ROOT, "test", "fixtures", "s6-tlsd-subjects.json");

function versionIn(header: string, macro: string): string {
  const text = readFileSync(join(prefix, "include", header), "utf8");
  const m = new RegExp(`#define ${macro} "([^"]+)"`).exec(text);
  if (!m?.[1]) throw new Error(`no ${macro} in ${header}`);
  return m[1];
}

try {
  const pki = makePki();
  const server = pki.server("localhost", ["localhost"]);
  const certificates = SUBJECT_CASES.map((c, i) => caseCertificate(pki, i, c.rdns));
  const s6 = await exportedSubjects(
    [join(prefix, "bin", "s6-tlsd"), "-Y", "--"],
    { PATH: `${join(prefix, "bin")}:/usr/bin:/bin`, CERTFILE: server.cert, KEYFILE: server.key },
    pki,
    certificates,
  );
  const bearssl = execFileSync("dpkg-query", ["-W", "-f", "${Version}", "libbearssl-dev"]);
  const fixture = {
    source: "scripts/s6-subject-fixture.ts",
    s6Networking: versionIn("s6-networking/config.h", "S6_NETWORKING_VERSION"),
    skalibs: versionIn("skalibs/config.h", "SKALIBS_VERSION"),
    bearssl: `Debian libbearssl-dev ${bearssl.toString()}`,
    cases: SUBJECT_CASES.map((c, i) => ({
      name: c.name,
      rdns: c.rdns,
      openssl: opensslSubject(c.rdns),
      s6tlsdSubjectHex: s6[i],
    })),
  };
  // In the repository's style, so that prettier --check passes on it as written.
  const style = { ...(await resolveConfig(FIXTURE)), filepath: FIXTURE };
  writeFileSync(FIXTURE, await format(JSON.stringify(fixture), style));
  process.stdout.write(`${FIXTURE}: ${fixture.cases.length} cases\n`);
} catch (e) {
  process.stderr.write(`s6-subject-fixture: ${(e as Error).message}\n`);
  process.exitCode = 1;
}
