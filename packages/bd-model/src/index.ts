/**
 * @fast-dllm/bd-model: a small Fast-dLLM v2 block-diffusion model (model_type "Fast_dLLM_Qwen", blocks of 16) trained
 * here on the bundled task, two-digit addition answered column by column. Its eval set and scorer are the bundled
 * model's (@fast-dllm/default-model: `loadEvalSet`, `scoreExactMatch`); the held-out pairs were never trained on.
 */
import { fileURLToPath } from 'node:url';

/** Absolute path of the checkpoint directory (config.json, model.safetensors, tokenizer files). Works from src/ and dist/. */
export const bdModelDir: string = fileURLToPath(new URL('../model/', import.meta.url)).replace(/[\\/]$/, '');

/** The cap on new tokens the model was trained for: its answers (with <|eot_id|>) fill at most two blocks after the prompt's. */
export const bdModelGenLength = 32;
