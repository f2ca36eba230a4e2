import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { runCli } from './run.js';

const LLADA = fileURLToPath(new URL('../../../test/fixtures/models/llada-tiny-f32', import.meta.url));
const DREAM = fileURLToPath(new URL('../../../test/fixtures/models/dream-tiny-f32', import.meta.url));
const base = ['generate', '--model', LLADA, '--engine', 'reference', '--gen-length', '16', '--block-length', '8'];

/** Every bad flag or combination: exactly one line on stderr, exit 2, no stack trace. */
const cases: Array<[string, string[], RegExp]> = [
  ['unknown option', ['generate', '--bogus'], /unknown option '--bogus'/],
  ['unknown command', ['genrate'], /unknown command 'genrate'.*Did you mean generate/],
  ['no prompt', base, /exactly one of --prompt/],
  ['both prompts', [...base, '--prompt', 'x', '--prompt-ids', '1,2'], /exactly one of --prompt/],
  ['prompt twice', [...base, 'What', 'is', '--prompt', 'x'], /the prompt was given twice, as 'What is' and as --prompt; pass one/],
  ['positional prompt + ids', [...base, 'x', '--prompt-ids', '1,2'], /exactly one of --prompt/],
  ['bad ids', [...base, '--prompt-ids', '1,x'], /--prompt-ids: 'x' is not a token id/],
  ['bad engine', [...base, '--prompt-ids', '1', '--engine', 'tpu'], /--engine: expected one of auto, cuda, wasm, reference/],
  ['bad gen length', [...base, '--prompt-ids', '1', '--gen-length', '0'], /--gen-length: expected an integer >= 1/],
  ['non-multiple block', [...base, '--prompt-ids', '1', '--block-length', '5'], /--gen-length 16 must be a multiple of --block-length 5/],
  ['bad steps', [...base, '--prompt-ids', '1', '--steps', '3'], /--steps 3 must be a multiple of the number of blocks 2 \(--gen-length \/ --block-length\)/],
  ['threshold range', [...base, '--prompt-ids', '1', '--threshold', '1.5'], /--threshold: expected a number in \[0, 1\]/],
  ['threshold + factor', [...base, '--prompt-ids', '1', '--threshold', '0.9', '--factor', '1'], /--threshold and --factor/],
  ['remasking + threshold', [...base, '--prompt-ids', '1', '--threshold', '0.9', '--remasking', 'random'], /--remasking applies to the fixed schedule/],
  ['bad cache', [...base, '--prompt-ids', '1', '--cache', 'full'], /--cache: expected one of none, prefix, dual/],
  ['entropy + threshold', ['generate', '--model', DREAM, '--engine', 'reference', '--gen-length', '16', '--block-length', '8', '--prompt-ids', '1', '--alg', 'entropy', '--threshold', '0.9'], /--alg entropy scores -entropy .* is --alg maskgit_plus with a --threshold/],
  ['alg on llada', [...base, '--prompt-ids', '1', '--alg', 'entropy'], /--alg is Dream's confidence; this is a LLaDA model/],
  ['json + visual', [...base, '--prompt-ids', '1', '--json', '--visual'], /--json and --visual/],
  ['refresh without cache', [...base, '--prompt-ids', '1', '--cache', 'none', '--refresh-every', '2'], /--refresh-every needs a --cache mode \(prefix or dual\)/],
  ['bad refresh', [...base, '--prompt-ids', '1', '--cache', 'dual', '--refresh-every', '0'], /--refresh-every: expected an integer >= 1/],
  ['negative temperature', [...base, '--prompt-ids', '1', '--temperature', '-1'], /--temperature/],
  ['missing model dir', ['generate', '--model', '/nonexistent/model', '--prompt-ids', '1'], /--model: the directory \/nonexistent\/model does not exist; pass a model directory/],
  ['model dir is a file', ['chat', '--model', fileURLToPath(import.meta.url)], /--model: .*usage\.test\.ts is a file, not a directory/],
  ['batch without prompts file', [...base, '--prompt-ids', '1', '--batch', '4'], /--batch N decodes the prompts of a --prompts-file together; .* drop --batch or pass --prompts-file FILE/],
  ['token outside vocab', [...base, '--prompt-ids', '99999'], /vocab|outside/i],
  ['bad dtype', [...base, '--prompt-ids', '1', '--dtype', 'int4'], /--dtype: expected one of f32, bf16, int8, got 'int4'/],
  ['bench bad row', ['bench', '--rows', 'baseline,warp'], /--rows: 'warp' is not a row; expected some of baseline, prefix, dual, parallel, dual-parallel, dual-factor/],
  ['bench rows + sweep-only', ['bench', '--rows', 'dual', '--sweep-only', '--sweep'], /--rows picks rows of the table, which --sweep-only leaves out/],
  ['inspect missing dir', ['inspect', '/nonexistent/model'], /inspect: the directory \/nonexistent\/model does not exist/],
  ['inspect without dir', ['inspect'], /missing required argument 'dir'/],
];

describe('usage errors', () => {
  it.each(cases)('%s: exit 2, one line', async (_name, args, pattern) => {
    const r = await runCli(args);
    expect(r.stderr).toMatch(pattern);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stdout).toBe('');
  });

  it('--help exits 0 and lists the commands and every model family', async () => {
    const r = await runCli(['--help']);
    expect(r.code).toBe(0);
    for (const c of ['generate', 'chat', 'inspect', 'pull']) expect(r.stdout).toContain(c);
    for (const family of ['LLaDA', 'Dream', 'Fast-dLLM v2', 'SDAR']) expect(r.stdout).toContain(family);
  });
});
