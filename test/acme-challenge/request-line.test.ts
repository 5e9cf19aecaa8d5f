// acme-challenge's request line.
// HEAD (RFC 9110 section 9.3.2): the answer GET would get, without its body. The 404 of the form
// with no program sent its body to a HEAD too, where a client reads the headers as the whole
// answer (on a kept-alive connection the body is taken for the next answer); a HEAD for a
// challenge is answered as its GET is, headers only.
// The absolute form (RFC 9112 section 3.2.2: `GET http://host/path HTTP/1.1`, as a proxy or a
// client configured with one sends it): a challenge asked that way went to the 404 or the
// program; it is answered as in the origin form.
// Real processes: our tcpserver and djb's, curl, a raw socket that sends the request,
// half-closes and reads to the end.
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { describe, test } from "node:test";
import { PATH_WITH_BIN, djb, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { scratchDir } from "../helpers/scratch.ts";

const certDir = scratchDir("acme-head");

const TOKEN = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
const KEY_AUTHORIZATION = `${TOKEN}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI`;
mkdirSync(join(certDir, ".acme-http-01"), { recursive: true });
writeFileSync(join(certDir, ".acme-http-01", TOKEN), KEY_AUTHORIZATION);

/** Sends `request`, half-closes, and returns every byte of the answer. */
function ask(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1" });
    let got = "";
    socket.on("connect", () => socket.end(request, "latin1"));
    socket.on("data", (b: Buffer) => (got += b.toString("latin1")));
    socket.on("error", reject);
    socket.on("end", () => {
      socket.destroy();
      resolve(got);
    });
  });
}

const headers = (status: string, length: number) =>
  `HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: ${length}\r\n` +
  "Connection: close\r\n\r\n";

for (const [who, server] of [
  ["ours", ours("tcpserver")],
  ["djb's", djb("tcpserver")],
] as const) {
  const serve = (program: string[] = []) =>
    startServer(server, ["-RHl0", "127.0.0.1", "0", "acme-challenge", ...program], {
      env: { ...process.env, PATH: PATH_WITH_BIN, CERTDIR: certDir },
    });
  describe(who, () => {
    test("HEAD: the headers GET would get, and no body", async () => {
      const s = await serve();
      try {
        const path = `/.well-known/acme-challenge/${TOKEN}`;
        const request = (method: string, target: string) =>
          `${method} ${target} HTTP/1.1\r\nHost: a.example\r\n\r\n`;
        const ok = headers("200 OK", KEY_AUTHORIZATION.length);
        assert.equal(await ask(s.port, request("GET", path)), ok + KEY_AUTHORIZATION);
        assert.equal(await ask(s.port, request("HEAD", path)), ok);
        const notFound = headers("404 Not Found", 10);
        assert.equal(await ask(s.port, request("GET", "/")), `${notFound}not found\n`);
        assert.equal(await ask(s.port, request("HEAD", "/")), notFound);
        assert.equal(await ask(s.port, request("HEAD", `${path}x`)), notFound);
      } finally {
        await s.stop();
      }
    });

    // RFC 9112 section 2.2: a server SHOULD ignore at least one empty line before the request
    // line; the challenge after one was passed on as any other request (here: the 404).
    test("empty lines before the request line are skipped", async () => {
      const s = await serve();
      try {
        const path = `/.well-known/acme-challenge/${TOKEN}`;
        const ok = headers("200 OK", KEY_AUTHORIZATION.length) + KEY_AUTHORIZATION;
        for (const before of ["\r\n", "\r\n\r\n", "\n"])
          assert.equal(
            await ask(s.port, `${before}GET ${path} HTTP/1.1\r\nHost: a.example\r\n\r\n`),
            ok,
            JSON.stringify(before),
          );
      } finally {
        await s.stop();
      }
    });

    test("the absolute form (curl --request-target, curl through a proxy): answered as the origin form", async () => {
      // Everything else goes to the program, its request line untouched.
      const s = await serve(["sh", "-c", "head -n 1"]);
      try {
        const path = `/.well-known/acme-challenge/${TOKEN}`;
        const curl = (args: string[]) => run("curl", ["-sS", "--max-time", "10", ...args]);
        const origin = `http://127.0.0.1:${s.port}/`;
        for (const target of [
          `http://example.org${path}`,
          `HTTP://Example.ORG:80${path}`,
          `http://[2001:db8::1]:8080${path}`,
        ]) {
          const r = await curl(["--request-target", target, origin]);
          assert.equal(r.stdout, KEY_AUTHORIZATION, `${target}: ${r.stderr}`);
        }
        const proxied = await curl(["-x", origin, `http://example.org${path}`]);
        assert.equal(proxied.stdout, KEY_AUTHORIZATION, proxied.stderr);
        const head = await curl(["-I", "-x", origin, `http://example.org${path}`]);
        assert.match(head.stdout, /^HTTP\/1\.1 200 OK\r$/m);
        // No host, a userinfo, another scheme, another path: not a challenge.
        for (const target of [
          `http://${path}`,
          `http://user@example.org${path}`,
          `https://example.org${path}`,
          `http://example.org/x${path}`,
        ]) {
          const r = await curl(["--request-target", target, "-0", "--http0.9", origin]);
          assert.equal(r.stdout, `GET ${target} HTTP/1.0\r\n`, r.stderr);
        }
      } finally {
        await s.stop();
      }
    });
  });
}
