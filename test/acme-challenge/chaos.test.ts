// acme-challenge on port 80 meets whatever the Internet sends: random mixes of challenge
// requests (known and unknown tokens), other requests, over-long lines and random bytes, cut
// anywhere, written with pauses, then ended, reset or dropped, many clients at once. Whatever
// a client does, its session ends when it goes: tcpserver goes on serving, logs no internal
// error, is back to 0 connections, and no fd or child is left (test/helpers/chaos.ts). A whole
// request for a known token is always answered with its key authorization.
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { HOW, chaos, cutInto, talkOf, talkRandomly } from "../helpers/chaos.ts";
import type { Outcome, Plan, Target } from "../helpers/chaos.ts";
import { PATH_WITH_BIN, ours } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { scratchDir } from "../helpers/scratch.ts";

const certDir = scratchDir("acme-chaos");

const TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
const KEY_AUTHORIZATION = `${TOKEN}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI`;
mkdirSync(join(certDir, ".acme-http-01"), { recursive: true });
writeFileSync(join(certDir, ".acme-http-01", TOKEN), KEY_AUTHORIZATION);

const CHALLENGE = `GET /.well-known/acme-challenge/${TOKEN} HTTP/1.1\r\nHost: a.example\r\n\r\n`;

const text = (t: string) => Buffer.from(t, "latin1");
const challenge = text(CHALLENGE);

/** Pieces of what port 80 gets. */
const PIECES: Buffer[] = [
  CHALLENGE,
  "GET /.well-known/acme-challenge/unknown HTTP/1.1\r\n\r\n",
  "GET /.well-known/acme-challenge/../../etc/passwd HTTP/1.1\r\n\r\n",
  "GET / HTTP/1.0\r\n\r\n",
  "POST /form HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
  "Host: a.example\r\n",
  "\r\n",
  "\n",
  "x".repeat(9000), // longer than the request line may be
  "\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03", // the head of a ClientHello
].map(text);

/** One client: what it sends, where that is cut, the pause after each write, how it goes. */
const client = fc.record({
  ...talkOf(PIECES, 4),
  how: fc.constantFrom(...HOW),
});
type Client = typeof client extends fc.Arbitrary<infer C> ? C : never;

/** The client's bytes in the pieces it writes them in. */
const writes = (c: Client) => cutInto(Buffer.concat(c.pieces), c.cuts);

/** Runs one client (talkRandomly). */
function run(target: Target, c: Client): Promise<Outcome> {
  const chunks = writes(c);
  const said = `${c.how} after ${JSON.stringify(chunks.map((b) => b.toString("latin1").slice(0, 80)))}`;
  return talkRandomly(target, { chunks, pause: c.pause, how: c.how, said });
}

/** A client that sends the challenge request and nothing else (in any pieces) and ends gets
 * the answer. (Bytes after it may come after the close and have the answer reset away.) */
const answered = (c: Client) =>
  c.how === "end" && c.pieces.length === 1 && Buffer.from(c.pieces[0] ?? []).equals(challenge);

function check(c: Client, outcome: Outcome): void {
  if (!answered(c)) return;
  assert.match(outcome.got, /^HTTP\/1\.1 200 OK\r\n/);
  assert.ok(outcome.got.endsWith(`\r\n\r\n${KEY_AUTHORIZATION}`), outcome.got);
}

/** Whole exchanges that must work: the challenge answered, another request passed on to the
 * program (it echoes: so that it has been spawned once before the batches, its spawner's fds
 * made) or, with none, answered 404. */
const whole = (target: Target, program: boolean) => async () => {
  const c: Client = { pieces: [challenge], cuts: [], pause: 0, how: "end" };
  check(c, await run(target, c));
  const request = "GET / HTTP/1.0\r\n\r\n";
  const { got } = await run(target, { pieces: [text(request)], cuts: [], pause: 0, how: "end" });
  if (program) assert.equal(got, request);
  else assert.match(got, /^HTTP\/1\.1 404 Not Found\r\n[^]*\r\n\r\nnot found\n$/);
};

async function acmeChallenge(program: string[]): Promise<Target> {
  const server = await startServer(
    ours("tcpserver"),
    [
      ...["-v", "-RHl0", "-c", "200", "127.0.0.1", "0"],
      ...["acme-challenge", "-t", "600", ...program],
    ],
    { env: { ...process.env, PATH: PATH_WITH_BIN, CERTDIR: certDir } },
  );
  return { server, connections: 0, said: new Map() };
}

const plan = (target: Target, program: boolean): Plan<Client> => ({
  client,
  run: (c) => run(target, c),
  check,
  whole: whole(target, program),
  maxLength: 10,
  numRuns: 12,
});

test("acme-challenge alone (404 for the rest): random requests and bytes from many clients at once, ended, reset or dropped anywhere; every session ends with its client, the whole challenge request is answered, nothing is left", async () => {
  const target = await acmeChallenge([]);
  await chaos(target, plan(target, false));
});

test("acme-challenge in front of a web server (a program that echoes): the same", async () => {
  const target = await acmeChallenge(["sh", "-c", "exec cat 2>/dev/null"]);
  await chaos(target, plan(target, true));
});
