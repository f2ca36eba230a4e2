// Server benchmark (not a test): throughput and latency of `fast-dllm serve` versus the number of concurrent
// clients, on the WASM engine. Run after the build (`npm install` builds everything):
//   nice -n 10 node bench/server/bench.mjs [--quick] [--threads N] [--levels 1,4,16,32] [--models bundled,100m]
//                                          [--requests N] [--model-dir DIR]
// For each model the real CLI server runs in its own process (`fast-dllm serve --batch 32`); this process is the
// client. At each concurrency level c, c clients send the same fixed set of streamed requests, each client its
// next one as soon as the last completes; c = 1 is the same requests run one at a time. Reported per level:
// answer tokens/s and committed positions/s (all decoded positions, padding included), requests/s, p50/p95 time
// to complete and to first text, passes, mean sequences per pass and mean pass time (from /metrics).
// Workloads: the bundled model with its recipe (what a user gets: DualCache + threshold 0.9, default max_tokens)
// and with the baseline (fixed schedule, no cache); a random LLaDA-shaped model of about 100M parameters (written to
// /tmp by random-model.mjs unless --model-dir names one), 64 prompt tokens, 16 answer tokens, the recipe.
// Writes bench/results/server-<date>.json and .md.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { writeRandomModel, BIG } from './random-model.mjs';

const args = process.argv.slice(2);
const flag = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const quick = args.includes('--quick');
const threads = Number(flag('--threads', String(Math.min(2, os.cpus().length))));
const levels = flag('--levels', quick ? '1,4' : '1,4,16,32').split(',').map(Number);
const models = flag('--models', 'bundled,100m').split(',');
const BIN = fileURLToPath(new URL('../../packages/cli/bin/fast-dllm.js', import.meta.url));
const OUT = fileURLToPath(new URL('../results/', import.meta.url));

/** Starts `fast-dllm serve` on a free loopback port; resolves once it says it is ready. */
function serve(extra) {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--engine', 'wasm', '--batch', '32', '--max-queue', '10000',
    '--timeout', '0', '--threads', String(threads), ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const exited = new Promise((r) => child.on('close', r));
  return new Promise((resolve, reject) => {
    child.stderr.on('data', (d) => {
      stderr += d;
      const m = /listening on (http:\/\/\S+)/.exec(stderr);
      if (m && /ready: engine/.test(stderr)) resolve({ url: m[1], stop: async () => { child.kill('SIGTERM'); return exited; } });
    });
    exited.then((code) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
  });
}

/** One streamed request; returns the answer text, its tokens, and the times to first text and to the end. */
async function request(url, path, body) {
  const t0 = performance.now();
  const r = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }) });
  if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
  let text = '';
  let ttft = null;
  let usage = null;
  let buf = '';
  const dec = new TextDecoder();
  for await (const part of r.body) {
    buf += dec.decode(part, { stream: true });
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const j = JSON.parse(ev.slice(6));
      if (j.error) throw new Error(j.error.message);
      const piece = j.choices?.[0]?.delta?.content ?? j.choices?.[0]?.text ?? '';
      if (piece && ttft === null) ttft = performance.now() - t0;
      text += piece;
      if (j.usage) usage = j.usage;
    }
  }
  return { text, ttft: ttft ?? performance.now() - t0, ms: performance.now() - t0, tokens: usage.completion_tokens, nfe: usage.nfe };
}

async function metricsOf(url) {
  const t = await (await fetch(`${url}/metrics`)).text();
  const get = (n) => Number(new RegExp(`^${n} (\\S+)$`, 'm').exec(t)[1]);
  return {
    passes: get('fast_dllm_passes_total'), forwards: get('fast_dllm_forwards_total'), committed: get('fast_dllm_committed_tokens_total'),
    passSeconds: get('fast_dllm_pass_seconds_sum'), rss: get('process_resident_memory_bytes'),
  };
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

/** The same requests at each concurrency level, c clients at a time. */
async function sweep(url, path, bodies) {
  const rows = [];
  let reference = null;
  for (const c of levels) {
    const before = await metricsOf(url);
    const results = new Array(bodies.length);
    let next = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: c }, async () => {
      while (next < bodies.length) {
        const i = next++;
        results[i] = await request(url, path, bodies[i]);
      }
    }));
    const wall = (performance.now() - t0) / 1000;
    const after = await metricsOf(url);
    const texts = results.map((r) => r.text);
    reference ??= texts;
    const tokens = results.reduce((a, r) => a + r.tokens, 0);
    const passes = after.passes - before.passes;
    const row = {
      concurrency: c, requests: bodies.length, wallSeconds: wall,
      answerTokensPerSecond: tokens / wall, committedPerSecond: (after.committed - before.committed) / wall, requestsPerSecond: bodies.length / wall,
      p50Ms: pct(results.map((r) => r.ms), 50), p95Ms: pct(results.map((r) => r.ms), 95),
      ttftP50Ms: pct(results.map((r) => r.ttft), 50), ttftP95Ms: pct(results.map((r) => r.ttft), 95),
      answerTokens: tokens, meanNfe: results.reduce((a, r) => a + r.nfe, 0) / results.length,
      passes, meanSequencesPerPass: (after.forwards - before.forwards) / passes, meanPassMs: (1000 * (after.passSeconds - before.passSeconds)) / passes,
      textsAsOneAtATime: texts.every((t, i) => t === reference[i]),
      serverRssMiB: after.rss / 2 ** 20,
    };
    rows.push(row);
    console.log(`  c=${String(c).padStart(2)}: ${row.answerTokensPerSecond.toFixed(1)} answer tok/s, ${row.committedPerSecond.toFixed(1)} committed/s, ` +
      `p50 ${row.p50Ms.toFixed(0)} ms, p95 ${row.p95Ms.toFixed(0)} ms, ttft p50 ${row.ttftP50Ms.toFixed(0)} ms, ` +
      `${row.meanSequencesPerPass.toFixed(1)} seq/pass, ${row.meanPassMs.toFixed(1)} ms/pass, server RSS ${row.serverRssMiB.toFixed(0)} MiB, same texts: ${row.textsAsOneAtATime}`);
  }
  const one = rows.find((r) => r.concurrency === 1);
  for (const r of rows) r.speedupOverOneAtATime = one ? r.answerTokensPerSecond / one.answerTokensPerSecond : null;
  return rows;
}

const results = {
  date: new Date().toISOString(),
  machine: { cpu: readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown', cores: os.cpus().length, node: process.version, load1AtStart: os.loadavg()[0] },
  settings: { engine: 'wasm', threads, batch: 32, levels },
  workloads: [],
};

if (models.includes('bundled')) {
  const n = Number(flag('--requests', quick ? '16' : '64'));
  const pairs = Array.from({ length: n }, (_, i) => [10 + ((i * 37) % 90), 10 + ((i * 53 + 11) % 90)]);
  const server = await serve([]);
  for (const [name, extra] of [['bundled model, recipe (dual cache, threshold 0.9), max_tokens 128', {}], ['bundled model, baseline (fixed schedule, no cache), max_tokens 32', { strategy: 'fixed', cache: 'none', max_tokens: 32 }]]) {
    console.log(name);
    const bodies = pairs.map(([a, b]) => ({ model: 'default', messages: [{ role: 'user', content: `What is ${a} + ${b} ?` }], ...extra }));
    results.workloads.push({ name, rows: await sweep(server.url, '/v1/chat/completions', bodies) });
  }
  await server.stop();
}

if (models.includes('100m')) {
  const dir = flag('--model-dir', '/tmp/fast-dllm-random-100m');
  if (!existsSync(`${dir}/model.safetensors`)) {
    console.log(`writing a random 100M LLaDA-shaped model to ${dir}`);
    await writeRandomModel(dir, BIG);
  }
  const n = Number(flag('--requests', quick ? '8' : '32'));
  const server = await serve(['--model', dir, '--name', 'random-100m']);
  const name = 'random 100M LLaDA-shaped model, recipe (dual cache, threshold 0.9), 64 prompt + 16 answer tokens';
  console.log(name);
  let s = 1;
  const bodies = Array.from({ length: n }, () => ({
    model: 'random-100m', max_tokens: 16, block_length: 16,
    prompt: Array.from({ length: 64 }, () => 7 + ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) % (BIG.vocab - 7))),
  }));
  results.workloads.push({ name, rows: await sweep(server.url, '/v1/completions', bodies) });
  await server.stop();
}

results.notes = [
  'Each level sends the same requests; c = 1 is the same requests run one at a time. "same texts" checks every answer equals its one-at-a-time answer (batch invariance).',
  'answer tok/s counts usage.completion_tokens (the server ends a request as soon as its answer is final); committed/s counts every decoded position.',
  'The client runs in this process, the server in another, on the same machine; the work of the client is part of every timing.',
];
mkdirSync(OUT, { recursive: true });
const day = results.date.slice(0, 10);
writeFileSync(`${OUT}server-${day}.json`, `${JSON.stringify(results, null, 2)}\n`);
const md = [`# fast-dllm serve benchmark, ${results.date}`, '',
  `Machine: ${results.machine.cpu}, ${results.machine.cores} cores, Node ${results.machine.node}, load ${results.machine.load1AtStart.toFixed(1)} at start. ` +
  `Engine wasm, ${threads} thread(s), server batch 32.`, ''];
for (const w of results.workloads) {
  md.push(`## ${w.name}`, '', '| clients | requests | answer tok/s | × one at a time | committed pos/s | req/s | p50 ms | p95 ms | first text p50 ms | seq/pass | ms/pass | mean NFE | server RSS MiB | same texts |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|');
  for (const r of w.rows) {
    md.push(`| ${r.concurrency} | ${r.requests} | ${r.answerTokensPerSecond.toFixed(1)} | ${r.speedupOverOneAtATime?.toFixed(2) ?? ''} | ${r.committedPerSecond.toFixed(1)} | ${r.requestsPerSecond.toFixed(2)} | ${r.p50Ms.toFixed(0)} | ${r.p95Ms.toFixed(0)} | ${r.ttftP50Ms.toFixed(0)} | ${r.meanSequencesPerPass.toFixed(1)} | ${r.meanPassMs.toFixed(1)} | ${r.meanNfe.toFixed(1)} | ${r.serverRssMiB.toFixed(0)} | ${r.textsAsOneAtATime ? 'yes' : 'NO'} |`);
  }
  md.push('');
}
md.push(...results.notes.map((n) => `- ${n}`), '');
writeFileSync(`${OUT}server-${day}.md`, md.join('\n'));
console.log(`wrote bench/results/server-${day}.json and .md`);
