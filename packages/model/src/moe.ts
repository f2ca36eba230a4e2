/**
 * LLaDA-MoE's routing rule (DESIGN §13), written once for the engines that route on the host (the reference and
 * the WASM engine): from a row's router logits, p = softmax (float64) + the expert bias, the top k of p with ties to
 * the lower expert, in ascending expert order, weighted by p (renormalised to sum 1 when normTopK). A row's
 * choice depends on its own logits alone, whatever else is in the pass.
 */
export interface MoeRouting {
  /** (n, k) the chosen experts of each row, ascending. */
  experts: Int32Array;
  /** (n, k) their weights, float64. */
  weights: Float64Array;
}

/** Routes n rows of router logits (n, E) row-major; bias (E) or null. */
export function routeRows(logits: ArrayLike<number>, n: number, E: number, k: number, bias: ArrayLike<number> | null, normTopK: boolean): MoeRouting {
  if (!(k >= 1 && k <= E)) throw new Error(`routeRows: ${k} experts per row of ${E}`);
  const experts = new Int32Array(n * k); // (n, k)
  const weights = new Float64Array(n * k); // (n, k)
  const p = new Float64Array(E); // (E) one row's scores
  const taken = new Uint8Array(E); // (E) 1 where already chosen for this row
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let e = 0; e < E; e++) max = Math.max(max, logits[i * E + e]);
    let sum = 0;
    for (let e = 0; e < E; e++) sum += (p[e] = Math.exp(logits[i * E + e] - max));
    for (let e = 0; e < E; e++) p[e] = p[e] / sum + (bias ? bias[e] : 0);
    taken.fill(0);
    for (let r = 0; r < k; r++) {
      let best = -1;
      for (let e = 0; e < E; e++) if (!taken[e] && (best < 0 || p[e] > p[best])) best = e; // strict >: ties to the lower id
      taken[best] = 1;
    }
    let total = 0;
    for (let e = 0; e < E; e++) if (taken[e]) total += p[e];
    let r = 0;
    for (let e = 0; e < E; e++) {
      if (!taken[e]) continue;
      experts[i * k + r] = e;
      weights[i * k + r] = normTopK ? p[e] / total : p[e];
      r++;
    }
  }
  return { experts, weights };
}
