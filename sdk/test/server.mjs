// A real livehub for the SDK's tests: `python -m livehub` on a free loopback port with its own
// SQLite file, started, stopped and started again on the same port (the restart test).
// LIVEHUB_PYTHON names the interpreter (default: the checkout's .venv).

import { spawn } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const ADMIN_TOKEN = "sdk-test-admin-token-0123456789";

function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

export class Livehub {
  constructor(env = {}) {
    this.dir = mkdtempSync(join(tmpdir(), "livehub-sdk-"));
    this.env = env;
    this.proc = null;
  }

  async start() {
    this.port ??= await freePort();
    this.url = `http://127.0.0.1:${this.port}`;
    const python = process.env.LIVEHUB_PYTHON ?? join(ROOT, ".venv", "bin", "python");
    const log = openSync(join(this.dir, "livehub.log"), "a");
    this.proc = spawn(python, ["-m", "livehub", "--host", "127.0.0.1", "--port", String(this.port)], {
      cwd: ROOT,
      env: {
        ...process.env,
        PYTHONPATH: ROOT,
        LIVEHUB_DB: join(this.dir, "livehub.db"),
        LIVEHUB_RECORDINGS_DIR: join(this.dir, "recordings"),
        LIVEHUB_HOOK_SECRET: "sdk-test-hook-secret-0123456789",
        LIVEHUB_ADMIN_TOKEN: ADMIN_TOKEN,
        LIVEHUB_SRS_API_URL: "http://127.0.0.1:9",
        LIVEHUB_RECONCILE_INTERVAL: "0",
        LIVEHUB_SHUTDOWN_TIMEOUT: "2",
        LIVEHUB_CREATE_RATE_PER_MIN: "0",
        LIVEHUB_VIEWER_COUNT_INTERVAL: "0.05",
        ...this.env,
      },
      stdio: ["ignore", log, log],
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (this.proc.exitCode !== null) throw new Error(`livehub exited:\n${this.log()}`);
      try {
        if ((await fetch(`${this.url}/healthz`)).ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`livehub not ready in 30 s:\n${this.log()}`);
      await new Promise((ok) => setTimeout(ok, 50));
    }
  }

  async stop() {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((ok) => proc.once("exit", ok));
    proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }

  log() {
    try {
      return readFileSync(join(this.dir, "livehub.log"), "utf8");
    } catch {
      return "";
    }
  }

  async close() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The SDK as livehub serves it, imported over HTTP (a data: URL of the served text: Node 20
 * imports no http: modules). Returns the module and the served text. */
export async function importServedSdk(base) {
  const response = await fetch(`${base}/sdk/livehub-client.js`);
  if (!response.ok) throw new Error(`GET /sdk/livehub-client.js: ${response.status}`);
  const text = await response.text();
  const url = `data:text/javascript;base64,${Buffer.from(text).toString("base64")}`;
  return { sdk: await import(url), text, contentType: response.headers.get("Content-Type") };
}

/** Wait (bounded) until `check()` holds. */
export async function eventually(check, within = 5000) {
  const deadline = Date.now() + within;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((ok) => setTimeout(ok, 10));
  }
}
