/** The model id `fast-dllm serve` answers to when --name is not given (`modelIdFor`). */
import { describe, expect, it } from 'vitest';
import { modelIdFor } from '../src/serve.js';

describe('serve: the default model id of a directory', () => {
  it.for([
    ['/data/LLaDA-8B-Instruct', 'LLaDA-8B-Instruct'],
    ['/data/LLaDA-8B-Instruct/', 'LLaDA-8B-Instruct'],
    // A Hugging Face cache snapshot is named by its commit: the id is the repository's.
    ['/root/.cache/huggingface/hub/models--GSAI-ML--LLaDA-8B-Instruct/snapshots/08b83a6feb34df1a6011b80c3c00c7563e963b07', 'GSAI-ML/LLaDA-8B-Instruct'],
    ['C:\\hf\\hub\\models--Efficient-Large-Model--Fast_dLLM_v2_1.5B\\snapshots\\abc123', 'Efficient-Large-Model/Fast_dLLM_v2_1.5B'],
    // A generic folder name says nothing: the folder above names the model.
    ['/work/fast-dllm/packages/bd-model/model', 'bd-model'],
    ['/srv/Dream-v0-Instruct-7B/checkpoint', 'Dream-v0-Instruct-7B'],
    ['model', 'model'],
  ] as const)('%s → %s', ([dir, id]) => {
    expect(modelIdFor(dir)).toBe(id);
  });
});
