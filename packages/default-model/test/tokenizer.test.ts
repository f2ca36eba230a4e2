// The bundled tokenizer decodes as people write ("answer: 71") while encoding every text the model was trained on
// to the ids it was trained on. test/fixtures/tokenizer-trained.json is the tokenizer.json the checkpoint was
// trained and exported with (no decoder: tokens joined by spaces); it stays committed as the reference.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTokenizer, type TextTokenizer } from '@fast-dllm/model';
import { describe, expect, it } from 'vitest';
import { defaultModelDir, extractAnswer, loadEvalSet } from '../src/index.js';

const readJson = (path: string): unknown => JSON.parse(readFileSync(path, 'utf8'));
const config = readJson(join(defaultModelDir, 'tokenizer_config.json')) as Record<string, unknown>;
const bundled = createTokenizer({ tokenizer: readJson(join(defaultModelDir, 'tokenizer.json')), tokenizerConfig: config });
const trained = createTokenizer({ tokenizer: readJson(fileURLToPath(new URL('./fixtures/tokenizer-trained.json', import.meta.url))), tokenizerConfig: config });

/** train/tokenizer.py `chat_prompt`: the prompt text training encoded. */
const chatPrompt = (content: string): string =>
  `<|startoftext|><|start_header_id|>user<|end_header_id|>\n\n${content.trim()}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`;

/** train/task.py `prompt_text` and `answer_text` (checked against the eval set below, which task.py wrote). */
const promptText = (a: number, b: number): string => `What is ${a} + ${b} ?`;
function answerText(a: number, b: number): string {
  const steps: string[] = [];
  let carry = 0;
  const da = String(a).split('').reverse();
  const db = String(b).split('').reverse();
  for (let i = 0; i < Math.max(da.length, db.length); i++) {
    const x = Number(da[i] ?? 0);
    const y = Number(db[i] ?? 0);
    const s = x + y + carry;
    let expr = `${x} + ${y}` + (carry ? ` + ${carry}` : '') + ` = ${s}`;
    carry = Math.floor(s / 10);
    if (carry) expr += ' carry 1';
    steps.push(expr);
  }
  return steps.join(' , ') + ` , answer : ${a + b}`;
}

const items = loadEvalSet();

function expectSameIds(text: string, tok: TextTokenizer = bundled): number[] {
  const ids = tok.encode(text);
  expect(ids, JSON.stringify(text)).toEqual(trained.encode(text));
  return ids;
}

describe('bundled tokenizer: the trained ids are unchanged', () => {
  it('the TS copy of the training text format equals what task.py wrote into the eval set', () => {
    for (const it of items) {
      expect(promptText(...it.operands)).toBe(it.prompt);
      expect(answerText(...it.operands)).toBe(it.answer_text);
    }
  });

  it('every eval prompt and answer encodes to the trained ids', () => {
    for (const it of items) {
      const prompt = expectSameIds(chatPrompt(it.prompt));
      // The CLI builds the prompt with the chat template; it must be the text training encoded.
      expect(bundled.applyChatTemplate([{ role: 'user', content: it.prompt }])).toBe(chatPrompt(it.prompt));
      expect(prompt.length).toBe(16); // <bos> <sh> user <eh> What is 2 3 + 4 8 ? <eot> <sh> assistant <eh>
      expectSameIds(it.answer_text);
      expectSameIds(`${it.answer_text}<|eot_id|><|endoftext|><|endoftext|>`);
    }
  });

  it('every training text (all 8,100 operand pairs) encodes to the trained ids', () => {
    let n = 0;
    for (let a = 10; a <= 99; a++)
      for (let b = 10; b <= 99; b++) {
        expectSameIds(chatPrompt(promptText(a, b)));
        expectSameIds(answerText(a, b));
        n++;
      }
    expect(n).toBe(8100);
  });
});

describe('bundled tokenizer: decoded text reads as people write it', () => {
  it('joins the digits of a number and puts no space before , : ?', () => {
    const ids = bundled.encode(answerText(23, 48));
    expect(trained.decode(ids)).toBe('3 + 8 = 1 1 carry 1 , 2 + 4 + 1 = 7 , answer : 7 1');
    expect(bundled.decode(ids)).toBe('3 + 8 = 11 carry 1, 2 + 4 + 1 = 7, answer: 71');
    expect(bundled.decode(bundled.encode(chatPrompt('What is 23 + 48 ?')), { skipSpecial: true })).toBe('user What is 23 + 48? assistant');
    expect(bundled.decode([...ids, 2, 1, 1], { skipSpecial: true })).toBe('3 + 8 = 11 carry 1, 2 + 4 + 1 = 7, answer: 71');
  });

  it('the decoded text of every eval answer encodes back to the same ids (a chat history re-encodes as trained)', () => {
    for (const it of items) {
      const ids = bundled.encode(it.answer_text);
      const text = bundled.decode(ids);
      expect(text).not.toMatch(/\d \d| [,:?]/);
      expect(bundled.encode(text), text).toEqual(ids);
    }
    // Natural spellings a person would type encode like the training text.
    expect(bundled.encode('What is 23+48?')).toEqual(bundled.encode('What is 23 + 48 ?'));
    expect(bundled.encode('answer: 71')).toEqual(bundled.encode('answer : 7 1'));
  });
});

describe('scorer: accuracy is unchanged by the new decoding', () => {
  /** The scorer as it was with the trained tokenizer's spaced digits ("answer : 1 6 8"). */
  function extractAnswerSpaced(text: string): string | null {
    const m = [...text.matchAll(/answer\s*:?\s*(-?\d(?:\s*\d)*)/gi)];
    return m.length === 0 ? null : m[m.length - 1][1].replace(/\s+/g, '');
  }

  it('extracts the same answer from any output as the old scorer did from its old text', () => {
    // Eval answers, mutated (token replaced, dropped, inserted, truncated) and fully random sequences, seeded.
    let s = 12345;
    const rand = (n: number): number => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return (s >>> 8) % n;
    };
    const vocab = bundled.vocabSize; // 29 ids; 0..5 special, 6 <unk>
    let withAnswer = 0;
    let checked = 0;
    for (let round = 0; round < 10; round++)
      for (const it of items) {
        const ids = bundled.encode(`${it.answer_text}<|eot_id|><|endoftext|>`);
        for (let k = 0; k <= rand(4); k++) {
          const at = rand(ids.length);
          const op = rand(4);
          if (op === 0) ids[at] = rand(vocab);
          else if (op === 1 && ids.length > 1) ids.splice(at, 1);
          else if (op === 2) ids.splice(at, 0, 19 + rand(10)); // a stray digit
          else ids.length = Math.max(1, at);
        }
        const random = Array.from({ length: 1 + rand(40) }, () => (rand(3) === 0 ? 19 + rand(10) : rand(vocab)));
        for (const seq of [ids, random]) {
          const got = extractAnswer(bundled.decode(seq, { skipSpecial: true }));
          expect(got, `ids ${seq.join(' ')}`).toBe(extractAnswerSpaced(trained.decode(seq, { skipSpecial: true })));
          if (got !== null) withAnswer++;
          checked++;
        }
      }
    expect(checked).toBe(4000);
    expect(withAnswer).toBeGreaterThan(1000); // the comparison covered real answers, not only nulls
  });
});
