/**
 * The routing rules of the mixture-of-experts layers (DESIGN §13), written once for the engines that route on the
 * host (the reference and the WASM engine). Two named rules:
 * - `softmax` (LLaDA-MoE): p = softmax(logits) (float64) + the expert bias, the top k of p, weighted by p
 *   (renormalised to sum 1 when normTopK).
 * - `sigmoid_grouped` (LLaDA2, DESIGN §13.1): s = sigmoid(logits); the bias is added for the choice only (s + bias);
 *   the experts are cut into `groups` contiguous groups, each scored by the sum of its two best biased scores, and
 *   the top k are taken among the experts of the `topGroups` best groups; the weights are the unbiased s of the
 *   chosen, divided by their sum (+1e-20) when k > 1, times `scale`.
 * Every choice takes ties to the lower expert (group) id; the experts come out in ascending order. A row's choice
 * depends on its own logits alone, whatever else is in the pass (batch invariance, DESIGN §7).
 */
import type { MoeDescription } from './types.js';

export interface MoeRouting {
  /** (n, k) the chosen experts of each row, ascending. */
  experts: Int32Array;
  /** (n, k) their weights, float64. */
  weights: Float64Array;
}

/** Which of the rules above routes a layer, with its parameters. */
export type RoutingRule =
  | { kind: 'softmax'; normTopK: boolean }
  | { kind: 'sigmoid_grouped'; groups: number; topGroups: number; scale: number };

/** The rule of a model's mixture layers. */
export function routingRule(moe: MoeDescription): RoutingRule {
  return moe.sigmoidRouting ? { kind: 'sigmoid_grouped', ...moe.sigmoidRouting } : { kind: 'softmax', normTopK: moe.normTopK };
}

/**
 * Routes n rows of router logits (n, E) row-major; bias (E) or null. `rule` a RoutingRule, or (LLaDA-MoE's first
 * signature) the softmax rule's normTopK.
 */
export function routeRows(logits: ArrayLike<number>, n: number, E: number, k: number, bias: ArrayLike<number> | null, rule: RoutingRule | boolean): MoeRouting {
  const r: RoutingRule = typeof rule === 'boolean' ? { kind: 'softmax', normTopK: rule } : rule;
  if (!(k >= 1 && k <= E)) throw new Error(`routeRows: ${k} experts per row of ${E}`);
  const grouped = r.kind === 'sigmoid_grouped';
  const G = grouped ? r.groups : 1;
  const size = E / G; // experts per group
  if (grouped && !(Number.isInteger(size) && size >= 2 && r.topGroups >= 1 && r.topGroups <= G && k <= r.topGroups * size)) {
    throw new Error(`routeRows: ${E} experts in ${G} groups, top ${r.topGroups} groups, ${k} per row is not a valid group-limited choice`);
  }
  const experts = new Int32Array(n * k); // (n, k)
  const weights = new Float64Array(n * k); // (n, k)
  const w = new Float64Array(E); // (E) one row's weight of each expert (softmax: biased p; sigmoid: unbiased s)
  const choice = new Float64Array(E); // (E) the scores the top k is taken over
  const allowed = new Uint8Array(E); // (E) 1 where the expert's group was chosen
  const taken = new Uint8Array(E); // (E) 1 where already chosen for this row
  const groupScore = new Float64Array(G); // (G)
  const groupTaken = new Uint8Array(G); // (G)
  for (let i = 0; i < n; i++) {
    if (r.kind === 'softmax') {
      let max = -Infinity;
      for (let e = 0; e < E; e++) max = Math.max(max, logits[i * E + e]);
      let sum = 0;
      for (let e = 0; e < E; e++) sum += (w[e] = Math.exp(logits[i * E + e] - max));
      // The published code keeps the biased probabilities as the weights too.
      for (let e = 0; e < E; e++) choice[e] = w[e] = w[e] / sum + (bias ? bias[e] : 0);
      allowed.fill(1);
    } else {
      for (let e = 0; e < E; e++) {
        w[e] = 1 / (1 + Math.exp(-logits[i * E + e]));
        choice[e] = w[e] + (bias ? bias[e] : 0); // the bias steers the choice, never the weight
      }
      for (let g = 0; g < G; g++) {
        let a = -Infinity, b = -Infinity; // the group's two best biased scores
        for (let e = g * size; e < (g + 1) * size; e++) {
          if (choice[e] > a) { b = a; a = choice[e]; } else if (choice[e] > b) b = choice[e];
        }
        groupScore[g] = a + b;
      }
      groupTaken.fill(0);
      for (let t = 0; t < r.topGroups; t++) {
        let best = -1;
        for (let g = 0; g < G; g++) if (!groupTaken[g] && (best < 0 || groupScore[g] > groupScore[best])) best = g; // ties to the lower group
        groupTaken[best] = 1;
      }
      for (let e = 0; e < E; e++) allowed[e] = groupTaken[Math.floor(e / size)];
    }
    taken.fill(0);
    for (let t = 0; t < k; t++) {
      let best = -1;
      for (let e = 0; e < E; e++) if (allowed[e] && !taken[e] && (best < 0 || choice[e] > choice[best])) best = e; // strict >: ties to the lower id
      taken[best] = 1;
    }
    let total = 0;
    for (let e = 0; e < E; e++) if (taken[e]) total += w[e];
    let j = 0;
    for (let e = 0; e < E; e++) {
      if (!taken[e]) continue;
      experts[i * k + j] = e;
      weights[i * k + j] = r.kind === 'softmax' ? (r.normTopK ? w[e] / total : w[e]) : (k > 1 ? w[e] / (total + 1e-20) : w[e]) * r.scale;
      j++;
    }
  }
  return { experts, weights };
}
