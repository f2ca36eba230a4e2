/**
 * @fast-dllm/chain-model: a small LLaDA-architecture model trained here on counting in steps with the last two digits
 * kept ("Count from 37 by 48" → "37, 85, 33, …", 36 numbers), a task whose answer is a chain: each number follows
 * from the one before it, so parallel decoding that commits far positions early can fail (DESIGN §16). Its eval set
 * is scored by the whole list (`score: "number_list"`, @fast-dllm/default-model `scoreExactMatch`).
 */
import { fileURLToPath } from 'node:url';

/** Absolute path of the checkpoint directory (config.json, model.safetensors, tokenizer files). Works from src/ and dist/. */
export const chainModelDir: string = fileURLToPath(new URL('../model/', import.meta.url)).replace(/[\\/]$/, '');

/** Absolute path of the held-out eval set (200 problems, none of whose (start, step) pairs was trained on). */
export const chainEvalPath: string = fileURLToPath(new URL('../eval/eval.jsonl', import.meta.url));

/** Positions generated: the answer (107 tokens and <|eot_id|>) and EOS padding, in blocks of 32. */
export const chainModelGenLength = 128;
