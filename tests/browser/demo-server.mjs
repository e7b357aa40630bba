// Starts the crate's demo server (examples/demo.rs) for one test file: the binary named
// by DEMO_BIN (scripts/test.sh builds it and sets it), on a free port (PORT=0), and
// waits for its `listening on http://127.0.0.1:PORT` line (`https://` with TLS_CERT and
// TLS_KEY in `env`). Fails loudly when DEMO_BIN is
// unset or missing: these tests never skip.
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

export function demoBin() {
  const bin = process.env.DEMO_BIN;
  if (!bin) {
    throw new Error(
      'DEMO_BIN is not set: run these tests through scripts/test.sh, or set DEMO_BIN to the ' +
        'demo binary built by `cargo build --example demo` (target/debug/examples/demo)',
    );
  }
  try {
    accessSync(bin, constants.X_OK);
  } catch (err) {
    throw new Error(`DEMO_BIN=${bin} is not an executable file: ${err.message}`);
  }
  return bin;
}

export async function startDemo({ timeoutMs = 20_000, env = {} } = {}) {
  const bin = demoBin();
  const child = spawn(bin, [], {
    env: { ...process.env, ...env, PORT: '0', HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`demo did not print its listening line within ${timeoutMs} ms; output:\n${output}`));
    }, timeoutMs);
    const onData = (chunk) => {
      output += chunk;
      const m = /listening on (https?:\/\/127\.0\.0\.1:(\d+))/.exec(output);
      if (m && Number(m[2]) > 0) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', (chunk) => { output += chunk; });
    child.once('error', (err) => { clearTimeout(timer); reject(err); });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`demo exited early (code ${code}, signal ${signal}); output:\n${output}`));
    });
  });

  return {
    url,
    /** Ends the demo with SIGTERM (SIGKILL after 5 s) and waits for it to exit. */
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      const status = await exited;
      clearTimeout(timer);
      return status;
    },
  };
}
