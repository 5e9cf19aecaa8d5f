// The native engine's write gathering (src/native/tls-engine-gather.c) when the client's socket
// is full: the records left in the gathering buffer, then the close_notify and the FIN after the
// program's end of output, go out once the client reads (flush_gathered asks for EPOLLOUT), with
// a real client that does not read while the program writes its last bytes and ends.
import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { BIN, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { PY_STRICT_EOF } from "../helpers/py-bio.ts";

const pki = makePki();
const a = pki.server("a", ["localhost"]);
const BLOCK = 16384;
const BULK_BLOCKS = 128; // 2 MiB first, read as it comes

/** `tcpserver tlsd ...tlsdArgs` on a port of its own; the python3 script `client(port)`
 * prints `expected` against it, and the session ends with status 0. */
async function clientGets(
  tlsdArgs: string[],
  client: (port: number) => string,
  expected: string,
  timeoutMs: number,
) {
  const s = await startServer(
    ours("tcpserver"),
    [..."-v -RHl0 127.0.0.1 0 tlsd".split(" "), ...tlsdArgs],
    { env: { PATH: `${BIN}:/usr/bin:/bin`, CERTFILE: a.cert, KEYFILE: a.key } },
  );
  try {
    const r = await run("python3", ["-c", client(s.port)], { timeoutMs });
    assert.equal(r.stdout, expected, r.stderr);
    await s.waitForLog(/^tcpserver: end \d+ status 0$/m);
  } finally {
    await s.stop();
  }
}

/** Python: reads tls to its end, onto got; end says how that came. */
const READ_REST = `
try:
    while True:
        data = tls.recv(65536)
        if not data:
            break
        got += data
    end = "close_notify"
except Exception as e:
    end = repr(e)
`;

// The program: "b" writes the bulk, "w N" N blocks more, "e" ends its output (it reads on, to
// the client's end). After each it waits until tlsd has read all it wrote (SIOCOUTQ of its end
// of the socket pair is 0) and says so in the progress file.
const PROGRAM = `
import fcntl, hashlib, os, socket, struct, sys, termios, time
BLOCK, BULK_BLOCKS = ${BLOCK}, ${BULK_BLOCKS}
progress = open(sys.argv[1], "a")
def block(i):
    return hashlib.shake_256(b"%d" % i).digest(BLOCK)
def put(data):
    data = memoryview(data)
    while data:
        data = data[os.write(1, data):]
    for _ in range(5000):
        if struct.unpack("i", fcntl.ioctl(1, termios.TIOCOUTQ, b"\\0" * 4))[0] == 0:
            break
        time.sleep(0.002)
    progress.write("done\\n")
    progress.flush()
n = 0
for line in sys.stdin.buffer:
    if line == b"b\\n":
        put(b"".join(block(i) for i in range(BULK_BLOCKS)))
        n = BULK_BLOCKS
    elif line.startswith(b"w "):
        more = int(line[2:])
        put(b"".join(block(i) for i in range(n, n + more)))
        n += more
    elif line == b"e\\n":
        # A half-close, not an exit: tlsd's goodbye timer (from the program's exit) would end
        # the session with one last try of the flush, and hide a session that waits for nothing.
        socket.socket(fileno=os.dup(1)).shutdown(socket.SHUT_WR)
        progress.write("end\\n")
        progress.flush()
`;

// The client: TLS 1.3 (a block's record is BLOCK + 22 bytes) and a small window. It reads the
// bulk as it comes, then stops reading and asks for blocks until the server's socket no longer
// takes a whole one: what tlsd wrote to it (from ss: bytes_acked + Send-Q) stops short of the
// records, the rest is in the gathering buffer. Then it ends the program's output, lets the
// engine's pass at that EOF run, and only then reads everything, to the close_notify.
const CLIENT = (port: number, progress: string) => `
import hashlib, re, socket, ssl, subprocess, sys, time
BLOCK, BULK_BLOCKS, RECORD = ${BLOCK}, ${BULK_BLOCKS}, ${BLOCK} + 22
def block(i):
    return hashlib.shake_256(b"%d" % i).digest(BLOCK)
ctx = ssl.create_default_context(cafile=${JSON.stringify(pki.ca.cert)})
${PY_STRICT_EOF}
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
raw = socket.socket()
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
raw.settimeout(20)
raw.connect(("127.0.0.1", ${port}))
tls = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
me = tls.getsockname()[1]
def read(n):
    got = b""
    while len(got) < n:
        got += tls.recv(n - len(got))
    return got
asked, got = 0, b""
def ask(command, reading=0):
    global asked, got
    tls.sendall(command)
    asked += 1
    got += read(reading)
    for _ in range(3000):
        if open(${JSON.stringify(progress)}).read().count("\\n") >= asked:
            return
        time.sleep(0.005)
    sys.exit("the program did not take %r" % command)
def socket_state():
    """What tlsd has written to its socket, and the room left in its send buffer."""
    out = subprocess.run(["ss", "-Htnmi", "state", "established",
                          "( sport = :${port} and dport = :%d )" % me],
                         capture_output=True, text=True, check=True).stdout
    if not out:
        return -1, 0  # no longer established: tlsd has sent its FIN
    acked = re.search(r"bytes_acked:(\\d+)", out)
    room = re.search(r"tb(\\d+),.*?,w(\\d+)", out)
    written = int(out.split()[1]) + (int(acked.group(1)) if acked else 0)
    return written, int(room.group(1)) - int(room.group(2))
def settled(want):
    # What tlsd wrote, once it has reached want (more, when blocks were read in pieces and made
    # more records) and holds still, or holds still short of it: the engine's pass is over.
    last, same = socket_state()[0], 0
    while same < (1 if last >= want else 10):
        time.sleep(0.02)
        now = socket_state()[0]
        same, last = (same + 1 if now == last else 0), now
    return last
ask(b"b\\n", BULK_BLOCKS * BLOCK)
blocks, written = BULK_BLOCKS, settled(1 << 62)
while blocks < BULK_BLOCKS + 2000:
    # Many blocks at once while the room is large (a quarter of it: surely taken whole), one
    # at a time at the end, so that the last pass's record goes into an empty buffer.
    more = max(1, socket_state()[1] // (4 * RECORD))
    ask(b"w %d\\n" % more)
    blocks += more
    want = written + more * RECORD
    written = settled(want)
    if written < want:
        break
else:
    sys.exit("the server's socket never filled")
held = want - written
print("gathered, not out:", "yes" if more == 1 and 0 < held <= RECORD else (more, held))
ask(b"e\\n")
settled(1 << 62)
${READ_REST}want = hashlib.sha256(b"".join(block(i) for i in range(blocks))).hexdigest()
print("bytes:", len(got) == blocks * BLOCK, hashlib.sha256(got).hexdigest() == want, end)
if end == "close_notify":
    tls.unwrap()
`;

test("records gathered behind a full socket, then the program's end: all out on EPOLLOUT, then the close_notify and status 0", async () => {
  const progress = join(pki.dir, "progress");
  writeFileSync(progress, "");
  await clientGets(
    ["--engine", "native", "python3", "-c", PROGRAM, progress],
    (port) => CLIENT(port, progress),
    "gathered, not out: yes\nbytes: True True close_notify\n",
    90_000,
  );
});

// The program writes until its socket pair stays full (the client, with a small window, reads
// nothing), says how much it wrote, and exits: its last bytes wait in the pair and the relay's
// buffers past tlsd's goodbye grace (5 s from the program's exit). They were cut off there, and
// our close_notify followed, so the client took a short stream for a whole one.
const FILLER = (done: string) => `
import fcntl, os, sys, time
sys.stdin.readline()
fcntl.fcntl(1, fcntl.F_SETFL, fcntl.fcntl(1, fcntl.F_GETFL) | os.O_NONBLOCK)
n, stuck = 0, 0
while stuck < 10:
    try:
        n += os.write(1, b"\\0" * 65536)
        stuck = 0
    except BlockingIOError:
        stuck += 1
        time.sleep(0.2)
with open(${JSON.stringify(done)} + ".tmp", "w") as f:
    f.write(str(n))
os.rename(${JSON.stringify(done)} + ".tmp", ${JSON.stringify(done)})
`;

const SLOW_CLIENT = (port: number, done: string) => `
import os, socket, ssl, time
ctx = ssl.create_default_context(cafile=${JSON.stringify(pki.ca.cert)})
${PY_STRICT_EOF}
raw = socket.socket()
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
raw.connect(("127.0.0.1", ${port}))
tls = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
tls.write(b"go\\n")
for _ in range(6000):
    if os.path.exists(${JSON.stringify(done)}):
        break
    time.sleep(0.01)
else:
    raise SystemExit("the program never stopped writing")
written = int(open(${JSON.stringify(done)}).read())
# Past the goodbye grace, counted from the program's exit.
time.sleep(6)
got = b""
${READ_REST}print(len(got) == written, got.count(0) == len(got), end)
`;

test("a client that reads nothing for longer than the goodbye grace after the program's exit still gets every byte, then the close_notify", async () => {
  const done = join(pki.dir, "written");
  rmSync(done, { force: true });
  await clientGets(
    ["python3", "-c", FILLER(done)],
    (port) => SLOW_CLIENT(port, done),
    "True True close_notify\n",
    120_000,
  );
});
